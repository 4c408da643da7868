//! WebRTC peers for WHIP ingest, on the `webrtc` crate: receive-only Opus,
//! host candidates on one configured interface, an optional UDP port range,
//! mDNS off (it fails where there is no multicast route).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rtc::ice::mdns::MulticastDnsMode;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceServer, RTCSessionDescription, Registry, SettingEngineBuilder,
    register_default_interceptors,
};

/// How long ICE gathering may take before the answer goes out with the
/// candidates found so far (host candidates take milliseconds).
const GATHERING_TIMEOUT: Duration = Duration::from_secs(2);

/// Opus as browsers offer it (RFC 7587: always 48 kHz, two channels in SDP).
const OPUS_PAYLOAD_TYPE: u8 = 111;
const OPUS_FMTP: &str = "minptime=10;useinbandfec=1";

/// Settings of the WebRTC transport.
#[derive(Debug, Clone)]
pub struct WebRtcConfig {
    /// Where host candidates bind; unspecified means every interface.
    pub interface: IpAddr,
    /// UDP ports peers may use, inclusive; `None` for ephemeral ports.
    pub udp_ports: Option<(u16, u16)>,
    pub ice_servers: Vec<IceServer>,
    /// A peer disconnected this long is gone.
    pub peer_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceServer {
    pub url: String,
    pub username: Option<String>,
    pub credential: Option<String>,
}

impl IceServer {
    /// The server as a WHIP `Link` header value (RFC 9725 §4.6).
    pub fn link(&self) -> String {
        let mut link = format!("<{}>; rel=\"ice-server\"", self.url);
        if let (Some(username), Some(credential)) = (&self.username, &self.credential) {
            link.push_str(&format!(
                "; username=\"{username}\"; credential=\"{credential}\"; credential-type=\"password\""
            ));
        }
        link
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("Invalid SDP offer: {0}")]
    BadOffer(String),
    #[error("The SDP offer has no audio track (no m=audio section)")]
    NoAudio,
    #[error("The SDP offer's audio does not offer Opus at 48 kHz")]
    NoOpus,
    #[error("No UDP port free in the configured range")]
    NoPort,
    #[error("webrtc: {0}")]
    WebRtc(String),
}

impl PeerError {
    /// Whether the client's offer is at fault, rather than the server.
    pub fn is_bad_offer(&self) -> bool {
        matches!(self, Self::BadOffer(_) | Self::NoAudio | Self::NoOpus)
    }
}

fn webrtc_error(error: impl std::fmt::Display) -> PeerError {
    PeerError::WebRtc(error.to_string())
}

/// Makes peers; shared by every WHIP session.
pub struct Peers {
    config: WebRtcConfig,
    /// Next port to try in the range.
    cursor: AtomicU32,
}

impl Peers {
    pub fn new(config: WebRtcConfig) -> Self {
        Self {
            config,
            cursor: AtomicU32::new(0),
        }
    }

    pub fn config(&self) -> &WebRtcConfig {
        &self.config
    }

    /// Checks an offer before anything is started for it.
    pub fn parse_offer(sdp: String) -> Result<RTCSessionDescription, PeerError> {
        let offer =
            RTCSessionDescription::offer(sdp).map_err(|e| PeerError::BadOffer(e.to_string()))?;
        let audio = audio_section(&offer.sdp).ok_or(PeerError::NoAudio)?;
        let has_opus = audio.lines().any(|line| {
            line.strip_prefix("a=rtpmap:")
                .and_then(|map| map.split_once(' '))
                .is_some_and(|(_, codec)| codec.to_ascii_lowercase().starts_with("opus/48000"))
        });
        if !has_opus {
            return Err(PeerError::NoOpus);
        }
        Ok(offer)
    }

    /// A peer answering `offer`, with its answer SDP once ICE gathering is
    /// done (WHIP sends all candidates in the answer).
    pub async fn answer(
        &self,
        offer: RTCSessionDescription,
        handler: Arc<dyn PeerConnectionEventHandler>,
        gathered: impl Future<Output = ()>,
    ) -> Result<(Arc<dyn PeerConnection>, String), PeerError> {
        let peer = self.build(handler).await?;
        let answered = async {
            peer.set_remote_description(offer)
                .await
                .map_err(|e| PeerError::BadOffer(e.to_string()))?;
            let answer = peer.create_answer(None).await.map_err(webrtc_error)?;
            peer.set_local_description(answer)
                .await
                .map_err(webrtc_error)?;
            let _ = tokio::time::timeout(GATHERING_TIMEOUT, gathered).await;
            peer.local_description()
                .await
                .map(|answer| answer.sdp)
                .ok_or_else(|| webrtc_error("no local description"))
        };
        match answered.await {
            Ok(sdp) => Ok((peer, sdp)),
            Err(e) => {
                let _ = peer.close().await;
                Err(e)
            }
        }
    }

    async fn build(
        &self,
        handler: Arc<dyn PeerConnectionEventHandler>,
    ) -> Result<Arc<dyn PeerConnection>, PeerError> {
        let Some((first, last)) = self.config.udp_ports else {
            return self.build_on(0, Arc::clone(&handler)).await;
        };
        let span = u32::from(last - first) + 1;
        for _ in 0..span {
            let port = first + (self.cursor.fetch_add(1, Ordering::Relaxed) % span) as u16;
            match self.build_on(port, Arc::clone(&handler)).await {
                Ok(peer) => return Ok(peer),
                Err(e) => tracing::debug!(port, error = %e, "UDP port unavailable"),
            }
        }
        Err(PeerError::NoPort)
    }

    async fn build_on(
        &self,
        port: u16,
        handler: Arc<dyn PeerConnectionEventHandler>,
    ) -> Result<Arc<dyn PeerConnection>, PeerError> {
        let mut media = MediaEngine::default();
        media
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: RTCRtpCodec {
                        mime_type: "audio/opus".to_owned(),
                        clock_rate: 48_000,
                        channels: 2,
                        sdp_fmtp_line: OPUS_FMTP.to_owned(),
                        rtcp_feedback: vec![],
                    },
                    payload_type: OPUS_PAYLOAD_TYPE,
                },
                RtpCodecKind::Audio,
            )
            .map_err(webrtc_error)?;
        let registry =
            register_default_interceptors(Registry::new(), &mut media).map_err(webrtc_error)?;
        let settings = SettingEngineBuilder::new()
            .with_multicast_dns_mode(MulticastDnsMode::Disabled)
            .with_include_loopback_candidate(self.config.interface.is_loopback())
            .build();
        let ice_servers = self
            .config
            .ice_servers
            .iter()
            .map(|server| RTCIceServer {
                urls: vec![server.url.clone()],
                username: server.username.clone().unwrap_or_default(),
                credential: server.credential.clone().unwrap_or_default(),
            })
            .collect();
        let peer = PeerConnectionBuilder::new()
            .with_configuration(
                RTCConfigurationBuilder::new()
                    .with_ice_servers(ice_servers)
                    .build(),
            )
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .with_setting_engine(settings)
            .with_handler(handler)
            .with_udp_addrs(vec![SocketAddr::new(self.config.interface, port)])
            .build()
            .await
            .map_err(webrtc_error)?;
        Ok(Arc::new(peer))
    }
}

/// The offer's first `m=audio` section, up to the next `m=` line.
fn audio_section(sdp: &str) -> Option<&str> {
    let start = sdp.find("m=audio")?;
    let rest = &sdp[start..];
    let end = rest[1..].find("\nm=").map_or(rest.len(), |i| i + 1);
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ice_servers_become_link_headers() {
        let stun = IceServer {
            url: "stun:stun.example.net".to_owned(),
            username: None,
            credential: None,
        };
        assert_eq!(stun.link(), "<stun:stun.example.net>; rel=\"ice-server\"");
        let turn = IceServer {
            url: "turn:turn.example.net?transport=udp".to_owned(),
            username: Some("user".to_owned()),
            credential: Some("secret".to_owned()),
        };
        assert_eq!(
            turn.link(),
            "<turn:turn.example.net?transport=udp>; rel=\"ice-server\"; username=\"user\"; \
             credential=\"secret\"; credential-type=\"password\""
        );
    }

    #[test]
    fn the_audio_section_ends_at_the_next_media() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n\
                   m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n";
        let audio = audio_section(sdp).unwrap();
        assert!(audio.contains("opus/48000"));
        assert!(!audio.contains("application"));
        assert!(audio_section("v=0\r\nm=video 9 RTP/AVP 96\r\n").is_none());
    }
}
