//! One file through the whole path: decode → resample → engine → outputs.
//!
//! Decoding runs on its own thread and hands 16 kHz blocks to the engine
//! through a small bounded channel, so decoding overlaps inference and memory
//! stays bounded. The outputs need the original audio again, so the file is
//! decoded a second time rather than kept.

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::audio::{AnalysisResampler, AudioInfo, AudioReader, DecodeError};
use crate::diarization::{Diarization, Overlap};
use crate::engine::{Engine, RunError, SpeakerCount, StageTimes};
use crate::output::{self, OutputError, Report};

/// Blocks in flight between the decoder and the engine.
const DECODED_BLOCKS_IN_FLIGHT: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Engine(#[from] RunError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error("the decoder thread panicked")]
    DecoderPanicked,
    #[error("cancelled")]
    Cancelled,
}

/// Wall-clock seconds of each stage of one file. Decoding overlaps the
/// engine; the engine stages are summed over its worker threads.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Timings {
    pub decode_seconds: f64,
    #[serde(flatten)]
    pub engine: StageTimes,
    pub analysis_seconds: f64,
    pub outputs_seconds: f64,
}

/// Diarizes one file. `progress` is called with the seconds of audio analysed
/// so far and the file's duration when its container states it; returning
/// `Break` cancels the run.
pub fn diarize_file(
    engine: &Engine,
    input: &Path,
    speakers: SpeakerCount,
    mut progress: impl FnMut(f64, Option<f64>) -> ControlFlow<()>,
) -> Result<(AudioInfo, Diarization, Timings), PipelineError> {
    let started = Instant::now();
    let reader = AudioReader::open(input)?;
    let info = reader.info().clone();
    let duration = info.duration_seconds();
    let (blocks, decoded) = mpsc::sync_channel::<Vec<f32>>(DECODED_BLOCKS_IN_FLIGHT);

    let (run, decode) = std::thread::scope(|scope| {
        let decoder = scope.spawn(move || decode_for_analysis(reader, blocks));
        let mut run = engine.start(speakers, duration);
        let mut failure = None;
        for block in decoded {
            if failure.is_some() {
                continue; // drain, so the decoder never blocks on a full channel
            }
            match run.push(&block) {
                Ok(()) => {
                    if progress(run.pushed_seconds(), duration).is_break() {
                        // Dropping the receiver stops the decoder at its next block.
                        failure = Some(PipelineError::Cancelled);
                        break;
                    }
                }
                Err(e) => failure = Some(e.into()),
            }
        }
        let decode = decoder.join();
        (failure.map_or(Ok(run), Err), decode)
    });
    let decode_seconds = decode.map_err(|_| PipelineError::DecoderPanicked)??;
    let (diarization, engine_times) = run?.finish()?;
    let timings = Timings {
        decode_seconds,
        engine: engine_times,
        analysis_seconds: started.elapsed().as_secs_f64(),
        outputs_seconds: 0.0,
    };
    Ok((info, diarization, timings))
}

/// Decodes and resamples the whole file into `blocks`; returns the seconds
/// spent decoding, not waiting for the engine.
fn decode_for_analysis(
    mut reader: AudioReader,
    blocks: mpsc::SyncSender<Vec<f32>>,
) -> Result<f64, DecodeError> {
    let mut busy = Duration::ZERO;
    let mut started = Instant::now();
    let info = reader.info().clone();
    let mut resampler = AnalysisResampler::new(info.sample_rate, info.channels)?;
    let mut out = Vec::new();
    while let Some(block) = reader.next_block()? {
        resampler.push(block, &mut out);
        if !out.is_empty() {
            busy += started.elapsed();
            if blocks.send(std::mem::take(&mut out)).is_err() {
                break; // the engine gave up
            }
            started = Instant::now();
        }
    }
    resampler.finish(&mut out);
    busy += started.elapsed();
    if !out.is_empty() {
        // A closed channel means the engine already failed; it reports that.
        let _ = blocks.send(out);
    }
    Ok(busy.as_secs_f64())
}

/// Diarizes `input` and writes `out_dir/<stem>.rttm`, `speaker_N.wav` and
/// `result.json`; `overlap` says whether they may hold two speakers at once.
pub fn process_file(
    engine: &Engine,
    input: &Path,
    out_dir: &Path,
    speakers: SpeakerCount,
    overlap: Overlap,
    progress: impl FnMut(f64, Option<f64>) -> ControlFlow<()>,
) -> Result<Report, PipelineError> {
    let (_, diarization, mut timings) = diarize_file(engine, input, speakers, progress)?;
    let diarization = overlap.apply(diarization);
    let started = Instant::now();
    let mut report = output::write_all(
        AudioReader::open(input)?,
        &diarization,
        &file_id(input),
        out_dir,
    )?;
    timings.outputs_seconds = started.elapsed().as_secs_f64();
    // result.json gets the timings too, so a batch job's result shows where its time went.
    report.timing = serde_json::to_value(timings).ok();
    report.write_json(&out_dir.join(output::RESULT_FILE))?;
    Ok(report)
}

/// The RTTM file-id of an input: its file stem.
pub fn file_id(input: &Path) -> String {
    input
        .file_stem()
        .map_or_else(|| "audio".to_string(), |s| s.to_string_lossy().into_owned())
}
