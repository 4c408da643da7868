//! What a WHIP peer tells its session: ICE gathering done, connection state,
//! the client's audio track and data channels.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use webrtc::data_channel::DataChannel;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    PeerConnectionEventHandler, RTCIceGatheringState, RTCPeerConnectionState,
};

/// Tracks and channels a peer may open; more are ignored.
const OPENED_CAPACITY: usize = 4;

/// The peer's side: forwards its callbacks.
pub struct PeerEvents {
    gathering: watch::Sender<RTCIceGatheringState>,
    state: watch::Sender<RTCPeerConnectionState>,
    tracks: mpsc::Sender<Arc<dyn TrackRemote>>,
    channels: mpsc::Sender<Arc<dyn DataChannel>>,
}

/// The session's side.
pub struct Signals {
    pub gathering: watch::Receiver<RTCIceGatheringState>,
    pub state: watch::Receiver<RTCPeerConnectionState>,
    pub tracks: mpsc::Receiver<Arc<dyn TrackRemote>>,
    pub channels: mpsc::Receiver<Arc<dyn DataChannel>>,
}

pub fn signals() -> (Arc<PeerEvents>, Signals) {
    let (gathering, gathering_rx) = watch::channel(RTCIceGatheringState::New);
    let (state, state_rx) = watch::channel(RTCPeerConnectionState::New);
    let (tracks, tracks_rx) = mpsc::channel(OPENED_CAPACITY);
    let (channels, channels_rx) = mpsc::channel(OPENED_CAPACITY);
    let events = PeerEvents {
        gathering,
        state,
        tracks,
        channels,
    };
    let signals = Signals {
        gathering: gathering_rx,
        state: state_rx,
        tracks: tracks_rx,
        channels: channels_rx,
    };
    (Arc::new(events), signals)
}

impl Signals {
    /// Resolves once ICE gathering is complete.
    pub fn gathered(&self) -> impl Future<Output = ()> + use<> {
        let mut gathering = self.gathering.clone();
        async move {
            let _ = gathering
                .wait_for(|state| *state == RTCIceGatheringState::Complete)
                .await;
        }
    }
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for PeerEvents {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        let _ = self.gathering.send(state);
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.state.send(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.tracks.try_send(track);
    }

    async fn on_data_channel(&self, channel: Arc<dyn DataChannel>) {
        let _ = self.channels.try_send(channel);
    }
}
