//! The Pusher part of a connection's record: what a Pusher socket holds beyond a v1 connection's.

use std::sync::Arc;

use bytes::Bytes;

use super::apps::App;
use crate::conn::ratelimit::TokenBucket;

/// `client-*` events per second one socket may send (Pusher's own limit); 4301 beyond.
pub const CLIENT_EVENTS_PER_SEC: u32 = 10;

/// The Pusher part of a connection's record (boxed: a v1 connection pays one pointer for it).
#[derive(Debug)]
pub struct PusherConn {
    /// The app, shared by its connections.
    pub app: Arc<App>,
    /// The app's index in the node's registry (for its connection count).
    pub index: u16,
    /// The app's anonymous subscriber name, under which this socket's subscriptions are counted.
    pub anonymous: Arc<str>,
    /// Presence channels (internal names) and the member name each is counted under.
    pub presence: Vec<(Arc<str>, Arc<str>)>,
    /// The signed-in user (`pusher:signin`), app-scoped; `None` until then.
    pub user: Option<Arc<str>>,
    /// `pusher:signin_success`, held until the user's presence is confirmed in the cluster (so a
    /// sendToUser made anywhere right after it reaches this socket).
    pub signin: Option<Box<Bytes>>,
    /// `client-*` events this socket may send (10 per second by default).
    pub client_events: TokenBucket,
}

impl PusherConn {
    /// The name `channel`'s subscription of this socket is counted under.
    pub fn member_of(&self, channel: &Arc<str>) -> Arc<str> {
        self.presence
            .iter()
            .find(|(c, _)| c == channel)
            .map_or_else(|| self.anonymous.clone(), |(_, m)| m.clone())
    }
}
