//! One recording, pushed in as it is decoded, diarized at the end.
//!
//! Windows are segmented and their local speakers embedded as soon as enough
//! audio has arrived, so memory holds one window of audio plus a few small
//! numbers per window, however long the recording. Each batch of windows is
//! spread over the engine's worker threads, each with its own sessions.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::cluster::{self, LocalSpeaker};
use super::embedding::{self, Embedding, MIN_FRAMES, normalised};
use super::fbank::{self, Fbank};
use super::model::ModelError;
use super::powerset::{self, LOCAL_SPEAKERS, LocalActivity, LocalSpeaking};
use super::reconstruct::{self, FRAME_OFFSET_SAMPLES, PlacedWindow};
use super::segmentation::{FRAME_STEP_SAMPLES, MIN_WINDOW_SAMPLES, MODEL_FILE};
use super::{ANALYSIS_SAMPLE_RATE, Engine, SpeakerCount};
use crate::diarization::Diarization;

/// Windows segmented per batch; enough to keep both workers busy.
const BATCH_WINDOWS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("an inference worker panicked")]
    WorkerPanicked,
}

/// Where the time went, summed over worker threads.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct StageTimes {
    pub segmentation_seconds: f64,
    pub fbank_seconds: f64,
    pub embedding_seconds: f64,
    pub clustering_seconds: f64,
}

/// A local speaker's embedding and whether it may shape the clusters.
#[derive(Clone, Copy)]
struct LocalEmbedding {
    embedding: Embedding,
    reliable: bool,
}

struct AnalysedWindow {
    start_frame: usize,
    activity: LocalActivity,
    /// Probability that each local speaker speaks, per frame.
    speaking: LocalSpeaking,
    embeddings: [Option<LocalEmbedding>; LOCAL_SPEAKERS],
}

/// The audio a local speaker is embedded from.
struct EmbedRequest {
    window: usize,
    local: usize,
    samples: Vec<f32>,
    reliable: bool,
}

pub struct OfflineRun<'e> {
    engine: &'e Engine,
    speakers: SpeakerCount,
    window_samples: usize,
    step_frames: usize,
    /// Analysis samples from absolute index `buffer_start` on.
    buffer: Vec<f32>,
    buffer_start: usize,
    total_samples: usize,
    next_window_frame: usize,
    windows: Vec<AnalysedWindow>,
    times: StageTimes,
}

impl<'e> OfflineRun<'e> {
    pub(super) fn new(
        engine: &'e Engine,
        speakers: SpeakerCount,
        duration_seconds: Option<f64>,
    ) -> Self {
        let params = &engine.params;
        let rate = f64::from(ANALYSIS_SAMPLE_RATE);
        let window_seconds = params.window_seconds.clamp(2.0, 10.0);
        let window_samples = ((window_seconds * rate) as usize).max(MIN_WINDOW_SAMPLES);
        let short = duration_seconds.is_some_and(|d| d <= params.short_recording_seconds);
        let step_seconds = if short {
            params.short_step_seconds
        } else {
            params.step_seconds
        };
        let step_samples = step_seconds.clamp(0.5, window_seconds) * rate;
        Self {
            engine,
            speakers,
            window_samples,
            step_frames: ((step_samples / FRAME_STEP_SAMPLES as f64).round() as usize).max(1),
            buffer: Vec::with_capacity(2 * window_samples),
            buffer_start: 0,
            total_samples: 0,
            next_window_frame: 0,
            windows: Vec::new(),
            times: StageTimes::default(),
        }
    }

    /// Audio pushed so far, in seconds.
    pub fn pushed_seconds(&self) -> f64 {
        self.total_samples as f64 / f64::from(ANALYSIS_SAMPLE_RATE)
    }

    /// Appends 16 kHz mono samples and analyses every full batch of windows.
    pub fn push(&mut self, samples: &[f32]) -> Result<(), RunError> {
        self.buffer.extend_from_slice(samples);
        self.total_samples += samples.len();
        loop {
            let starts = self.full_window_starts(BATCH_WINDOWS);
            if starts.len() < BATCH_WINDOWS {
                return Ok(());
            }
            self.analyse(&starts)?;
        }
    }

    /// Analyses what is left, clusters, and returns who spoke when.
    pub fn finish(mut self) -> Result<(Diarization, StageTimes), RunError> {
        let mut starts = self.full_window_starts(usize::MAX);
        let covered = starts
            .last()
            .or(self.windows.last().map(|w| &w.start_frame))
            .map(|&f| f * FRAME_STEP_SAMPLES + self.window_samples);
        if self.total_samples > 0 && covered.is_none_or(|end| end < self.total_samples) {
            // A last window flush with the end, zero-padded by under one frame.
            let tail = (self.total_samples.saturating_sub(self.window_samples))
                .div_ceil(FRAME_STEP_SAMPLES);
            starts.push(tail);
        }
        for batch in starts.chunks(BATCH_WINDOWS) {
            self.analyse(batch)?;
        }

        let clustering = Instant::now();
        let placed = self.assign_speakers();
        let windows: Vec<PlacedWindow> = self
            .windows
            .iter()
            .zip(&placed.0)
            .map(|(w, speakers)| PlacedWindow {
                start_frame: w.start_frame,
                speaking: &w.speaking,
                speakers: *speakers,
            })
            .collect();
        let diarization = reconstruct::reconstruct(
            &windows,
            placed.1,
            self.total_samples,
            self.engine.params.turns,
        );
        self.times.clustering_seconds = clustering.elapsed().as_secs_f64();
        Ok((diarization, self.times))
    }

    /// Start frames of up to `limit` windows that lie wholly in the audio so far.
    fn full_window_starts(&self, limit: usize) -> Vec<usize> {
        (0..)
            .map(|j| self.next_window_frame + j * self.step_frames)
            .take_while(|&f| f * FRAME_STEP_SAMPLES + self.window_samples <= self.total_samples)
            .take(limit)
            .collect()
    }

    fn analyse(&mut self, starts: &[usize]) -> Result<(), RunError> {
        let Some(&last) = starts.last() else {
            return Ok(());
        };
        let audio = self.window_audio(starts);
        let (activities, speakings) = self.segment(&audio, starts.len())?;

        let first_window = self.windows.len();
        let mut requests = Vec::new();
        for (j, (activity, speaking)) in activities.into_iter().zip(speakings).enumerate() {
            let start_frame = starts[j];
            let samples = &audio[j * self.window_samples..(j + 1) * self.window_samples];
            let valid = self
                .total_samples
                .saturating_sub(start_frame * FRAME_STEP_SAMPLES);
            for local in 0..LOCAL_SPEAKERS {
                if let Some((speech, reliable)) =
                    embedding_audio(&self.engine.params, &activity, local, samples, valid)
                {
                    requests.push(EmbedRequest {
                        window: first_window + j,
                        local,
                        samples: speech,
                        reliable,
                    });
                }
            }
            self.windows.push(AnalysedWindow {
                start_frame,
                activity,
                speaking,
                embeddings: [None; LOCAL_SPEAKERS],
            });
        }
        for (request, embedding) in self.embed(requests)? {
            self.windows[request.window].embeddings[request.local] =
                embedding.map(|embedding| LocalEmbedding {
                    embedding,
                    reliable: request.reliable,
                });
        }

        self.next_window_frame = self.next_window_frame.max(last + self.step_frames);
        // The last window may start before the next regular one: keep a window's worth.
        let keep_from = (self.next_window_frame * FRAME_STEP_SAMPLES)
            .min(self.total_samples.saturating_sub(self.window_samples));
        let drop = keep_from
            .saturating_sub(self.buffer_start)
            .min(self.buffer.len());
        self.buffer.drain(..drop);
        self.buffer_start += drop;
        Ok(())
    }

    /// The windows' samples, back to back, zero-padded past the end of the audio.
    fn window_audio(&self, starts: &[usize]) -> Vec<f32> {
        let mut audio = vec![0.0; starts.len() * self.window_samples];
        for (j, &f) in starts.iter().enumerate() {
            let from = (f * FRAME_STEP_SAMPLES)
                .saturating_sub(self.buffer_start)
                .min(self.buffer.len());
            let to = (from + self.window_samples).min(self.buffer.len());
            audio[j * self.window_samples..j * self.window_samples + (to - from)]
                .copy_from_slice(&self.buffer[from..to]);
        }
        audio
    }

    /// Each window's likeliest activity (to choose what to embed) and its
    /// probabilities of speaking (to reconstruct from).
    fn segment(
        &mut self,
        audio: &[f32],
        windows: usize,
    ) -> Result<(Vec<LocalActivity>, Vec<LocalSpeaking>), RunError> {
        let per_worker = windows.div_ceil(self.engine.threads);
        let engine = self.engine;
        let window_samples = self.window_samples;
        type Segmented = (Vec<LocalActivity>, Vec<LocalSpeaking>, Duration);
        let results: Vec<Result<Segmented, RunError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = audio
                .chunks(per_worker * window_samples)
                .map(|part| {
                    scope.spawn(move || {
                        let started = Instant::now();
                        let log_probs = engine
                            .segmenters
                            .take(MODEL_FILE)?
                            .run(part, window_samples)?;
                        let activity = log_probs.iter().map(|lp| powerset::decode(lp)).collect();
                        let speaking = log_probs.iter().map(|lp| powerset::speaking(lp)).collect();
                        Ok::<_, RunError>((activity, speaking, started.elapsed()))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(Err(RunError::WorkerPanicked)))
                .collect()
        });
        let mut activities = Vec::with_capacity(windows);
        let mut speakings = Vec::with_capacity(windows);
        for result in results {
            let (part, speaking, spent) = result?;
            activities.extend(part);
            speakings.extend(speaking);
            self.times.segmentation_seconds += spent.as_secs_f64();
        }
        Ok((activities, speakings))
    }

    fn embed(
        &mut self,
        mut requests: Vec<EmbedRequest>,
    ) -> Result<Vec<(EmbedRequest, Option<Embedding>)>, RunError> {
        // Longest first, so the workers finish together.
        requests.sort_by_key(|r| std::cmp::Reverse(r.samples.len()));
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<Option<Embedding>>> = Mutex::new(vec![None; requests.len()]);
        let engine = self.engine;
        let spent: Vec<Result<(Duration, Duration), RunError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..engine.threads.min(requests.len()))
                .map(|_| {
                    scope.spawn(|| {
                        let mut embedder = engine.embedders.take(embedding::MODEL_FILE)?;
                        let mut fbank = Fbank::new();
                        let mut features = Vec::new();
                        let (mut fbank_time, mut model_time) = (Duration::ZERO, Duration::ZERO);
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(request) = requests.get(i) else {
                                return Ok::<_, RunError>((fbank_time, model_time));
                            };
                            let started = Instant::now();
                            features.clear();
                            let frames = fbank.compute(&request.samples, &mut features);
                            fbank_time += started.elapsed();
                            let started = Instant::now();
                            let embedding = embedder
                                .run(&features, frames)?
                                .into_iter()
                                .next()
                                .and_then(normalised);
                            model_time += started.elapsed();
                            results.lock().unwrap_or_else(|e| e.into_inner())[i] = embedding;
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(Err(RunError::WorkerPanicked)))
                .collect()
        });
        for s in spent {
            let (fbank_time, model_time) = s?;
            self.times.fbank_seconds += fbank_time.as_secs_f64();
            self.times.embedding_seconds += model_time.as_secs_f64();
        }
        let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
        Ok(requests.into_iter().zip(results).collect())
    }

    /// Global speaker of every local speaker, and the number of speakers.
    fn assign_speakers(&self) -> (Vec<[Option<usize>; LOCAL_SPEAKERS]>, usize) {
        let mut speakers = Vec::new();
        let mut slots = Vec::new();
        let mut group = 0;
        for (w, window) in self.windows.iter().enumerate() {
            for together in heard_together(&window.activity) {
                for local in together {
                    if let Some(e) = window.embeddings[local] {
                        speakers.push(LocalSpeaker {
                            group,
                            embedding: e.embedding,
                            reliable: e.reliable,
                        });
                        slots.push((w, local));
                    }
                }
                group += 1;
            }
        }
        let mut placed = vec![[None; LOCAL_SPEAKERS]; self.windows.len()];
        if speakers.is_empty() {
            // Too little speech to tell voices apart: whatever is heard is one speaker.
            for (p, w) in placed.iter_mut().zip(&self.windows) {
                for local in 0..LOCAL_SPEAKERS {
                    if w.activity.iter().any(|f| f[local]) {
                        p[local] = Some(0);
                    }
                }
            }
            return (placed, 1);
        }
        let labels = cluster::assign(&speakers, self.speakers, self.engine.params.cluster);
        for (&(w, local), &label) in slots.iter().zip(&labels) {
            placed[w][local] = Some(label);
        }
        let count = labels.iter().max().map_or(0, |&m| m + 1);
        (placed, count)
    }
}

/// The window's local speakers in groups heard together: their spans (first
/// to last active frame) chain into one another. A local speaker heard only
/// before or after another may be the same person in a second slot, so the
/// cannot-link of the clustering holds within a group, not across groups.
fn heard_together(activity: &LocalActivity) -> Vec<Vec<usize>> {
    let mut spans: Vec<(usize, usize, usize)> = (0..LOCAL_SPEAKERS)
        .filter_map(|local| {
            let first = activity.iter().position(|f| f[local])?;
            let last = activity.iter().rposition(|f| f[local])?;
            Some((first, last + 1, local))
        })
        .collect();
    spans.sort_unstable();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut end = 0;
    for (first, last, local) in spans {
        match groups.last_mut() {
            Some(group) if first < end => group.push(local),
            _ => groups.push(vec![local]),
        }
        end = end.max(last);
    }
    groups
}

/// Speech of one local speaker to embed: its clean frames when there are
/// enough, else all its frames; `None` when it says too little.
pub(super) fn embedding_audio(
    params: &super::DiarizationParams,
    activity: &LocalActivity,
    local: usize,
    window: &[f32],
    valid_samples: usize,
) -> Option<(Vec<f32>, bool)> {
    let frame_seconds = FRAME_STEP_SAMPLES as f64 / f64::from(ANALYSIS_SAMPLE_RATE);
    let frame_end = |i: usize| i * FRAME_STEP_SAMPLES + FRAME_OFFSET_SAMPLES + FRAME_STEP_SAMPLES;
    let in_audio = |i: usize| frame_end(i) <= valid_samples;
    let active = |i: usize| activity[i][local] && in_audio(i);
    let clean = |i: usize| active(i) && powerset::count(&activity[i]) == 1;
    let clean_seconds = (0..activity.len()).filter(|&i| clean(i)).count() as f64 * frame_seconds;
    let active_seconds = (0..activity.len()).filter(|&i| active(i)).count() as f64 * frame_seconds;
    let mut selected: Vec<usize> = if clean_seconds >= params.min_clean_seconds {
        (0..activity.len()).filter(|&i| clean(i)).collect()
    } else if active_seconds >= params.min_embed_seconds {
        (0..activity.len()).filter(|&i| active(i)).collect()
    } else {
        return None;
    };
    let cap = (params.max_embed_seconds / frame_seconds) as usize;
    if selected.len() > cap {
        // Embedding cost grows with length; the window's centre is segmented best.
        let centre = activity.len() / 2;
        selected.sort_by_key(|&i| i.abs_diff(centre));
        selected.truncate(cap);
        selected.sort_unstable();
    }
    // Frame i stands for the 270 samples around its centre, so selected frames tile.
    let mut samples = Vec::with_capacity(selected.len() * FRAME_STEP_SAMPLES);
    for i in selected {
        let from = i * FRAME_STEP_SAMPLES + FRAME_OFFSET_SAMPLES;
        samples.extend_from_slice(&window[from..from + FRAME_STEP_SAMPLES]);
    }
    let enough = fbank::num_frames(samples.len()) >= MIN_FRAMES;
    enough.then_some((samples, clean_seconds >= params.min_reliable_seconds))
}
