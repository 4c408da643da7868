//! Powerset log-probabilities → which of the 3 local speakers are active per frame.

use super::segmentation::POWERSET_CLASSES;

/// Speakers one window can tell apart; their indices mean nothing across windows.
pub const LOCAL_SPEAKERS: usize = 3;

/// Local speakers active in each class, in pyannote's `Powerset.build_mapping` order.
const CLASS_SPEAKERS: [[bool; LOCAL_SPEAKERS]; POWERSET_CLASSES] = [
    [false, false, false],
    [true, false, false],
    [false, true, false],
    [false, false, true],
    [true, true, false],
    [true, false, true],
    [false, true, true],
];

/// Hard activity of the local speakers in one window, one row per frame.
pub type LocalActivity = Vec<[bool; LOCAL_SPEAKERS]>;

/// The most likely class of each frame, as local speaker activity
/// (pyannote's hard multilabel decoding). Input is `(frames, 7)` row-major.
pub fn decode(log_probs: &[f32]) -> LocalActivity {
    log_probs
        .chunks_exact(POWERSET_CLASSES)
        .map(|row| {
            let best = row
                .iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
                    if v > bv { (i, v) } else { (bi, bv) }
                })
                .0;
            CLASS_SPEAKERS[best]
        })
        .collect()
}

/// Probability that each local speaker of one window speaks, one row per frame.
pub type LocalSpeaking = Vec<[f32; LOCAL_SPEAKERS]>;

/// Probability that each local speaker speaks, per frame: the summed
/// probabilities of the classes it is in. Input is `(frames, 7)` row-major.
pub fn speaking(log_probs: &[f32]) -> LocalSpeaking {
    log_probs
        .chunks_exact(POWERSET_CLASSES)
        .map(|row| {
            let mut p = [0f32; LOCAL_SPEAKERS];
            for (class, &lp) in row.iter().enumerate() {
                let prob = lp.exp();
                for (p, &on) in p.iter_mut().zip(&CLASS_SPEAKERS[class]) {
                    if on {
                        *p += prob;
                    }
                }
            }
            p
        })
        .collect()
}

/// Number of speakers active in one frame.
pub fn count(frame: &[bool; LOCAL_SPEAKERS]) -> usize {
    frame.iter().filter(|&&a| a).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_argmax_class() {
        let mut log_probs = vec![-10.0; 2 * POWERSET_CLASSES];
        log_probs[0] = -0.1; // frame 0: silence
        log_probs[POWERSET_CLASSES + 5] = -0.1; // frame 1: {0, 2}
        let activity = decode(&log_probs);
        assert_eq!(activity[0], [false, false, false]);
        assert_eq!(activity[1], [true, false, true]);
        assert_eq!(count(&activity[1]), 2);
    }
}
