//! Windows of local activity + global labels → speaker turns on one timeline.
//!
//! Per global frame, the expected number of speakers is the Hamming-weighted
//! mean of the expected local counts (the local speakers' probabilities of
//! speaking, summed) of the windows that cover it; it is binarized with
//! hysteresis, and that many global speakers are kept, those most likely
//! speaking there. Probabilities rather than the likeliest class: a quiet or
//! overlapped voice the model is unsure of still counts for what it is worth.
//! Short gaps are then filled and short turns dropped. Two speakers can be active at once.

use super::ANALYSIS_SAMPLE_RATE;
use super::powerset::{LOCAL_SPEAKERS, LocalSpeaking};
use super::segmentation::FRAME_STEP_SAMPLES;
use crate::diarization::{Diarization, SpeakerId, Turn};

/// One analysed window, placed on the global frame grid.
pub struct PlacedWindow<'a> {
    pub start_frame: usize,
    /// Probability that each local speaker speaks, per frame of the window.
    pub speaking: &'a LocalSpeaking,
    /// Global speaker of each local speaker, if it was clustered.
    pub speakers: [Option<usize>; LOCAL_SPEAKERS],
}

#[derive(Debug, Clone, Copy)]
pub struct TurnParams {
    /// Hysteresis on the expected speaker count: one more speaker starts when
    /// the count rises this far above the current level. Default 0.5.
    pub onset: f32,
    /// …and one stops when it falls below `level - 1 + offset`. Default 0.4:
    /// a turn, once started, holds through a brief dip. Equal to `onset`, this
    /// is plain rounding.
    pub offset: f32,
    /// Gaps shorter than this inside one speaker's speech are filled.
    /// Default 0.3, the pause below which NIST RT scoring merges segments.
    pub min_gap_seconds: f64,
    /// Turns shorter than this are dropped.
    pub min_turn_seconds: f64,
}

/// Frame `g` stands for the samples `[g·270 + 360, g·270 + 630)`: the middle
/// of its receptive field, so consecutive frames tile the timeline.
pub const FRAME_OFFSET_SAMPLES: usize = 360;

/// Frames of the global grid whose centre lies inside `num_samples`.
pub fn num_frames(num_samples: usize) -> usize {
    // Frame g is centred on sample g·270 + 495.
    (num_samples + FRAME_STEP_SAMPLES).saturating_sub(495) / FRAME_STEP_SAMPLES
}

fn frame_time(frame: usize, num_samples: usize) -> f64 {
    let sample = (frame * FRAME_STEP_SAMPLES + FRAME_OFFSET_SAMPLES).min(num_samples);
    sample as f64 / f64::from(ANALYSIS_SAMPLE_RATE)
}

pub fn reconstruct(
    windows: &[PlacedWindow],
    num_speakers: usize,
    num_samples: usize,
    params: TurnParams,
) -> Diarization {
    let frames = num_frames(num_samples);
    let mut count_sum = vec![0f32; frames];
    let mut coverage = vec![0f32; frames];
    let mut activation = vec![0f32; frames * num_speakers];
    for w in windows {
        let weights = hamming(w.speaking.len());
        for (i, speaking) in w.speaking.iter().enumerate() {
            let g = w.start_frame + i;
            if g >= frames {
                break;
            }
            // The expected number of speakers: the probabilities of speaking summed.
            count_sum[g] += weights[i] * speaking.iter().sum::<f32>();
            coverage[g] += weights[i];
            for s in 0..LOCAL_SPEAKERS {
                let Some(k) = w.speakers[s] else { continue };
                // Two local speakers on one global speaker count once, as the likelier.
                if (0..s).any(|r| w.speakers[r] == Some(k)) {
                    continue;
                }
                let p = (s..LOCAL_SPEAKERS)
                    .filter(|&r| w.speakers[r] == Some(k))
                    .map(|r| speaking[r])
                    .fold(0.0, f32::max);
                activation[g * num_speakers + k] += weights[i] * p;
            }
        }
    }

    let mut active = vec![false; frames * num_speakers];
    let mut order: Vec<usize> = Vec::with_capacity(num_speakers);
    let mut level = 0usize;
    for g in 0..frames {
        let expected = if coverage[g] > 0.0 {
            count_sum[g] / coverage[g]
        } else {
            0.0
        };
        while expected >= level as f32 + params.onset {
            level += 1;
        }
        while level > 0 && expected < (level - 1) as f32 + params.offset {
            level -= 1;
        }
        let wanted = level;
        let row = &activation[g * num_speakers..(g + 1) * num_speakers];
        order.clear();
        order.extend((0..num_speakers).filter(|&k| row[k] > 0.0));
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        for &k in order.iter().take(wanted) {
            active[g * num_speakers + k] = true;
        }
    }

    let mut turns = Vec::new();
    for k in 0..num_speakers {
        let mut run_start = None;
        for g in 0..=frames {
            let on = g < frames && active[g * num_speakers + k];
            match (on, run_start) {
                (true, None) => run_start = Some(g),
                (false, Some(s)) => {
                    turns.push(Turn {
                        speaker: SpeakerId(k),
                        start_seconds: frame_time(s, num_samples),
                        end_seconds: frame_time(g, num_samples),
                    });
                    run_start = None;
                }
                _ => {}
            }
        }
    }
    tidy_and_renumber(turns, params, num_samples)
}

/// Turns (in any order) → gaps filled, short turns dropped, speakers numbered by first turn.
pub fn tidy_and_renumber(
    mut turns: Vec<Turn>,
    params: TurnParams,
    num_samples: usize,
) -> Diarization {
    turns.sort_by(|a, b| {
        a.speaker
            .cmp(&b.speaker)
            .then(a.start_seconds.total_cmp(&b.start_seconds))
    });
    let turns = tidy(turns, params);
    let (turns, num_speakers) = renumber(turns);
    Diarization {
        turns,
        num_speakers,
        duration_seconds: num_samples as f64 / f64::from(ANALYSIS_SAMPLE_RATE),
    }
}

/// Window edges are the model's least sure frames, so a frame counts most
/// from the window it is central in.
pub fn hamming(len: usize) -> Vec<f32> {
    let span = len.saturating_sub(1).max(1) as f32;
    (0..len)
        .map(|i| 0.54 - 0.46 * (2.0 * std::f32::consts::PI * i as f32 / span).cos())
        .collect()
}

/// Fills short gaps, then drops short turns; `turns` are grouped by speaker in time order.
fn tidy(turns: Vec<Turn>, params: TurnParams) -> Vec<Turn> {
    let mut filled: Vec<Turn> = Vec::with_capacity(turns.len());
    for t in turns {
        match filled.last_mut() {
            Some(last)
                if last.speaker == t.speaker
                    && t.start_seconds - last.end_seconds < params.min_gap_seconds =>
            {
                last.end_seconds = t.end_seconds;
            }
            _ => filled.push(t),
        }
    }
    filled.retain(|t| t.duration_seconds() >= params.min_turn_seconds);
    filled
}

/// Numbers speakers by first appearance and sorts turns by start time.
fn renumber(mut turns: Vec<Turn>) -> (Vec<Turn>, usize) {
    turns.sort_by(|a, b| {
        a.start_seconds
            .total_cmp(&b.start_seconds)
            .then(a.speaker.cmp(&b.speaker))
    });
    let mut mapping: Vec<(SpeakerId, SpeakerId)> = Vec::new();
    for t in &mut turns {
        let next = SpeakerId(mapping.len());
        let new = match mapping.iter().find(|(old, _)| *old == t.speaker) {
            Some(&(_, new)) => new,
            None => {
                mapping.push((t.speaker, next));
                next
            }
        };
        t.speaker = new;
    }
    (turns, mapping.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_grid_tiles_the_audio() {
        assert_eq!(num_frames(0), 0);
        assert_eq!(num_frames(495), 1);
        assert_eq!(num_frames(160_000), 591);
    }

    #[test]
    fn overlap_survives_reconstruction() {
        let speaking: LocalSpeaking = (0..300)
            .map(|i| [f32::from(i < 200), f32::from(i >= 100) * 0.9, 0.05])
            .collect();
        let windows = [PlacedWindow {
            start_frame: 0,
            speaking: &speaking,
            speakers: [Some(1), Some(0), None],
        }];
        let params = TurnParams {
            onset: 0.5,
            offset: 0.5,
            min_gap_seconds: 0.0,
            min_turn_seconds: 0.0,
        };
        let d = reconstruct(&windows, 2, 300 * FRAME_STEP_SAMPLES + 1000, params);
        assert_eq!(d.num_speakers, 2);
        assert_eq!(d.turns.len(), 2);
        assert_eq!(d.turns[0].speaker, SpeakerId(0));
        assert!(
            d.turns[1].start_seconds < d.turns[0].end_seconds,
            "turns overlap"
        );
    }
}
