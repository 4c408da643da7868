//! Paying for a stream as it goes: credits are reserved in blocks ahead of
//! the audio, and the stream stops where the reservation can grow no more.

use crate::db::{Db, DbError, Job};

/// Credits per second of audio, as 55/2 so frame counts stay integers.
const CREDITS_PER_SECOND_NUMERATOR: u64 = 55;
const CREDITS_PER_SECOND_DENOMINATOR: u64 = 2;

/// The credits a session holds and the audio they pay for.
pub struct CreditMeter {
    db: Db,
    job: Job,
    sample_rate: u32,
    block_credits: i64,
    reserved: i64,
}

impl CreditMeter {
    /// `job` was inserted holding its first reservation.
    pub fn new(db: Db, job: Job, sample_rate: u32, block_credits: i64) -> Self {
        let reserved = job.credits_reserved;
        Self {
            db,
            job,
            sample_rate,
            block_credits,
            reserved,
        }
    }

    pub fn reserved(&self) -> i64 {
        self.reserved
    }

    /// How many of `more` frames, after `received` frames, are paid for;
    /// reserves further blocks as needed. Fewer than `more` means the balance
    /// ran out.
    pub async fn admit(&mut self, received: u64, more: u64) -> Result<u64, DbError> {
        while received + more > self.paid_frames() {
            let taken = self
                .db
                .extend_stream_reservation(&self.job, self.block_credits)
                .await?;
            if taken == 0 {
                break;
            }
            self.reserved += taken;
        }
        Ok(more.min(self.paid_frames().saturating_sub(received)))
    }

    /// Frames whose `credits_for` fits in the reservation.
    fn paid_frames(&self) -> u64 {
        let reserved = u64::try_from(self.reserved).unwrap_or(0);
        reserved * CREDITS_PER_SECOND_DENOMINATOR * u64::from(self.sample_rate)
            / CREDITS_PER_SECOND_NUMERATOR
    }
}
