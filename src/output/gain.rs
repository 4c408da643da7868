//! The gain of one speaker's track at each frame: the original audio inside its turns,
//! a short raised-cosine fade just outside them, and digital silence elsewhere.
//!
//! The fades sit outside the turns so that inside a turn the track is bit-exact.

use std::f64::consts::PI;

use crate::diarization::Turn;

/// Length of the fade on each side of a speaker's span, long enough to avoid clicks.
pub const FADE_SECONDS: f64 = 0.010;

/// How one frame of a track relates to the original audio.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Gain {
    /// Nobody's fade reaches here: write zeros.
    Silent,
    /// Inside a fade, strictly between 0 and 1.
    Fade(f32),
    /// Inside a turn: write the original sample unchanged.
    Active,
}

/// Frames `[start_frame, end_frame)` where the speaker talks.
#[derive(Debug, Clone, Copy)]
struct Span {
    start_frame: u64,
    end_frame: u64,
}

/// Sweeps one speaker's spans in frame order, so each lookup costs O(1) amortised.
#[derive(Debug, Clone)]
pub struct GainCursor {
    /// Disjoint, sorted, non-empty.
    spans: Vec<Span>,
    /// `fade[d - 1]` is the gain `d` frames away from a span.
    fade: Vec<f32>,
    /// First span whose fade-out has not ended before the last frame asked for.
    next: usize,
}

impl GainCursor {
    /// A cursor over the union of `turns` (one speaker's), at `sample_rate` frames per second.
    pub fn new<'a>(turns: impl IntoIterator<Item = &'a Turn>, sample_rate: u32) -> Self {
        let rate = f64::from(sample_rate);
        let to_frame = |seconds: f64| (seconds * rate).round().max(0.0) as u64;
        let mut spans: Vec<Span> = turns
            .into_iter()
            .map(|turn| Span {
                start_frame: to_frame(turn.start_seconds),
                end_frame: to_frame(turn.end_seconds),
            })
            .filter(|span| span.end_frame > span.start_frame)
            .collect();
        spans.sort_by_key(|span| span.start_frame);
        let mut merged: Vec<Span> = Vec::with_capacity(spans.len());
        for span in spans {
            match merged.last_mut() {
                Some(last) if span.start_frame <= last.end_frame => {
                    last.end_frame = last.end_frame.max(span.end_frame)
                }
                _ => merged.push(span),
            }
        }

        let fade_frames = (FADE_SECONDS * rate).round() as usize;
        let fade = (1..=fade_frames)
            .map(|distance| {
                (0.5 * (1.0 + (PI * distance as f64 / (fade_frames + 1) as f64).cos())) as f32
            })
            .collect();
        Self {
            spans: merged,
            fade,
            next: 0,
        }
    }

    /// Number of fade frames on each side of a span.
    pub fn fade_frames(&self) -> u64 {
        self.fade.len() as u64
    }

    /// Whether every frame in `first..=last` is silent; the same ordering rule as [`Self::at`].
    /// Lets a block far from any turn skip the per-frame lookups.
    pub fn silent_through(&mut self, first: u64, last: u64) -> bool {
        self.skip_before(first);
        self.spans
            .get(self.next)
            .is_none_or(|span| span.start_frame > last + self.fade_frames())
    }

    /// The gain at `frame`. Frames must be asked for in non-decreasing order.
    pub fn at(&mut self, frame: u64) -> Gain {
        let fade_frames = self.fade_frames();
        self.skip_before(frame);
        // Fades of neighbouring spans may overlap when the gap is short: take the louder.
        let mut gain = 0.0f32;
        for span in &self.spans[self.next..] {
            if frame + fade_frames < span.start_frame {
                break;
            }
            let distance = if frame < span.start_frame {
                span.start_frame - frame
            } else if frame < span.end_frame {
                return Gain::Active;
            } else {
                frame + 1 - span.end_frame
            };
            gain = gain.max(self.fade[distance as usize - 1]);
        }
        if gain > 0.0 {
            Gain::Fade(gain)
        } else {
            Gain::Silent
        }
    }

    /// Moves past the spans whose fade-out ends before `frame`.
    fn skip_before(&mut self, frame: u64) {
        let fade_frames = self.fade_frames();
        while self
            .spans
            .get(self.next)
            .is_some_and(|span| span.end_frame + fade_frames <= frame)
        {
            self.next += 1;
        }
    }
}
