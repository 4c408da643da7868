//! Live diarization: audio pushed as it arrives, turns final `latency` after they happen.
//!
//! Every `step`, the last window of audio is segmented, its local speakers
//! embedded and matched to rolling centroids (Hungarian, so two voices of one
//! window are two people); a local speaker farther than the threshold from
//! every centroid is a new speaker. Each window's activity is added to the
//! frames it covers; a frame is decided once no window ending within
//! `latency` of it is still to come. Memory holds one window of audio, the
//! undecided frames and the centroids, whatever the stream's length.

use std::collections::VecDeque;

use pathfinding::kuhn_munkres::kuhn_munkres;
use pathfinding::matrix::Matrix;

use super::Engine;
use super::embedding::{self, EMBEDDING_DIM, Embedding};
use super::fbank::Fbank;
use super::offline::{RunError, embedding_audio, normalised};
use super::powerset::{self, LOCAL_SPEAKERS};
use super::reconstruct::{FRAME_OFFSET_SAMPLES, hamming, tidy_and_renumber};
use super::segmentation::{FRAME_STEP_SAMPLES, MODEL_FILE};
use crate::audio::ANALYSIS_SAMPLE_RATE;
use crate::diarization::{Diarization, SpeakerId, Turn};

/// Settings of a live run.
#[derive(Debug, Clone, Copy)]
pub struct OnlineParams {
    /// Seconds between two segmentations (rounded to whole model frames).
    pub step_seconds: f64,
    /// How long after it is heard a frame is decided.
    pub latency_seconds: f64,
    /// Speakers never exceed this; a further voice joins its nearest speaker.
    pub max_speakers: usize,
    /// A reliable embedding farther than this from every centroid (Euclidean,
    /// unit vectors) starts a new speaker. One embedding is noisier than the
    /// cluster means the offline threshold compares, so this is higher.
    pub new_speaker_distance: f32,
}

impl Default for OnlineParams {
    fn default() -> Self {
        Self {
            step_seconds: 0.5,
            latency_seconds: 2.0,
            max_speakers: 20,
            new_speaker_distance: 1.05,
        }
    }
}

/// What one undecided frame has collected.
#[derive(Clone)]
struct Frame {
    count_sum: f32,
    coverage: f32,
    activation: Vec<f32>,
}

/// A speaker's rolling centroid: the sum of its reliable embeddings.
struct Centroid {
    sum: Embedding,
}

pub struct OnlineRun<'e> {
    engine: &'e Engine,
    params: OnlineParams,
    window_samples: usize,
    step_frames: usize,
    latency_frames: usize,
    /// The last `window_samples` of audio.
    buffer: VecDeque<f32>,
    total_samples: usize,
    /// Global frame where the next window ends.
    next_end_frame: usize,
    centroids: Vec<Centroid>,
    /// Undecided frames, from global frame `first_frame` on.
    frames: VecDeque<Frame>,
    first_frame: usize,
    level: usize,
    open: Vec<Option<usize>>,
    turns: Vec<Turn>,
}

impl<'e> OnlineRun<'e> {
    pub(super) fn new(engine: &'e Engine, params: OnlineParams) -> Self {
        let rate = f64::from(ANALYSIS_SAMPLE_RATE);
        let window_samples = (engine.params.window_seconds.clamp(2.0, 10.0) * rate) as usize;
        let frames =
            |seconds: f64| ((seconds * rate / FRAME_STEP_SAMPLES as f64).round() as usize).max(1);
        Self {
            engine,
            params,
            window_samples,
            step_frames: frames(params.step_seconds),
            latency_frames: frames(params.latency_seconds),
            buffer: VecDeque::from(vec![0.0; window_samples]),
            total_samples: 0,
            next_end_frame: frames(params.step_seconds),
            centroids: Vec::new(),
            frames: VecDeque::new(),
            first_frame: 0,
            level: 0,
            open: Vec::new(),
            turns: Vec::new(),
        }
    }

    /// Appends 16 kHz mono samples and analyses every step they complete;
    /// returns the turns decided meanwhile.
    pub fn push(&mut self, samples: &[f32]) -> Result<Vec<Turn>, RunError> {
        let decided = self.turns.len();
        for &sample in samples {
            self.buffer.pop_front();
            self.buffer.push_back(sample);
            self.total_samples += 1;
            if self.total_samples == self.next_end_frame * FRAME_STEP_SAMPLES {
                self.step()?;
                self.next_end_frame += self.step_frames;
            }
        }
        Ok(self.turns[decided..].to_vec())
    }

    /// Decides everything left and returns the whole diarization.
    pub fn finish(mut self) -> Result<Diarization, RunError> {
        if self.total_samples > (self.next_end_frame - self.step_frames) * FRAME_STEP_SAMPLES {
            self.step()?;
        }
        let end = self.first_frame + self.frames.len();
        self.decide_until(end);
        self.close_open(end);
        let num_samples = self.total_samples;
        Ok(tidy_and_renumber(
            self.turns,
            self.engine.params.turns,
            num_samples,
        ))
    }

    /// Segments, embeds and assigns the window ending now, then decides old frames.
    fn step(&mut self) -> Result<(), RunError> {
        let window: Vec<f32> = self.buffer.iter().copied().collect();
        let log_probs = self
            .engine
            .segmenters
            .take(MODEL_FILE)?
            .run(&window, self.window_samples)?;
        let Some(activity) = log_probs.first().map(|lp| powerset::decode(lp)) else {
            return Ok(());
        };
        let end_frame = self.total_samples / FRAME_STEP_SAMPLES;
        let start_frame = end_frame as i64 - activity.len() as i64;
        // Zero padding before the stream starts is not audio.
        let offset = self.window_samples - self.total_samples.min(self.window_samples);
        let mut embeddings: [Option<(Embedding, bool)>; LOCAL_SPEAKERS] = [None; LOCAL_SPEAKERS];
        let mut embedder = None;
        let mut fbank = Fbank::new();
        let mut features = Vec::new();
        for (local, slot) in embeddings.iter_mut().enumerate() {
            let Some((speech, reliable)) =
                real_embedding_audio(&self.engine.params, &activity, local, &window, offset)
            else {
                continue;
            };
            let embedder = match &mut embedder {
                Some(e) => e,
                None => embedder.insert(self.engine.embedders.take(embedding::MODEL_FILE)?),
            };
            features.clear();
            let frames = fbank.compute(&speech, &mut features);
            *slot = embedder
                .run(&features, frames)?
                .into_iter()
                .next()
                .and_then(normalised)
                .map(|e| (e, reliable));
        }
        let speakers = self.assign(&embeddings);
        self.accumulate(start_frame, &activity, &speakers);
        let decided = end_frame.saturating_sub(self.latency_frames);
        self.decide_until(decided);
        Ok(())
    }

    /// Global speaker of each embedded local speaker; new speakers are created
    /// and centroids updated from reliable embeddings.
    fn assign(
        &mut self,
        embeddings: &[Option<(Embedding, bool)>; LOCAL_SPEAKERS],
    ) -> [Option<usize>; LOCAL_SPEAKERS] {
        let threshold = self.params.new_speaker_distance;
        let present: Vec<usize> = (0..LOCAL_SPEAKERS)
            .filter(|&l| embeddings[l].is_some())
            .collect();
        let mut speakers = [None; LOCAL_SPEAKERS];
        if present.is_empty() {
            return speakers;
        }
        let centroids: Vec<Embedding> = self.centroids.iter().map(|c| unit(&c.sum)).collect();
        // Columns: the centroids, then one "new speaker" slot per local speaker.
        const SCALE: f32 = 1e6;
        let columns = centroids.len() + present.len();
        let weights = Matrix::from_fn(present.len(), columns, |(r, c)| {
            let (e, reliable) = embeddings[present[r]].unwrap_or(([0.0; EMBEDDING_DIM], false));
            let score = match centroids.get(c) {
                Some(centroid) => -distance(&e, centroid),
                // Only clean, long speech may open a speaker, unless there is none yet.
                None if reliable || centroids.is_empty() => -threshold,
                None => -4.0,
            };
            (score * SCALE) as i64
        });
        let (_, chosen) = kuhn_munkres(&weights);
        for (r, &c) in chosen.iter().enumerate() {
            let local = present[r];
            let Some((e, reliable)) = embeddings[local] else {
                continue;
            };
            let k = if c < centroids.len() {
                c
            } else if self.centroids.len() < self.params.max_speakers {
                self.centroids.push(Centroid {
                    sum: [0.0; EMBEDDING_DIM],
                });
                self.open.push(None);
                for frame in &mut self.frames {
                    frame.activation.push(0.0);
                }
                self.centroids.len() - 1
            } else {
                (0..centroids.len())
                    .min_by(|&a, &b| {
                        distance(&e, &centroids[a]).total_cmp(&distance(&e, &centroids[b]))
                    })
                    .unwrap_or(0)
            };
            if reliable || self.centroids[k].sum.iter().all(|&x| x == 0.0) {
                for (s, x) in self.centroids[k].sum.iter_mut().zip(e) {
                    *s += x;
                }
            }
            speakers[local] = Some(k);
        }
        speakers
    }

    fn accumulate(
        &mut self,
        start_frame: i64,
        activity: &powerset::LocalActivity,
        speakers: &[Option<usize>; LOCAL_SPEAKERS],
    ) {
        let weights = hamming(activity.len());
        let num_speakers = self.centroids.len();
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
                let counted = (0..s).any(|r| local[r] && speakers[r] == Some(k));
                if !counted {
                    frame.activation[k] += weights[i];
                }
            }
        }
    }

    /// Decides frames before `end`: hysteresis on the expected count, the most
    /// active speakers kept, runs turned into turns as they close.
    fn decide_until(&mut self, end: usize) {
        let turn_params = self.engine.params.turns;
        while self.first_frame < end {
            let Some(frame) = self.frames.pop_front() else {
                break;
            };
            let g = self.first_frame;
            let expected = if frame.coverage > 0.0 {
                frame.count_sum / frame.coverage
            } else {
                0.0
            };
            while expected >= self.level as f32 + turn_params.onset {
                self.level += 1;
            }
            while self.level > 0 && expected < (self.level - 1) as f32 + turn_params.offset {
                self.level -= 1;
            }
            let mut order: Vec<usize> = (0..frame.activation.len())
                .filter(|&k| frame.activation[k] > 0.0)
                .collect();
            order.sort_by(|&a, &b| frame.activation[b].total_cmp(&frame.activation[a]));
            order.truncate(self.level);
            for k in 0..self.open.len() {
                let on = order.contains(&k);
                match (on, self.open[k]) {
                    (true, None) => self.open[k] = Some(g),
                    (false, Some(start)) => {
                        self.turns.push(self.turn(k, start, g));
                        self.open[k] = None;
                    }
                    _ => {}
                }
            }
            self.first_frame += 1;
        }
    }

    fn close_open(&mut self, end: usize) {
        for k in 0..self.open.len() {
            if let Some(start) = self.open[k].take() {
                self.turns.push(self.turn(k, start, end));
            }
        }
    }

    fn turn(&self, speaker: usize, start: usize, end: usize) -> Turn {
        let time = |g: usize| {
            ((g * FRAME_STEP_SAMPLES + FRAME_OFFSET_SAMPLES).min(self.total_samples)) as f64
                / f64::from(ANALYSIS_SAMPLE_RATE)
        };
        Turn {
            speaker: SpeakerId(speaker),
            start_seconds: time(start),
            end_seconds: time(end),
        }
    }
}

/// Embedding audio of a window, leaving out the padding before the stream started.
fn real_embedding_audio(
    params: &super::DiarizationParams,
    activity: &powerset::LocalActivity,
    local: usize,
    window: &[f32],
    offset: usize,
) -> Option<(Vec<f32>, bool)> {
    let skip = offset.div_ceil(FRAME_STEP_SAMPLES);
    if skip >= activity.len() {
        return None;
    }
    let mut masked = activity.clone();
    for frame in masked.iter_mut().take(skip) {
        *frame = [false; LOCAL_SPEAKERS];
    }
    embedding_audio(params, &masked, local, window, window.len())
}

fn unit(v: &Embedding) -> Embedding {
    normalised(*v).unwrap_or([0.0; EMBEDDING_DIM])
}

fn distance(a: &Embedding, b: &Embedding) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}
