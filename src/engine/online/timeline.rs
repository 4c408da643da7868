//! Frame-level evidence of a live run and the turns decided from it.
//!
//! Every analysed window adds its activity to the frames it covers, weighted
//! so a frame counts most from the windows it is central in. A frame is
//! decided once enough later audio has been heard; a speaker's turn closes
//! after a pause of `min_gap`, so the turns sent are the turns kept.

use std::collections::VecDeque;

use super::LiveEvent;
use crate::diarization::{SpeakerId, Turn};
use crate::engine::ANALYSIS_SAMPLE_RATE;
use crate::engine::powerset::{self, LOCAL_SPEAKERS, LocalActivity};
use crate::engine::reconstruct::{FRAME_OFFSET_SAMPLES, TurnParams, hamming};
use crate::engine::segmentation::FRAME_STEP_SAMPLES;

/// What one undecided frame has collected.
#[derive(Clone)]
struct Frame {
    count_sum: f32,
    coverage: f32,
    activation: Vec<f32>,
}

/// A speaker's turn that has started and not yet been closed.
#[derive(Clone, Copy)]
struct Open {
    start: usize,
    /// First frame of the current pause, if the speaker is pausing.
    off_since: Option<usize>,
    confidence_sum: f32,
    frames: usize,
}

#[derive(Clone)]
struct Decider {
    level: usize,
    open: Vec<Option<Open>>,
}

pub(super) struct Timeline {
    params: TurnParams,
    gap_frames: usize,
    /// Undecided frames, from global frame `first_frame` on.
    frames: VecDeque<Frame>,
    first_frame: usize,
    decider: Decider,
    /// Closed turns, in the order they were decided.
    turns: Vec<Turn>,
}

impl Timeline {
    pub(super) fn new(params: TurnParams) -> Self {
        let frame_seconds = FRAME_STEP_SAMPLES as f64 / f64::from(ANALYSIS_SAMPLE_RATE);
        Self {
            params,
            gap_frames: (params.min_gap_seconds / frame_seconds).round().max(1.0) as usize,
            frames: VecDeque::new(),
            first_frame: 0,
            decider: Decider {
                level: 0,
                open: Vec::new(),
            },
            turns: Vec::new(),
        }
    }

    /// Frames after the last decided one.
    pub(super) fn end_frame(&self) -> usize {
        self.first_frame + self.frames.len()
    }

    pub(super) fn first_frame(&self) -> usize {
        self.first_frame
    }

    /// Evidence for speaker `k` at global frame `g`, if `g` is still undecided.
    pub(super) fn add_activation(&mut self, k: usize, g: usize, weight: f32) {
        if let Some(frame) = g
            .checked_sub(self.first_frame)
            .and_then(|i| self.frames.get_mut(i))
        {
            frame.activation[k] += weight;
        }
    }

    pub(super) fn add_speaker(&mut self) {
        self.decider.open.push(None);
        for frame in &mut self.frames {
            frame.activation.push(0.0);
        }
    }

    /// Adds one window's activity; `speakers` names the global speaker of each local one.
    pub(super) fn accumulate(
        &mut self,
        start_frame: i64,
        activity: &LocalActivity,
        speakers: &[Option<usize>; LOCAL_SPEAKERS],
    ) {
        let weights = hamming(activity.len());
        let num_speakers = self.decider.open.len();
        for (i, local) in activity.iter().enumerate() {
            let g = start_frame + i as i64;
            if g < self.first_frame as i64 {
                continue;
            }
            let index = g as usize - self.first_frame;
            while self.frames.len() <= index {
                self.frames.push_back(Frame {
                    count_sum: 0.0,
                    coverage: 0.0,
                    activation: vec![0.0; num_speakers],
                });
            }
            let frame = &mut self.frames[index];
            frame.count_sum += weights[i] * powerset::count(local) as f32;
            frame.coverage += weights[i];
            for s in 0..LOCAL_SPEAKERS {
                let Some(k) = speakers[s].filter(|_| local[s]) else {
                    continue;
                };
                // Two local speakers of one window may be one person.
                if !(0..s).any(|r| local[r] && speakers[r] == Some(k)) {
                    frame.activation[k] += weights[i];
                }
            }
        }
    }

    /// Speaker `from` is `to`: their undecided evidence and open turns join,
    /// and every turn decided for `from` so far is `to`'s.
    pub(super) fn merge(&mut self, from: usize, to: usize) {
        for frame in &mut self.frames {
            frame.activation[to] += std::mem::take(&mut frame.activation[from]);
        }
        let moved = self.decider.open[from].take();
        let target = &mut self.decider.open[to];
        *target = match (*target, moved) {
            (Some(a), Some(b)) => Some(Open {
                start: a.start.min(b.start),
                off_since: match (a.off_since, b.off_since) {
                    (Some(x), Some(y)) => Some(x.max(y)),
                    _ => None,
                },
                confidence_sum: a.confidence_sum + b.confidence_sum,
                frames: a.frames + b.frames,
            }),
            (a, b) => a.or(b),
        };
        for turn in &mut self.turns {
            if turn.speaker == SpeakerId(from) {
                turn.speaker = SpeakerId(to);
            }
        }
    }

    /// Decides the frames before `end` and sends the turns that close.
    pub(super) fn decide_until(&mut self, end: usize, events: &mut Vec<LiveEvent>) {
        while self.first_frame < end {
            let Some(frame) = self.frames.pop_front() else {
                break;
            };
            let g = self.first_frame;
            let closed = self.decider.step(&frame, g, self.params, self.gap_frames);
            for (speaker, open) in closed {
                let turn = Turn {
                    speaker: SpeakerId(speaker),
                    start_seconds: time(open.start),
                    end_seconds: time(open.off_since.unwrap_or(g + 1)),
                };
                events.push(LiveEvent::speaker(turn, true, open.confidence()));
                self.turns.push(turn);
            }
            self.first_frame += 1;
        }
    }

    /// Closes every open turn at `end` (the stream ended or was flushed).
    pub(super) fn close_all(&mut self, end: usize, events: &mut Vec<LiveEvent>) {
        for speaker in 0..self.decider.open.len() {
            if let Some(open) = self.decider.open[speaker].take() {
                let turn = Turn {
                    speaker: SpeakerId(speaker),
                    start_seconds: time(open.start),
                    end_seconds: time(open.off_since.unwrap_or(end).min(end)),
                };
                if turn.end_seconds > turn.start_seconds {
                    events.push(LiveEvent::speaker(turn, true, open.confidence()));
                    self.turns.push(turn);
                }
            }
        }
    }

    /// Provisional turns: what deciding every frame heard so far would give,
    /// without deciding anything. A turn still going has no end.
    pub(super) fn provisional(&self, events: &mut Vec<LiveEvent>) {
        let mut decider = self.decider.clone();
        for (frame, g) in self.frames.iter().zip(self.first_frame..) {
            for (speaker, open) in decider.step(frame, g, self.params, self.gap_frames) {
                events.push(LiveEvent::Speaker {
                    speaker: SpeakerId(speaker),
                    start_seconds: time(open.start),
                    end_seconds: Some(time(open.off_since.unwrap_or(g + 1))),
                    is_final: false,
                    confidence: open.confidence(),
                });
            }
        }
        for (speaker, open) in decider.open.iter().enumerate() {
            if let Some(open) = open {
                events.push(LiveEvent::Speaker {
                    speaker: SpeakerId(speaker),
                    start_seconds: time(open.start),
                    end_seconds: open.off_since.map(time),
                    is_final: false,
                    confidence: open.confidence(),
                });
            }
        }
    }

    /// Seconds of closed turns of each speaker.
    pub(super) fn talk_seconds(&self) -> Vec<f64> {
        let mut seconds = vec![0.0; self.decider.open.len()];
        for turn in &self.turns {
            seconds[turn.speaker.0] += turn.end_seconds - turn.start_seconds;
        }
        seconds
    }

    /// Every closed turn, in decision order.
    pub(super) fn into_turns(self) -> Vec<Turn> {
        self.turns
    }
}

impl Decider {
    /// Decides frame `g`: hysteresis on the expected speaker count, the most
    /// active speakers kept. Returns the turns whose pause reached `gap_frames`.
    fn step(
        &mut self,
        frame: &Frame,
        g: usize,
        params: TurnParams,
        gap_frames: usize,
    ) -> Vec<(usize, Open)> {
        let expected = if frame.coverage > 0.0 {
            frame.count_sum / frame.coverage
        } else {
            0.0
        };
        while expected >= self.level as f32 + params.onset {
            self.level += 1;
        }
        while self.level > 0 && expected < (self.level - 1) as f32 + params.offset {
            self.level -= 1;
        }
        let mut order: Vec<usize> = (0..frame.activation.len())
            .filter(|&k| frame.activation[k] > 0.0)
            .collect();
        order.sort_by(|&a, &b| frame.activation[b].total_cmp(&frame.activation[a]));
        order.truncate(self.level);
        let mut closed = Vec::new();
        for (k, slot) in self.open.iter_mut().enumerate() {
            let on = order.contains(&k);
            match (on, slot.as_mut()) {
                (true, None) => {
                    *slot = Some(Open {
                        start: g,
                        off_since: None,
                        confidence_sum: 0.0,
                        frames: 0,
                    })
                }
                (true, Some(open)) => open.off_since = None,
                (false, Some(open)) => {
                    let since = *open.off_since.get_or_insert(g);
                    if g + 1 - since >= gap_frames {
                        closed.extend(slot.take().map(|open| (k, open)));
                    }
                }
                (false, None) => {}
            }
            if let Some(open) = slot.as_mut().filter(|_| on) {
                open.confidence_sum += frame.activation[k] / frame.coverage.max(f32::EPSILON);
                open.frames += 1;
            }
        }
        closed
    }
}

impl Open {
    /// Share of the analysed windows that heard this speaker, over the turn.
    fn confidence(&self) -> f32 {
        (self.confidence_sum / self.frames.max(1) as f32).clamp(0.0, 1.0)
    }
}

/// Start of global frame `g`, in seconds of stream.
fn time(g: usize) -> f64 {
    (g * FRAME_STEP_SAMPLES + FRAME_OFFSET_SAMPLES) as f64 / f64::from(ANALYSIS_SAMPLE_RATE)
}
