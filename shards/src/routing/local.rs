//! A shard's own connections by user and by channel: the holder side of routing.

use std::{collections::HashMap, sync::Arc};

use indexmap::IndexSet;
use smallvec::SmallVec;

use crate::ids::ConnId;

/// Local connections of each user.
#[derive(Default)]
pub struct LocalUsers {
    /// User → its connections on this shard (most users have one).
    map: HashMap<Arc<str>, SmallVec<[ConnId; 1]>, ahash::RandomState>,
}

impl LocalUsers {
    /// Adds a connection of `user`.
    pub fn add(&mut self, user: Arc<str>, conn: ConnId) {
        self.map.entry(user).or_default().push(conn);
    }

    /// Removes a connection of `user`.
    pub fn remove(&mut self, user: &str, conn: ConnId) {
        if let Some(conns) = self.map.get_mut(user) {
            conns.retain(|c| *c != conn);
            if conns.is_empty() {
                self.map.remove(user);
            }
        }
    }

    /// The local connections of `user`.
    pub fn get(&self, user: &str) -> &[ConnId] {
        self.map.get(user).map_or(&[], |c| c.as_slice())
    }

    /// Users with at least one local connection.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no user is connected here.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Local subscribers of each channel.
#[derive(Default)]
pub struct LocalChannels {
    /// Channel → subscribed connections on this shard; an IndexSet for O(1) removal and fast iteration.
    map: HashMap<Arc<str>, IndexSet<ConnId, ahash::RandomState>, ahash::RandomState>,
}

impl LocalChannels {
    /// Subscribes `conn`; false if it already was.
    pub fn add(&mut self, channel: Arc<str>, conn: ConnId) -> bool {
        self.map.entry(channel).or_default().insert(conn)
    }

    /// Unsubscribes `conn`; false if it was not subscribed.
    pub fn remove(&mut self, channel: &str, conn: ConnId) -> bool {
        let Some(set) = self.map.get_mut(channel) else {
            return false;
        };
        let removed = set.swap_remove(&conn);
        if set.is_empty() {
            self.map.remove(channel);
        }
        removed
    }

    /// True when `conn` is subscribed to `channel`.
    pub fn contains(&self, channel: &str, conn: ConnId) -> bool {
        self.map.get(channel).is_some_and(|s| s.contains(&conn))
    }

    /// Local subscribers of `channel`.
    pub fn subscribers(&self, channel: &str) -> impl Iterator<Item = ConnId> + '_ {
        self.map
            .get(channel)
            .into_iter()
            .flat_map(|s| s.iter().copied())
    }

    /// Channels with a local subscriber.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when nobody here subscribes to anything.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(i: u32) -> ConnId {
        ConnId {
            index: i,
            generation: 0,
        }
    }

    #[test]
    fn users_and_channels_track_connections() {
        let mut u = LocalUsers::default();
        u.add("bob".into(), c(1));
        u.add("bob".into(), c(2));
        assert_eq!(u.get("bob"), &[c(1), c(2)]);
        u.remove("bob", c(1));
        assert_eq!(u.get("bob"), &[c(2)]);
        u.remove("bob", c(2));
        assert!(u.is_empty());

        let mut ch = LocalChannels::default();
        assert!(ch.add("room".into(), c(1)));
        assert!(!ch.add("room".into(), c(1)));
        assert!(ch.add("room".into(), c(2)));
        assert!(ch.contains("room", c(2)));
        assert_eq!(ch.subscribers("room").count(), 2);
        assert!(ch.remove("room", c(1)));
        assert!(!ch.remove("room", c(1)));
        assert!(ch.remove("room", c(2)));
        assert!(ch.is_empty());
    }
}
