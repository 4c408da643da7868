//! Batch jobs beside the streams: every few seconds one upload to
//! `POST /api/v1/speaker/extract`, good WAVs and bad files in turn.

use std::io::Cursor;
use std::sync::Arc;

use reqwest::multipart::{Form, Part};

use super::Soak;
use super::tally::BatchRecord;
use crate::audio::{Clip, Encoding, StreamAudio};

const EXTRACT_PATH: &str = "/api/v1/speaker/extract";
/// Length of the good uploads: short, so the queue keeps up beside the streams.
const GOOD_SECONDS: f64 = 12.0;

/// One file to upload.
pub struct Upload {
    pub kind: &'static str,
    pub extension: &'static str,
    pub bytes: Vec<u8>,
}

/// The files submitted in turn: two good ones to each kind of bad one.
pub fn uploads(clips: &[Arc<Clip>], seed: u64) -> anyhow::Result<Vec<Upload>> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let good = |clip: &Arc<Clip>| -> anyhow::Result<Upload> {
        let audio = StreamAudio::new(vec![Arc::clone(clip)], Some(GOOD_SECONDS))?;
        Ok(Upload {
            kind: "good",
            extension: "wav",
            bytes: wav_bytes(&audio)?,
        })
    };
    let first = clips.first().ok_or_else(|| anyhow::anyhow!("no clips"))?;
    let second = clips.get(1).unwrap_or(first);
    let noise: Vec<u8> = std::iter::repeat_with(|| rng.u8(..))
        .take(200_000)
        .collect();
    let truncated = good(first)?.bytes[..30].to_vec();
    Ok(vec![
        good(first)?,
        Upload {
            kind: "corrupt_bytes",
            extension: "wav",
            bytes: noise,
        },
        good(second)?,
        Upload {
            kind: "unsupported_format",
            extension: "txt",
            bytes: b"Minutes of the meeting: nobody spoke.\n".repeat(200),
        },
        good(first)?,
        Upload {
            kind: "empty_file",
            extension: "wav",
            bytes: Vec::new(),
        },
        good(second)?,
        Upload {
            kind: "truncated_header",
            extension: "wav",
            bytes: truncated,
        },
    ])
}

fn wav_bytes(audio: &StreamAudio) -> anyhow::Result<Vec<u8>> {
    let spec = hound::WavSpec {
        channels: audio.channels,
        sample_rate: audio.sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut out = Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut out, spec)?;
    for frame in audio.frames(1000, Encoding::PcmS16le) {
        for b in frame.bytes.chunks_exact(2) {
            writer.write_sample(i16::from_le_bytes([b[0], b[1]]))?;
        }
    }
    writer.finalize()?;
    Ok(out.into_inner())
}

/// Submits one upload and records the answer.
pub async fn submit(soak: &Soak, index: usize, upload: &Upload) -> BatchRecord {
    let filename = format!(
        "{}-batch-{index:04}-{}.{}",
        soak.settings.prefix, upload.kind, upload.extension
    );
    if upload.kind != "good" {
        soak.tally.fault("batch_bad_file");
    }
    let mut record = BatchRecord {
        filename: filename.clone(),
        kind: upload.kind,
        status: None,
        job_id: None,
        detail: String::new(),
    };
    let Ok(url) = soak.settings.base.join(EXTRACT_PATH) else {
        return record;
    };
    let part = Part::bytes(upload.bytes.clone()).file_name(filename);
    let response = soak
        .http
        .post(url)
        .header("X-API-Key", &soak.settings.api_key)
        .multipart(Form::new().part("file", part))
        .timeout(soak.settings.completion_timeout)
        .send()
        .await;
    match response {
        Ok(response) => {
            record.status = Some(response.status().as_u16());
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            record.job_id = body["id"].as_i64();
            record.detail = body["detail"].as_str().unwrap_or_default().to_owned();
        }
        Err(e) => record.detail = format!("not submitted: {e}"),
    }
    record
}
