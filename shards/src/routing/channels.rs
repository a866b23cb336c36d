//! The channel index of an owner shard: channel → subscribing shards (with counts) and users.

use std::{collections::HashMap, sync::Arc};

use super::{ShardCounts, count_down, count_up, total};

/// Subscribers of one channel, as the owner sees them.
#[derive(Default)]
pub struct ChannelEntry {
    /// Subscribed connections per shard: where a publish must go.
    pub shards: ShardCounts,
    /// Subscribed connections per user: channel presence.
    users: HashMap<Arc<str>, u32, ahash::RandomState>,
}

impl ChannelEntry {
    /// Subscribed connections over all shards.
    pub fn connections(&self) -> u64 {
        total(&self.shards)
    }

    /// Distinct subscribed users, sorted.
    pub fn users_sorted(&self) -> Vec<&str> {
        let mut users: Vec<&str> = self.users.keys().map(|u| &**u).collect();
        users.sort_unstable();
        users
    }
}

/// Channel entries of the channels this shard owns.
#[derive(Default)]
pub struct ChannelIndex {
    /// Channel → its subscribers. A channel without subscribers has no entry.
    channels: HashMap<Arc<str>, ChannelEntry, ahash::RandomState>,
}

impl ChannelIndex {
    /// One more connection of `user` on `shard` subscribed to `channel`.
    pub fn subscribe(&mut self, channel: Arc<str>, user: Arc<str>, shard: usize) {
        let entry = self.channels.entry(channel).or_default();
        count_up(&mut entry.shards, shard);
        *entry.users.entry(user).or_default() += 1;
    }

    /// One subscribed connection of `user` on `shard` left `channel`.
    pub fn unsubscribe(&mut self, channel: &str, user: &str, shard: usize) {
        let Some(entry) = self.channels.get_mut(channel) else {
            return;
        };
        if !count_down(&mut entry.shards, shard) {
            return;
        }
        if let Some(n) = entry.users.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                entry.users.remove(user);
            }
        }
        if entry.shards.is_empty() {
            self.channels.remove(channel);
        }
    }

    /// The subscribers of `channel`.
    pub fn get(&self, channel: &str) -> Option<&ChannelEntry> {
        self.channels.get(channel)
    }

    /// Channels with at least one subscriber.
    pub fn len(&self) -> usize {
        self.channels.len()
    }

    /// True when no channel has a subscriber.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_are_counted_per_shard_and_user() {
        let mut idx = ChannelIndex::default();
        idx.subscribe("room".into(), "bob".into(), 0);
        idx.subscribe("room".into(), "bob".into(), 1);
        idx.subscribe("room".into(), "amy".into(), 1);
        let e = idx.get("room").unwrap();
        assert_eq!(e.connections(), 3);
        assert_eq!(e.users_sorted(), vec!["amy", "bob"]);
        idx.unsubscribe("room", "bob", 1);
        assert_eq!(idx.get("room").unwrap().users_sorted(), vec!["amy", "bob"]);
        idx.unsubscribe("room", "bob", 0);
        assert_eq!(idx.get("room").unwrap().users_sorted(), vec!["amy"]);
        // A shard that holds no subscriber cannot unsubscribe anyone.
        idx.unsubscribe("room", "amy", 0);
        assert_eq!(idx.get("room").unwrap().connections(), 1);
        idx.unsubscribe("room", "amy", 1);
        assert!(idx.is_empty());
    }
}
