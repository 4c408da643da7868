//! Frame-based diarization error rate for tests, written out so the numbers
//! can be checked by hand (10 ms frames, optimal one-to-one speaker mapping).

use whospoke::Diarization;

pub const DER_FRAME_SECONDS: f64 = 0.01;

/// Errors in speaker-seconds, summed over the scored frames.
#[derive(Debug, Clone, Copy)]
pub struct DerBreakdown {
    /// Reference speech, counting each speaker of an overlap.
    pub reference_seconds: f64,
    pub missed_seconds: f64,
    pub false_alarm_seconds: f64,
    pub confusion_seconds: f64,
}

impl DerBreakdown {
    pub fn rate(&self) -> f64 {
        (self.missed_seconds + self.false_alarm_seconds + self.confusion_seconds)
            / self.reference_seconds
    }
}

impl std::fmt::Display for DerBreakdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DER {:.2} % (missed {:.2} s, false alarm {:.2} s, confusion {:.2} s, of {:.2} s reference speech)",
            100.0 * self.rate(),
            self.missed_seconds,
            self.false_alarm_seconds,
            self.confusion_seconds,
            self.reference_seconds
        )
    }
}

/// `active[speaker][frame]`: frame `i` covers `[i, i+1) × 10 ms`, and a speaker is
/// active when the frame's centre falls inside one of its turns.
pub fn frame_activity(d: &Diarization, frames: usize) -> Vec<Vec<bool>> {
    let speakers = d.turns.iter().map(|t| t.speaker.0 + 1).max().unwrap_or(0);
    let mut active = vec![vec![false; frames]; speakers];
    for turn in &d.turns {
        for (i, a) in active[turn.speaker.0].iter_mut().enumerate() {
            let centre = (i as f64 + 0.5) * DER_FRAME_SECONDS;
            *a |= turn.start_seconds <= centre && centre < turn.end_seconds;
        }
    }
    active
}

/// NIST-style DER, overlap scored. Frames whose centre lies within `collar_seconds`
/// of a reference turn's start or end are not scored (md-eval's `-c`: the collar
/// extends that far on each side of every boundary).
pub fn der(reference: &Diarization, hypothesis: &Diarization, collar_seconds: f64) -> DerBreakdown {
    let end = reference.duration_seconds.max(hypothesis.duration_seconds);
    let frames = (end / DER_FRAME_SECONDS).ceil() as usize;
    let reference_active = frame_activity(reference, frames);
    let hypothesis_active = frame_activity(hypothesis, frames);
    let scored: Vec<bool> = (0..frames)
        .map(|i| {
            let centre = (i as f64 + 0.5) * DER_FRAME_SECONDS;
            !reference.turns.iter().any(|t| {
                (centre - t.start_seconds).abs() < collar_seconds
                    || (centre - t.end_seconds).abs() < collar_seconds
            })
        })
        .collect();

    // overlap[h][r]: scored frames where hypothesis speaker h and reference speaker r both speak.
    let overlap: Vec<Vec<usize>> = hypothesis_active
        .iter()
        .map(|h| {
            reference_active
                .iter()
                .map(|r| (0..frames).filter(|&i| scored[i] && h[i] && r[i]).count())
                .collect()
        })
        .collect();
    let matched_frames = best_mapping(&overlap, 0, &mut vec![false; reference_active.len()]);

    let count = |active: &[Vec<bool>], i: usize| active.iter().filter(|a| a[i]).count();
    let (mut reference_frames, mut missed, mut false_alarm, mut both) = (0, 0, 0, 0);
    for i in (0..frames).filter(|&i| scored[i]) {
        let (n_ref, n_hyp) = (count(&reference_active, i), count(&hypothesis_active, i));
        reference_frames += n_ref;
        missed += n_ref.saturating_sub(n_hyp);
        false_alarm += n_hyp.saturating_sub(n_ref);
        both += n_ref.min(n_hyp);
    }
    DerBreakdown {
        reference_seconds: reference_frames as f64 * DER_FRAME_SECONDS,
        missed_seconds: missed as f64 * DER_FRAME_SECONDS,
        false_alarm_seconds: false_alarm as f64 * DER_FRAME_SECONDS,
        // Where both sides have speakers, those not matched under the mapping are confused.
        confusion_seconds: (both - matched_frames) as f64 * DER_FRAME_SECONDS,
    }
}

/// The most frames any one-to-one mapping of hypothesis speakers `h..` onto the
/// unused reference speakers can match (brute force: we have at most a handful).
fn best_mapping(overlap: &[Vec<usize>], h: usize, used: &mut [bool]) -> usize {
    if h == overlap.len() {
        return 0;
    }
    // Hypothesis speaker h may also stay unmapped (more hypothesis than reference speakers).
    let mut best = best_mapping(overlap, h + 1, used);
    for r in 0..used.len() {
        if !used[r] {
            used[r] = true;
            best = best.max(overlap[h][r] + best_mapping(overlap, h + 1, used));
            used[r] = false;
        }
    }
    best
}
