//! One WHIP session with its fault: offer, 201 (the job id), connect, Opus
//! packets every 20 ms, then DELETE, or the peer closing without one.
//!
//! Lost packets are skipped at the sender with their sequence numbers and
//! timestamps, so the server conceals them and the timeline keeps its
//! length; the first and last packets always go, so the audio sent is the
//! span from the first to the last packet.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, LOCATION};
use serde_json::Value;
use tokio::time::{Instant, sleep_until};

use super::Soak;
use super::tally::{SessionRecord, Transport};
use super::ws::hash;
use crate::audio::{Encoding, StreamAudio};
use crate::whip::{OpusPackets, PACKET, WhipPeer};

pub const WHIP_PATH: &str = "/api/v1/speaker/whip";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhipFault {
    None,
    /// 10 % of the RTP packets are dropped at the sender.
    Loss,
    /// The peer closes mid-stream without a DELETE.
    Vanish,
}

impl WhipFault {
    pub const ROTATION: [Self; 4] = [Self::None, Self::Loss, Self::Vanish, Self::Loss];

    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Loss => "whip_loss_10pct",
            Self::Vanish => "whip_vanish_without_delete",
        }
    }
}

pub async fn session(
    soak: &Soak,
    name: String,
    fault: WhipFault,
    audio: StreamAudio,
) -> SessionRecord {
    let mut record = SessionRecord::new(Transport::Whip, name, fault.name(), soak.epoch.seconds());
    if let Err(reason) = run(soak, fault, &audio, &mut record).await
        && record.ending.is_empty()
    {
        record.ending = reason;
    }
    record.ended_at_seconds = soak.epoch.seconds();
    record
}

async fn run(
    soak: &Soak,
    fault: WhipFault,
    audio: &StreamAudio,
    record: &mut SessionRecord,
) -> Result<(), String> {
    let settings = &soak.settings;
    let mut peer = WhipPeer::new(settings.connect_timeout)
        .await
        .map_err(|e| format!("building the peer: {e:#}"))?;
    let mut url = settings.base.join(WHIP_PATH).map_err(|e| e.to_string())?;
    url.query_pairs_mut()
        .append_pair("latency_ms", &settings.latency_ms.to_string())
        .append_pair("name", &record.name);
    let response = soak
        .http
        .post(url)
        .bearer_auth(&settings.api_key)
        .header(CONTENT_TYPE, "application/sdp")
        .body(peer.offer.clone())
        .timeout(settings.connect_timeout)
        .send()
        .await;
    let response = match response {
        Ok(response) => response,
        Err(e) => {
            peer.close().await;
            return Err(format!("offer: {e}"));
        }
    };
    if response.status() != StatusCode::CREATED {
        peer.close().await;
        return Err(format!("refused: HTTP {}", response.status().as_u16()));
    }
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    record.job_id = header("x-job-id").and_then(|id| id.parse().ok());
    let location = header(LOCATION.as_str()).unwrap_or_default();
    let resource = settings.base.join(&location).map_err(|e| e.to_string())?;
    let answer = response.text().await.map_err(|e| e.to_string())?;
    if let Err(e) = peer.connect(answer, settings.connect_timeout).await {
        // The session exists; end it rather than let it idle out.
        let _ = delete(soak, &resource).await;
        peer.close().await;
        return Err(format!("connecting: {e:#}"));
    }

    let mut rng = fastrand::Rng::with_seed(settings.seed ^ hash(&record.name));
    let samples = samples_s16(audio);
    let per_packet = (audio.sample_rate as usize) * PACKET.as_millis() as usize / 1000;
    let packets = samples.len() / per_packet;
    let vanish_at = packets / 5 + rng.usize(..(packets * 3 / 5).max(1));
    let mut opus = OpusPackets::new(audio.sample_rate).map_err(|e| format!("{e:#}"))?;
    let origin = Instant::now();
    let mut last_sent: Option<usize> = None;
    let mut dropped: u16 = 0;
    for index in 0..packets {
        sleep_until(origin + PACKET * index as u32).await;
        if server_ended(&mut peer, record) || peer.is_down() {
            break;
        }
        if fault == WhipFault::Vanish && index == vanish_at {
            soak.tally.fault(fault.name());
            record.ending = "vanished".to_owned();
            break;
        }
        let packet = opus
            .encode(&samples[index * per_packet..(index + 1) * per_packet])
            .map_err(|e| format!("{e:#}"))?;
        let inside = index > 0 && index + 1 < packets;
        if fault == WhipFault::Loss && inside && rng.f64() < 0.1 {
            soak.tally.fault(fault.name());
            dropped += 1;
            continue;
        }
        if peer
            .send_packet(packet, std::mem::take(&mut dropped))
            .await
            .is_err()
        {
            break;
        }
        last_sent = Some(index);
    }
    record.audio_sent_seconds = last_sent.map_or(0.0, |i| (i + 1) as f64 * PACKET.as_secs_f64());

    if record.ending == "vanished" {
        peer.close().await;
        return Ok(());
    }
    if record.ending.is_empty() {
        let asked = Instant::now();
        match delete(soak, &resource).await {
            Ok(completed) => {
                record.ending = "delete".to_owned();
                record.completion_lag_seconds = Some(asked.elapsed().as_secs_f64());
                record.completed_seconds = completed["duration_seconds"].as_f64();
            }
            Err(e) => record.ending = format!("delete: {e}"),
        }
    }
    // A server-side end: the `completed` follows on the data channel.
    let until = Instant::now() + Duration::from_secs(30);
    while record.completed_seconds.is_none() && Instant::now() < until {
        if server_ended(&mut peer, record) && record.completed_seconds.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    peer.close().await;
    Ok(())
}

/// Reads what the data channel holds; true once the server ended the session.
fn server_ended(peer: &mut WhipPeer, record: &mut SessionRecord) -> bool {
    let mut ended = false;
    while let Ok(message) = peer.messages.try_recv() {
        match message["type"].as_str() {
            Some("error") => {
                let code = message["code"].as_str().unwrap_or("?").to_owned();
                if record.ending.is_empty() {
                    record.ending = format!("server:{code}");
                }
                record.server_errors.push(code);
                ended = true;
            }
            Some("completed") => {
                record.completed_seconds = message["duration_seconds"].as_f64();
                ended = true;
            }
            _ => record.behind |= message["code"] == "behind",
        }
    }
    ended || !record.ending.is_empty() && record.ending.starts_with("server:")
}

async fn delete(soak: &Soak, resource: &url::Url) -> Result<Value, String> {
    let response = soak
        .http
        .delete(resource.clone())
        .bearer_auth(&soak.settings.api_key)
        .timeout(soak.settings.completion_timeout)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("HTTP {}", status.as_u16()));
    }
    response.json().await.map_err(|e| e.to_string())
}

/// The stream's audio as 16-bit mono samples.
fn samples_s16(audio: &StreamAudio) -> Vec<i16> {
    audio
        .frames(1000, Encoding::PcmS16le)
        .flat_map(|frame| {
            frame
                .bytes
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect::<Vec<_>>()
        })
        .collect()
}
