//! Following a running session from elsewhere: every event a session sends
//! its own client is also published to whoever watches it, so any client of
//! the session's owner can follow it, whatever transport carries the audio.

use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::{broadcast, mpsc};

use super::event::Event;

/// Events a slow watcher may fall behind by before it skips some.
const WATCH_CAPACITY: usize = 1024;

/// The running sessions' event feeds, by session id.
#[derive(Default)]
pub struct Watchers {
    sessions: DashMap<String, Feed>,
}

struct Feed {
    user_id: String,
    ready: Event,
    events: broadcast::Sender<Event>,
}

impl Watchers {
    /// The session's `ready` event and its events from now on, when
    /// `user_id` owns a running session with that id.
    pub fn watch(
        &self,
        session_id: &str,
        user_id: &str,
    ) -> Option<(Event, broadcast::Receiver<Event>)> {
        let feed = self.sessions.get(session_id)?;
        (feed.user_id == user_id).then(|| (feed.ready.clone(), feed.events.subscribe()))
    }

    /// Whether a session with this id runs on this node.
    pub fn runs(&self, session_id: &str) -> bool {
        self.sessions.contains_key(session_id)
    }

    /// Opens the feed of a starting session; it closes when the guard drops.
    pub(super) fn open(
        self: &Arc<Self>,
        session_id: &str,
        user_id: &str,
        ready: Event,
    ) -> (FeedGuard, broadcast::Sender<Event>) {
        let (events, _) = broadcast::channel(WATCH_CAPACITY);
        self.sessions.insert(
            session_id.to_owned(),
            Feed {
                user_id: user_id.to_owned(),
                ready,
                events: events.clone(),
            },
        );
        let guard = FeedGuard {
            watchers: Arc::clone(self),
            session_id: session_id.to_owned(),
        };
        (guard, events)
    }
}

/// Removes a session's feed when the session is over; watchers then see
/// the feed close after the last event.
pub struct FeedGuard {
    watchers: Arc<Watchers>,
    session_id: String,
}

impl Drop for FeedGuard {
    fn drop(&mut self) {
        self.watchers.sessions.remove(&self.session_id);
    }
}

/// Where a session's events go: its own client, which may slow the session
/// down, and its watchers, who never do.
pub struct EventSink<M> {
    client: mpsc::Sender<M>,
    watchers: broadcast::Sender<Event>,
}

impl<M> Clone for EventSink<M> {
    fn clone(&self) -> Self {
        Self {
            client: self.client.clone(),
            watchers: self.watchers.clone(),
        }
    }
}

impl<M: From<Event>> EventSink<M> {
    pub(super) fn new(client: mpsc::Sender<M>, watchers: broadcast::Sender<Event>) -> Self {
        Self { client, watchers }
    }

    /// Sends to both; `false` once the client is gone.
    pub async fn send(&self, event: Event) -> bool {
        self.publish(event.clone());
        self.client.send(M::from(event)).await.is_ok()
    }

    /// [`Self::send`] from a thread outside the runtime.
    pub fn blocking_send(&self, event: Event) -> bool {
        self.publish(event.clone());
        self.client.blocking_send(M::from(event)).is_ok()
    }

    /// Sends to the watchers only.
    pub fn publish(&self, event: Event) {
        // No watcher is not an error.
        let _ = self.watchers.send(event);
    }
}
