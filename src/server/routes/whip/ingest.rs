//! One WHIP session's life: RTP from the peer's audio track into the live
//! session, events out on the `events` data channel, and the end, whichever
//! comes first: DELETE, ICE failure, a peer gone quiet, the maximum
//! duration, running out of credits, or a server shutdown.
//!
//! ```text
//! track ─RTP─▶ reader ─▶ packets ─▶ run: order, conceal gaps ─▶ Session ─▶ events ─▶ forward ─▶ data channel
//! ```
//!
//! The forwarder is its own task: the session's analysis thread waits on the
//! event queue, so whoever pushes audio must not also be the one draining it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until, timeout};
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{PeerConnection, RTCPeerConnectionState};

use super::Outgoing;
use super::signals::Signals;
use crate::live::{Completed, LiveError, Session};
use crate::server::AppState;

/// RTP packets waiting for the session (10 s of 20 ms packets); the reader waits beyond
/// this, and the WebRTC stack drops what its own queue cannot hold.
const PACKET_QUEUE: usize = 500;
/// After a DELETE, the queue is drained until no packet came for this long: the audio the
/// client sent before it asked to end is still on its way or queued behind a busy analysis.
const DRAIN_QUIET: Duration = Duration::from_millis(200);
/// Events kept for a data channel that is not open yet.
const PENDING_EVENTS: usize = 4096;
/// The data channel events are sent on.
const EVENTS_CHANNEL: &str = "events";
/// The RTP clock of Opus (RFC 7587).
const OPUS_CLOCK_HZ: u32 = 48_000;
/// The longest gap concealed; a longer jump in timestamps is cut to this.
const MAX_CONCEAL_FRAMES: u32 = 10 * OPUS_CLOCK_HZ;

/// Asks the session to end; the answer is the finished job.
pub type EndRequest = oneshot::Sender<Result<Completed, LiveError>>;

/// Why the session ended, for the metrics and the data channel.
enum Ending {
    Deleted(EndRequest),
    PeerGone,
    Failure { code: &'static str, message: String },
}

pub struct Ingest {
    pub state: AppState,
    pub session: Session<Outgoing>,
    pub peer: Arc<dyn PeerConnection>,
    pub signals: Signals,
    pub events: mpsc::Receiver<Outgoing>,
    pub out: mpsc::Sender<Outgoing>,
    pub ends: mpsc::Receiver<EndRequest>,
}

impl Ingest {
    pub async fn run(self) {
        let Self {
            state,
            mut session,
            peer,
            mut signals,
            events,
            out,
            mut ends,
        } = self;
        let _farewell = state.live.farewell();
        let session_id = session.session_id().to_owned();
        let job = session.job_id();
        let forwarder = tokio::spawn(forward(events, signals.channels));
        let _ = out.send(Outgoing::Event(session.ready())).await;

        let live = state.live.config();
        let peer_timeout = state.whip.peers.config().peer_timeout;
        let deadline = Instant::now() + live.max_session;
        let mut idle_deadline = Instant::now() + live.idle_timeout;
        let mut gone_deadline: Option<Instant> = None;
        let (packets_in, mut packets) = mpsc::channel(PACKET_QUEUE);
        let mut packets_in = Some(packets_in);
        let mut order = RtpOrder::default();
        let ending = loop {
            tokio::select! {
                Some(track) = signals.tracks.recv() => {
                    // The first audio track carries the stream; the offer has one.
                    if let Some(packets_in) = packets_in.take() {
                        tokio::spawn(read_track(track, packets_in));
                    }
                }
                Some(packet) = packets.recv() => {
                    idle_deadline = Instant::now() + live.idle_timeout;
                    if let Err(e) = accept(&mut session, &mut order, &packet).await {
                        break failure(&e);
                    }
                }
                Some(request) = ends.recv() => break Ending::Deleted(request),
                changed = signals.state.changed() => {
                    if changed.is_err() {
                        break Ending::PeerGone;
                    }
                    match *signals.state.borrow_and_update() {
                        RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                            break Ending::PeerGone;
                        }
                        RTCPeerConnectionState::Disconnected => {
                            gone_deadline.get_or_insert(Instant::now() + peer_timeout);
                        }
                        _ => gone_deadline = None,
                    }
                }
                () = sleep_until(gone_deadline.unwrap_or(deadline)), if gone_deadline.is_some() => {
                    break Ending::PeerGone;
                }
                () = sleep_until(idle_deadline) => break Ending::Failure {
                    code: "idle_timeout",
                    message: "No audio for too long".to_owned(),
                },
                () = sleep_until(deadline) => break Ending::Failure {
                    code: "max_duration",
                    message: format!("Sessions last at most {} s", live.max_session.as_secs()),
                },
                () = state.live.shutdown().cancelled() => break Ending::Failure {
                    code: "server_shutdown",
                    message: "The server is shutting down; the stream was finalized".to_owned(),
                },
            }
        };
        // From here on the session cannot be reached: a late DELETE finds nothing.
        state.whip.sessions.remove(&session_id);
        let quiet = match &ending {
            Ending::Deleted(_) => Some(DRAIN_QUIET),
            Ending::PeerGone
            | Ending::Failure {
                code: "server_shutdown",
                ..
            } => Some(Duration::ZERO),
            Ending::Failure { .. } => None,
        };
        if let Some(quiet) = quiet {
            // The session still ends as asked; audio it cannot take (no credits left) is lost.
            if let Err(e) = drain(&mut session, &mut order, &mut packets, quiet).await {
                tracing::warn!(job, error = %e, "audio queued at the end was refused");
            }
        }
        let reason = match &ending {
            Ending::Deleted(_) => "completed",
            Ending::PeerGone => "disconnected",
            Ending::Failure { code, .. } => code,
        };
        metrics::counter!("whospoke_live_sessions_ended_total", "reason" => reason).increment(1);
        tracing::info!(job, reason, "WHIP session ended");
        if let Ending::Failure { code, message } = &ending {
            let _ = out
                .send(Outgoing::Error {
                    code,
                    message: message.clone(),
                })
                .await;
        }
        let completed = session.end().await;
        match &completed {
            Ok(done) => {
                let event = crate::live::Event::Completed(Box::new(done.clone()));
                let _ = out.send(Outgoing::Event(event)).await;
            }
            Err(e) => tracing::error!(job, error = %e, "finalizing the WHIP session failed"),
        }
        // The last events reach the data channel before the peer closes.
        drop(out);
        let _ = forwarder.await;
        let _ = peer.close().await;
        if let Ending::Deleted(request) = ending {
            let _ = request.send(completed);
        }
    }
}

/// Takes the audio the peer sent before the session ended: the packets queued, and those
/// arriving until the queue has been empty for `quiet`. Bounded by what the queue and the
/// WebRTC stack hold, so a peer that keeps sending cannot hold the session open.
async fn drain(
    session: &mut Session<Outgoing>,
    order: &mut RtpOrder,
    packets: &mut mpsc::Receiver<rtc::rtp::Packet>,
    quiet: Duration,
) -> Result<(), LiveError> {
    for _ in 0..2 * PACKET_QUEUE {
        let packet = match packets.try_recv() {
            Ok(packet) => packet,
            Err(_) if quiet.is_zero() => break,
            Err(_) => match timeout(quiet, packets.recv()).await {
                Ok(Some(packet)) => packet,
                Ok(None) | Err(_) => break,
            },
        };
        accept(session, order, &packet).await?;
    }
    Ok(())
}

/// Pushes one RTP packet's audio, concealing what was lost before it.
async fn accept(
    session: &mut Session<Outgoing>,
    order: &mut RtpOrder,
    packet: &rtc::rtp::Packet,
) -> Result<(), LiveError> {
    let frames = opus::packet::get_nb_samples(&packet.payload, OPUS_CLOCK_HZ).unwrap_or(0);
    let header = &packet.header;
    let Some(lost) = order.admit(header.sequence_number, header.timestamp, frames as u32) else {
        return Ok(());
    };
    if lost > 0 {
        session.conceal(lost as usize).await?;
    }
    session.push(&packet.payload).await
}

fn failure(error: &LiveError) -> Ending {
    let code = match error {
        LiveError::CreditsExhausted => "credits_exhausted",
        LiveError::BadAudio(_) => "bad_audio",
        _ => "internal",
    };
    if code == "internal" {
        tracing::error!(error = %error, "WHIP audio failed");
    }
    Ending::Failure {
        code,
        message: error.to_string(),
    }
}

/// Reads the track until it ends, waiting while the session is busy.
async fn read_track(track: Arc<dyn TrackRemote>, packets: mpsc::Sender<rtc::rtp::Packet>) {
    while let Some(event) = track.poll().await {
        let more = match event {
            TrackRemoteEvent::OnRtpPacket(packet) => packets.send(packet).await.is_ok(),
            TrackRemoteEvent::OnEnded => false,
            _ => true,
        };
        if !more {
            return;
        }
    }
}

/// Sends events on the `events` data channel once the client opens it,
/// keeping them until then.
async fn forward(
    mut events: mpsc::Receiver<Outgoing>,
    mut channels: mpsc::Receiver<Arc<dyn DataChannel>>,
) {
    let (opened_in, mut opened) = mpsc::channel(1);
    let mut channel: Option<Arc<dyn DataChannel>> = None;
    let mut pending = VecDeque::new();
    loop {
        tokio::select! {
            message = events.recv() => {
                let Some(message) = message else { break };
                pending.push_back(message.message().to_text());
                if pending.len() > PENDING_EVENTS {
                    pending.pop_front();
                }
            }
            Some(offered) = channels.recv() => {
                if offered.label().await.is_ok_and(|label| label == EVENTS_CHANNEL) {
                    tokio::spawn(watch_open(offered, opened_in.clone()));
                }
            }
            Some(open) = opened.recv() => channel = Some(open),
        }
        if let Some(open) = &channel {
            while let Some(text) = pending.pop_front() {
                if open.send_text(&text).await.is_err() {
                    // The client closed it; events stay on the events endpoint.
                    pending.clear();
                    break;
                }
            }
        }
    }
}

/// Hands the channel over once it is open, and drains its own events.
async fn watch_open(channel: Arc<dyn DataChannel>, opened: mpsc::Sender<Arc<dyn DataChannel>>) {
    while let Some(event) = channel.poll().await {
        match event {
            DataChannelEvent::OnOpen => {
                let _ = opened.send(Arc::clone(&channel)).await;
            }
            DataChannelEvent::OnClose => return,
            _ => {}
        }
    }
}

/// Puts RTP packets in order: drops late and repeated ones, and measures
/// the audio lost before each packet from the timestamps.
#[derive(Debug, Default)]
struct RtpOrder {
    /// The last packet's sequence number and the timestamp expected next.
    last: Option<(u16, u32)>,
}

impl RtpOrder {
    /// The sample frames lost before this packet, or `None` to drop it.
    fn admit(&mut self, sequence: u16, timestamp: u32, frames: u32) -> Option<u32> {
        let lost = match self.last {
            None => 0,
            Some((last, expected)) => {
                let step = sequence.wrapping_sub(last);
                if step == 0 || step >= 0x8000 {
                    return None;
                }
                let gap = timestamp.wrapping_sub(expected);
                if gap >= 0x8000_0000 {
                    0
                } else {
                    gap.min(MAX_CONCEAL_FRAMES)
                }
            }
        };
        self.last = Some((sequence, timestamp.wrapping_add(frames)));
        Some(lost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_order_conceals_gaps_and_drops_late_packets() {
        let mut order = RtpOrder::default();
        assert_eq!(order.admit(65_534, 1_000, 960), Some(0));
        assert_eq!(order.admit(65_535, 1_960, 960), Some(0));
        // Sequence numbers wrap; two packets (1,920 frames) were lost.
        assert_eq!(order.admit(2, 4_840, 960), Some(1_920));
        // A late packet and a repeat are dropped.
        assert_eq!(order.admit(1, 3_880, 960), None);
        assert_eq!(order.admit(2, 4_840, 960), None);
        assert_eq!(order.admit(3, 5_800, 960), Some(0));
        // A jump of a minute is concealed for at most ten seconds.
        assert_eq!(
            order.admit(4, 5_800 + 960 + 60 * 48_000, 960),
            Some(MAX_CONCEAL_FRAMES)
        );
    }
}
