//! A WHIP client (RFC 9725) as a browser is one: one Opus audio track and an
//! `events` data channel, offered with all its ICE candidates gathered.
//!
//! ```text
//! new (offer) ─▶ POST by the caller ─▶ connect (answer) ─▶ send_packet … ─▶ DELETE by the caller, or close
//! ```
//!
//! mDNS is off and loopback candidates are on: the server runs on this host.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use rtc::media::Sample;
use rtc::media_stream::MediaStreamTrack;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription, Registry,
    SettingEngineBuilder, register_default_interceptors,
};

/// Audio per RTP packet.
pub const PACKET: Duration = Duration::from_millis(20);
const OPUS_PAYLOAD_TYPE: u8 = 111;
const SSRC: u32 = 0x50a4_0001;
/// The data channel the server sends its events on.
const EVENTS_CHANNEL: &str = "events";

fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "audio/opus".to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

struct PeerEvents {
    gathering: watch::Sender<RTCIceGatheringState>,
    state: watch::Sender<RTCPeerConnectionState>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for PeerEvents {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        let _ = self.gathering.send(state);
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.state.send(state);
    }
}

/// One client peer, from its offer to its close.
pub struct WhipPeer {
    peer: Arc<dyn PeerConnection>,
    track: Arc<TrackLocalStaticSample>,
    state: watch::Receiver<RTCPeerConnectionState>,
    /// Every data channel message that parsed as JSON, in order.
    pub messages: mpsc::UnboundedReceiver<Value>,
    /// The offer's SDP, to POST.
    pub offer: String,
}

impl WhipPeer {
    /// Builds the peer and its offer, waiting (at most `limit`) for ICE
    /// gathering so the offer carries every candidate.
    pub async fn new(limit: Duration) -> anyhow::Result<Self> {
        let mut media = MediaEngine::default();
        media.register_codec(
            RTCRtpCodecParameters {
                rtp_codec: opus_codec(),
                payload_type: OPUS_PAYLOAD_TYPE,
            },
            RtpCodecKind::Audio,
        )?;
        let registry = register_default_interceptors(Registry::new(), &mut media)?;
        let (gathering, mut gathered) = watch::channel(RTCIceGatheringState::New);
        let (state_in, state) = watch::channel(RTCPeerConnectionState::New);
        let peer = PeerConnectionBuilder::new()
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .with_setting_engine(
                SettingEngineBuilder::new()
                    .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
                    .with_include_loopback_candidate(true)
                    .build(),
            )
            .with_handler(Arc::new(PeerEvents {
                gathering,
                state: state_in,
            }))
            .with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
            .build()
            .await?;
        let peer: Arc<dyn PeerConnection> = Arc::new(peer);
        let track = Arc::new(TrackLocalStaticSample::new(
            std::time::Instant::now(),
            MediaStreamTrack::new(
                "loadtest".to_owned(),
                "microphone".to_owned(),
                "microphone".to_owned(),
                RtpCodecKind::Audio,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        ssrc: Some(SSRC),
                        ..Default::default()
                    },
                    codec: opus_codec(),
                    ..Default::default()
                }],
            ),
        )?);
        peer.add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
            .await?;
        let channel = peer.create_data_channel(EVENTS_CHANNEL, None).await?;
        let (messages_in, messages) = mpsc::unbounded_channel();
        tokio::spawn(read_channel(channel, messages_in));
        let offer = peer.create_offer(None).await?;
        peer.set_local_description(offer).await?;
        tokio::time::timeout(
            limit,
            gathered.wait_for(|s| *s == RTCIceGatheringState::Complete),
        )
        .await
        .context("ICE gathering timed out")??;
        let offer = peer
            .local_description()
            .await
            .context("no local description")?
            .sdp;
        Ok(Self {
            peer,
            track,
            state,
            messages,
            offer,
        })
    }

    /// Applies the server's answer and waits (at most `limit`) until connected.
    pub async fn connect(&mut self, answer: String, limit: Duration) -> anyhow::Result<()> {
        let answer = RTCSessionDescription::answer(answer)?;
        self.peer.set_remote_description(answer).await?;
        tokio::time::timeout(
            limit,
            self.state
                .wait_for(|s| *s == RTCPeerConnectionState::Connected),
        )
        .await
        .context("the peers did not connect in time")??;
        Ok(())
    }

    /// Sends one Opus packet of [`PACKET`]; `dropped_before` packets were
    /// lost just before it (their sequence numbers and timestamps are skipped,
    /// as when the network drops them).
    pub async fn send_packet(&self, packet: &[u8], dropped_before: u16) -> anyhow::Result<()> {
        self.track
            .sample_writer(SSRC, OPUS_PAYLOAD_TYPE)
            .write_sample(&Sample {
                data: Bytes::copy_from_slice(packet),
                duration: PACKET,
                prev_dropped_packets: dropped_before,
                ..Sample::new(std::time::Instant::now())
            })
            .await?;
        Ok(())
    }

    /// Whether the connection is over (failed, closed, or disconnected).
    pub fn is_down(&self) -> bool {
        matches!(
            *self.state.borrow(),
            RTCPeerConnectionState::Failed
                | RTCPeerConnectionState::Closed
                | RTCPeerConnectionState::Disconnected
        )
    }

    /// Closes the peer; the server sees it leave.
    pub async fn close(&self) {
        let _ = self.peer.close().await;
    }
}

async fn read_channel(channel: Arc<dyn DataChannel>, messages: mpsc::UnboundedSender<Value>) {
    while let Some(event) = channel.poll().await {
        match event {
            DataChannelEvent::OnMessage(message) => {
                // Anything but JSON is the caller's to count: it gets Null.
                let json = serde_json::from_slice(&message.data).unwrap_or(Value::Null);
                if messages.send(json).is_err() {
                    return;
                }
            }
            DataChannelEvent::OnClose => return,
            _ => {}
        }
    }
}

/// Encodes 16-bit mono PCM into 20 ms Opus packets, one at a time.
pub struct OpusPackets {
    encoder: opus::Encoder,
    buffer: Vec<u8>,
}

impl OpusPackets {
    pub fn new(sample_rate: u32) -> anyhow::Result<Self> {
        let encoder =
            opus::Encoder::new(sample_rate, opus::Channels::Mono, opus::Application::Voip)
                .context("creating an Opus encoder")?;
        Ok(Self {
            encoder,
            buffer: vec![0; 4000],
        })
    }

    /// One packet of exactly 20 ms of samples.
    pub fn encode(&mut self, samples: &[i16]) -> anyhow::Result<&[u8]> {
        let len = self.encoder.encode(samples, &mut self.buffer)?;
        Ok(&self.buffer[..len])
    }
}
