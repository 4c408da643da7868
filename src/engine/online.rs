//! Live diarization: audio pushed as it arrives, speaker events out.
//!
//! Every `step`, the last window of audio is segmented. Its local speakers are
//! followed from the previous window by their shared activity, so a voice
//! keeps its speaker without being embedded again. A voice is embedded when
//! it appears (against the rolling centroids, see [`speakers`]) and then once
//! per `refresh` of its clean speech, which both steadies its centroid and
//! catches a voice that changed. A local speaker that returns after a pause
//! is a new voice (the model may reuse a slot for someone else), and every
//! voice has a speaker before its first frame is decided. Window activity is
//! added to a frame [`timeline`]; a frame is decided once `latency` of audio
//! follows it.
//! Memory holds one window of audio, a few seconds of speech per voice, the
//! undecided frames and the centroids, whatever the stream's length.

mod speakers;
mod timeline;

use std::collections::VecDeque;

use pathfinding::kuhn_munkres::kuhn_munkres;
use pathfinding::matrix::Matrix;

use super::embedding::{self, Embedding, normalised};
use super::fbank::Fbank;
use super::offline::{RunError, embedding_audio};
use super::powerset::{self, LOCAL_SPEAKERS, LocalActivity};
use super::reconstruct::FRAME_OFFSET_SAMPLES;
use super::segmentation::{FRAME_STEP_SAMPLES, LIVE_MODEL_FILE};
use super::{ANALYSIS_SAMPLE_RATE, Engine};
use crate::diarization::{Diarization, SpeakerId, Turn};
use speakers::{Candidate, Speakers};
use timeline::Timeline;

/// Settings of a live run.
#[derive(Debug, Clone, Copy)]
pub struct OnlineParams {
    /// Seconds between two segmentations (rounded to whole model frames).
    pub step_seconds: f64,
    /// A turn is final this long after it ends.
    pub latency_seconds: f64,
    /// Speakers never exceed this; a further voice joins its nearest speaker.
    pub max_speakers: usize,
    /// An embedding farther than this from every centroid (Euclidean, unit
    /// vectors) starts a new speaker, tentative until a reliable one confirms it.
    pub new_speaker_distance: f32,
    /// A short (unreliable) voice joins a speaker only this close to it.
    pub assign_distance: f32,
    /// Centroids closer than this are one speaker.
    pub merge_distance: f32,
    /// Seconds of a voice's clean speech between two embeddings of it.
    pub refresh_seconds: f64,
}

impl Default for OnlineParams {
    fn default() -> Self {
        Self {
            step_seconds: 0.5,
            latency_seconds: 2.0,
            max_speakers: 20,
            new_speaker_distance: 1.15,
            assign_distance: 0.9,
            merge_distance: 0.8,
            refresh_seconds: 1.5,
        }
    }
}

/// What a live run tells its listener.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveEvent {
    /// A turn. Provisional turns are restated at every step until final;
    /// `end_seconds` is `None` while the turn is still going.
    Speaker {
        speaker: SpeakerId,
        start_seconds: f64,
        end_seconds: Option<f64>,
        is_final: bool,
        confidence: f32,
    },
    /// Every past and future turn of `from` belongs to `to`.
    Relabel { from: SpeakerId, to: SpeakerId },
}

impl LiveEvent {
    fn speaker(turn: Turn, is_final: bool, confidence: f32) -> Self {
        Self::Speaker {
            speaker: turn.speaker,
            start_seconds: turn.start_seconds,
            end_seconds: Some(turn.end_seconds),
            is_final,
            confidence,
        }
    }
}

/// One voice followed across consecutive windows.
#[derive(Default)]
struct Track {
    speaker: Option<usize>,
    /// Clean speech heard since the voice was last embedded.
    clean: Vec<f32>,
    /// Activity (frame, weight) heard before the voice had a speaker.
    pending: Vec<(usize, f32)>,
    /// Global frame where the voice began: earlier activity of its local
    /// speaker was someone else's.
    since: i64,
}

pub struct OnlineRun<'e> {
    engine: &'e Engine,
    params: OnlineParams,
    window_samples: usize,
    step_frames: usize,
    /// Frames of audio that must follow a frame before it is decided.
    lookahead_frames: usize,
    /// The last `window_samples` of audio.
    buffer: VecDeque<f32>,
    total_samples: usize,
    /// Global frame where the next window ends.
    next_end_frame: usize,
    /// The previous window's activity, its first global frame, and its voices.
    previous: Option<(i64, LocalActivity)>,
    tracks: [Option<Track>; LOCAL_SPEAKERS],
    speakers: Speakers,
    timeline: Timeline,
    fbank: Fbank,
}

impl<'e> OnlineRun<'e> {
    pub(super) fn new(engine: &'e Engine, params: OnlineParams) -> Self {
        let rate = f64::from(ANALYSIS_SAMPLE_RATE);
        let window_samples = (engine.params.window_seconds.clamp(2.0, 10.0) * rate) as usize;
        let frames = |seconds: f64| (seconds.max(0.0) * rate / FRAME_STEP_SAMPLES as f64).round();
        let step_frames = frames(params.step_seconds).max(1.0) as usize;
        let turns = engine.params.turns;
        // Closing a turn waits for a pause of `min_gap`, and frames are decided
        // only at steps: both come out of the latency.
        let lookahead = params.latency_seconds - turns.min_gap_seconds - params.step_seconds / 2.0;
        Self {
            engine,
            params,
            window_samples,
            step_frames,
            lookahead_frames: frames(lookahead) as usize,
            buffer: VecDeque::from(vec![0.0; window_samples]),
            total_samples: 0,
            next_end_frame: step_frames,
            previous: None,
            tracks: Default::default(),
            speakers: Speakers::new(&params),
            timeline: Timeline::new(turns),
            fbank: Fbank::new(),
        }
    }

    /// Seconds of audio pushed so far.
    pub fn heard_seconds(&self) -> f64 {
        self.total_samples as f64 / f64::from(ANALYSIS_SAMPLE_RATE)
    }

    /// Appends 16 kHz mono samples, analyses every step they complete, and
    /// returns what changed: final turns, relabels, then the provisional turns.
    pub fn push(&mut self, samples: &[f32]) -> Result<Vec<LiveEvent>, RunError> {
        let mut events = Vec::new();
        let mut stepped = false;
        for &sample in samples {
            self.buffer.pop_front();
            self.buffer.push_back(sample);
            self.total_samples += 1;
            if self.total_samples == self.next_end_frame * FRAME_STEP_SAMPLES {
                self.step(&mut events)?;
                self.next_end_frame += self.step_frames;
                stepped = true;
            }
        }
        if stepped {
            self.timeline.provisional(&mut events);
        }
        Ok(events)
    }

    /// Makes everything heard so far final, without ending the stream.
    pub fn flush(&mut self) -> Result<Vec<LiveEvent>, RunError> {
        let mut events = Vec::new();
        self.step_remainder(&mut events)?;
        // Every voice heard gets a speaker before everything is decided.
        if let Some((start, activity)) = self.previous.take() {
            let window: Vec<f32> = self.buffer.iter().copied().collect();
            let placed = self.embed(&activity, &window, activity.len(), &mut events);
            self.previous = Some((start, activity));
            placed?;
        }
        let end = self.timeline.end_frame();
        self.timeline.decide_until(end, &mut events);
        self.timeline.close_all(end, &mut events);
        Ok(events)
    }

    /// Ends the stream: the last final events, then the whole diarization,
    /// labelled as the events were (after their relabels).
    pub fn finish(mut self) -> Result<(Vec<LiveEvent>, Diarization), RunError> {
        let mut events = self.flush()?;
        let talk_seconds = self.timeline.talk_seconds();
        for (from, to) in self.speakers.absorb_tentative(&talk_seconds) {
            self.timeline.merge(from, to);
            events.push(LiveEvent::Relabel {
                from: SpeakerId(from),
                to: SpeakerId(to),
            });
        }
        let duration_seconds = self.heard_seconds();
        let mut turns = self.timeline.into_turns();
        // Merges leave gaps in the numbering; close them, and say so.
        let mut used: Vec<usize> = turns.iter().map(|t| t.speaker.0).collect();
        used.sort_unstable();
        used.dedup();
        for (new, &old) in used.iter().enumerate() {
            if new != old {
                events.push(LiveEvent::Relabel {
                    from: SpeakerId(old),
                    to: SpeakerId(new),
                });
            }
        }
        for turn in &mut turns {
            turn.speaker = SpeakerId(used.binary_search(&turn.speaker.0).unwrap_or(0));
        }
        Ok((
            events,
            Diarization {
                turns: joined(turns),
                num_speakers: used.len(),
                duration_seconds,
            },
        ))
    }

    /// Analyses the audio after the last step, if any.
    fn step_remainder(&mut self, events: &mut Vec<LiveEvent>) -> Result<(), RunError> {
        let last_step_end = (self.next_end_frame - self.step_frames) * FRAME_STEP_SAMPLES;
        if self.total_samples > last_step_end {
            // Shift the grid so the next step falls a whole step after this one.
            self.step(events)?;
            self.next_end_frame = self.total_samples / FRAME_STEP_SAMPLES + self.step_frames;
        }
        Ok(())
    }

    /// Segments the window ending now, follows and embeds its voices, adds
    /// its activity to the timeline and decides old frames.
    fn step(&mut self, events: &mut Vec<LiveEvent>) -> Result<(), RunError> {
        let window: Vec<f32> = self.buffer.iter().copied().collect();
        let log_probs = self
            .engine
            .live_segmenters()
            .take(LIVE_MODEL_FILE)?
            .run(&window, self.window_samples)?;
        let Some(mut activity) = log_probs.first().map(|lp| powerset::decode(lp)) else {
            return Ok(());
        };
        let end_frame = self.total_samples / FRAME_STEP_SAMPLES;
        let start_frame = end_frame as i64 - activity.len() as i64;
        // Zero padding before the stream starts is not audio.
        let padding = (self.window_samples - self.total_samples.min(self.window_samples))
            .div_ceil(FRAME_STEP_SAMPLES);
        for frame in activity.iter_mut().take(padding) {
            *frame = [false; LOCAL_SPEAKERS];
        }

        self.follow(start_frame, &activity);
        self.split_returning_voices(start_frame, &mut activity);
        self.harvest(start_frame, &activity, &window);
        let decided = end_frame.saturating_sub(self.lookahead_frames);
        // A voice must have a speaker before its first frames are decided.
        let due = (decided as i64 - start_frame).clamp(0, activity.len() as i64) as usize;
        self.embed(&activity, &window, due, events)?;

        let speakers: [Option<usize>; LOCAL_SPEAKERS] = std::array::from_fn(|s| {
            let track = self.tracks[s].as_ref()?;
            track.speaker.map(|k| self.speakers.resolve(k))
        });
        self.timeline.accumulate(start_frame, &activity, &speakers);
        self.remember_unassigned(start_frame, &activity);
        self.previous = Some((start_frame, activity));
        self.timeline.decide_until(decided, events);
        Ok(())
    }

    /// Carries each voice of the previous window to the local speaker of this
    /// one that shares the most activity with it.
    fn follow(&mut self, start_frame: i64, activity: &LocalActivity) {
        let mut previous_tracks = std::mem::take(&mut self.tracks);
        if let Some((previous_start, previous)) = &self.previous {
            let shift = (start_frame - previous_start) as usize;
            let shared = previous.len().saturating_sub(shift);
            let overlap = Matrix::from_fn(LOCAL_SPEAKERS, LOCAL_SPEAKERS, |(now, before)| {
                (0..shared)
                    .filter(|&i| activity[i][now] && previous[i + shift][before])
                    .count() as i64
            });
            let (_, matched) = kuhn_munkres(&overlap);
            for (now, &before) in matched.iter().enumerate() {
                if overlap[(now, before)] >= MIN_SHARED_FRAMES {
                    self.tracks[now] = previous_tracks[before].take();
                }
            }
        }
        for (s, track) in self.tracks.iter_mut().enumerate() {
            if track.is_none() && activity.iter().any(|f| f[s]) {
                *track = Some(Track::default());
            }
        }
    }

    /// A local speaker that speaks again after a long pause may be another
    /// person the model put in the same slot: its new speech starts a new
    /// voice, identified afresh. Activity before a voice began is not its own.
    fn split_returning_voices(&mut self, start_frame: i64, activity: &mut LocalActivity) {
        let pause = (RETURN_PAUSE_SECONDS * f64::from(ANALYSIS_SAMPLE_RATE)
            / FRAME_STEP_SAMPLES as f64) as usize;
        for (s, slot) in self.tracks.iter_mut().enumerate() {
            let Some(track) = slot else { continue };
            let own = ((track.since - start_frame).max(0) as usize).min(activity.len());
            let active: Vec<usize> = (own..activity.len()).filter(|&i| activity[i][s]).collect();
            let resumed = active
                .windows(2)
                .rev()
                .find(|w| w[1] - w[0] > pause)
                .map(|w| w[1]);
            let own = match resumed {
                Some(i) => {
                    *track = Track {
                        since: start_frame + i as i64,
                        ..Track::default()
                    };
                    i
                }
                _ => own,
            };
            for frame in activity.iter_mut().take(own) {
                frame[s] = false;
            }
        }
    }

    /// Keeps each voice's clean speech from the band of frames that has just
    /// become `HARVEST_DELAY` old, so every frame is kept once.
    fn harvest(&mut self, start_frame: i64, activity: &LocalActivity, window: &[f32]) {
        let band_end = activity.len().saturating_sub(HARVEST_DELAY_FRAMES);
        let band = band_end.saturating_sub(self.step_frames)..band_end;
        for (s, slot) in self.tracks.iter_mut().enumerate() {
            let Some(track) = slot else { continue };
            for i in band.clone() {
                let clean = activity[i][s] && powerset::count(&activity[i]) == 1;
                if clean && start_frame + i as i64 >= 0 {
                    let from = i * FRAME_STEP_SAMPLES + FRAME_OFFSET_SAMPLES;
                    track
                        .clean
                        .extend_from_slice(&window[from..from + FRAME_STEP_SAMPLES]);
                }
            }
        }
    }

    /// Embeds new voices from the window and known voices from their clean
    /// speech once they have enough, then assigns them to speakers.
    fn embed(
        &mut self,
        activity: &LocalActivity,
        window: &[f32],
        due: usize,
        events: &mut Vec<LiveEvent>,
    ) -> Result<(), RunError> {
        let refresh_samples =
            (self.params.refresh_seconds * f64::from(ANALYSIS_SAMPLE_RATE)) as usize;
        let mut pieces: Vec<(usize, Vec<f32>, bool, bool)> = Vec::new();
        for (s, slot) in self.tracks.iter_mut().enumerate() {
            let Some(track) = slot else { continue };
            if track.speaker.is_none() {
                if let Some((speech, reliable)) =
                    embedding_audio(&self.engine.params, activity, s, window, window.len())
                {
                    let due = activity[..due].iter().any(|f| f[s]);
                    pieces.push((s, speech, reliable, due));
                }
            } else if track.clean.len() >= refresh_samples {
                // The latest speech only: a voice that changed shows at once.
                let speech = track.clean.split_off(track.clean.len() - refresh_samples);
                track.clean.clear();
                pieces.push((s, speech, true, false));
            }
        }
        if pieces.is_empty() {
            return Ok(());
        }
        let mut embedder = self.engine.embedders.take(embedding::MODEL_FILE)?;
        let mut features = Vec::new();
        let mut candidates = Vec::new();
        let mut locals = Vec::new();
        for (s, speech, reliable, due) in pieces {
            features.clear();
            let frames = self.fbank.compute(&speech, &mut features);
            let embedding: Option<Embedding> = embedder
                .run(&features, frames)?
                .into_iter()
                .next()
                .and_then(normalised);
            if let Some(embedding) = embedding {
                let current = self.tracks[s].as_ref().and_then(|t| t.speaker);
                candidates.push(Candidate {
                    embedding,
                    reliable,
                    current: current.map(|k| self.speakers.resolve(k)),
                    held: Vec::new(),
                    due,
                });
                locals.push(s);
            }
        }
        drop(embedder);
        // A voice heard at the same time as another voice of the window that
        // keeps its speaker cannot be that speaker. Voices heard one after the
        // other may be one person the model gave two local slots.
        for (candidate, &s) in candidates.iter_mut().zip(&locals) {
            candidate.held = (0..LOCAL_SPEAKERS)
                .filter(|t| !locals.contains(t))
                .filter(|&t| activity.iter().any(|f| f[s] && f[t]))
                .filter_map(|t| self.tracks[t].as_ref()?.speaker)
                .map(|k| self.speakers.resolve(k))
                .collect();
        }
        let (chosen, changes) = self.speakers.assign(&candidates);
        for _ in 0..changes.new_speakers {
            self.timeline.add_speaker();
        }
        for &(from, to) in &changes.merges {
            self.timeline.merge(from, to);
            events.push(LiveEvent::Relabel {
                from: SpeakerId(from),
                to: SpeakerId(to),
            });
        }
        for (&s, speaker) in locals.iter().zip(chosen) {
            let Some(track) = self.tracks[s].as_mut() else {
                continue;
            };
            if let Some(k) = speaker {
                // The first assignment also claims what the voice said before it.
                if track.speaker.is_none() {
                    for (g, weight) in track.pending.drain(..) {
                        self.timeline.add_activation(k, g, weight);
                    }
                }
                track.speaker = Some(k);
            }
        }
        Ok(())
    }

    /// Remembers the activity of voices without a speaker yet, for as long as
    /// it is undecided.
    fn remember_unassigned(&mut self, start_frame: i64, activity: &LocalActivity) {
        let weights = super::reconstruct::hamming(activity.len());
        let first_undecided = self.timeline.first_frame();
        for (s, slot) in self.tracks.iter_mut().enumerate() {
            let Some(track) = slot.as_mut().filter(|t| t.speaker.is_none()) else {
                continue;
            };
            track.pending.retain(|&(g, _)| g >= first_undecided);
            for (i, frame) in activity.iter().enumerate() {
                let g = start_frame + i as i64;
                if frame[s] && g >= first_undecided as i64 {
                    track.pending.push((g as usize, weights[i]));
                }
            }
        }
    }
}

/// A local speaker silent this long and then speaking again is heard as a new voice.
const RETURN_PAUSE_SECONDS: f64 = 1.0;

/// Voices sharing fewer active frames than this (0.2 s) are not the same voice.
const MIN_SHARED_FRAMES: i64 = 12;

/// Clean speech is taken this far (0.14 s) from the window's end: the model
/// has heard a little of what follows, and the voice is embedded soon after
/// it speaks (0.5 s or 1 s back was worse on dev: later corrections).
const HARVEST_DELAY_FRAMES: usize = 8;

/// Sorts turns and joins overlapping or touching turns of one speaker
/// (two speakers merged by a relabel).
fn joined(mut turns: Vec<Turn>) -> Vec<Turn> {
    turns.sort_by(|a, b| {
        a.speaker
            .cmp(&b.speaker)
            .then(a.start_seconds.total_cmp(&b.start_seconds))
    });
    let mut out: Vec<Turn> = Vec::with_capacity(turns.len());
    for turn in turns {
        match out.last_mut() {
            Some(last)
                if last.speaker == turn.speaker && turn.start_seconds <= last.end_seconds =>
            {
                last.end_seconds = last.end_seconds.max(turn.end_seconds);
            }
            _ => out.push(turn),
        }
    }
    out.sort_by(|a, b| a.start_seconds.total_cmp(&b.start_seconds));
    out
}
