//! A shard's state for each routing concern: users, channels, presence queries. Each is handled by
//! its concern's handler in `crate::route` and held in the shard's state.

use std::{collections::HashMap, sync::Arc};

use super::{
    channels::ChannelIndex,
    directory::Directory,
    local::{LocalChannels, LocalUsers},
};
use crate::ids::ConnId;

/// The users state of a shard.
#[derive(Default)]
pub struct Users {
    /// This shard's connections by user.
    pub local: LocalUsers,
    /// Directory entries (which shards hold a connection) of the users this shard owns.
    pub directory: Directory,
}

/// The channels state of a shard.
#[derive(Default)]
pub struct Channels {
    /// This shard's subscribers by channel.
    pub local: LocalChannels,
    /// Subscriber maps of the channels this shard owns.
    pub index: ChannelIndex,
    /// Members (and their `user_info`) of the Pusher presence channels this shard owns.
    pub pusher_members: super::members::Members,
}

/// The presence state of a shard: the by-users queries waiting for answers from other owner shards.
#[derive(Default)]
pub struct Presence {
    /// Queries waiting for other shards, by query id.
    pub pending: HashMap<u64, PendingPresence>,
    /// Next query id.
    pub next_query: u64,
}

/// A presence-by-users query waiting for answers from other owner shards.
pub struct PendingPresence {
    /// The asking connection.
    pub conn: ConnId,
    /// The request's id.
    pub id: Option<Arc<str>>,
    /// The users asked about, in order, with their answer so far.
    pub users: Vec<(Arc<str>, bool)>,
    /// Owner shards that have not answered yet.
    pub remaining: usize,
}
