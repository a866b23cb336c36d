//! The channel index of an owner shard: channel → subscribing shards (with counts) and users.
//!
//! The index also reports the transitions the cluster cares about (a channel's first and last
//! subscriber on this node, a user's first and last subscribed connection) and, in cluster mode, holds
//! the subscribe acks of a channel until the node listens to its Redis topic.

use std::{collections::HashMap, sync::Arc};

use super::{ShardCounts, count_down, count_up, total};
use crate::{history::ResumeRequest, messages::reply::ReplyTo};

/// Subscribers of one channel, as the owner sees them.
#[derive(Default)]
pub struct ChannelEntry {
    /// Subscribed connections per shard: where a publish must go.
    pub shards: ShardCounts,
    /// Subscribed connections per user: channel presence.
    users: HashMap<Arc<str>, u32, ahash::RandomState>,
    /// Subscribe acks and channel resumes held until the cluster subscription is confirmed (`None`:
    /// nothing is waiting).
    waiting: Option<Held>,
}

/// What waits for a channel's cluster subscription.
#[derive(Default)]
struct Held {
    acks: Vec<ReplyTo>,
    resumes: Vec<ResumeRequest>,
}

/// What a subscribe changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Joined {
    /// The channel had no subscriber before.
    pub first: bool,
    /// The user had no subscribed connection before.
    pub user_joined: bool,
}

/// What an unsubscribe changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Left {
    /// The channel has no subscriber left (its entry is gone).
    pub last: bool,
    /// The user has no subscribed connection left.
    pub user_left: bool,
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

    /// Distinct subscribed users.
    pub fn users(&self) -> impl Iterator<Item = &Arc<str>> {
        self.users.keys()
    }

    /// True while subscribe acks wait for the cluster subscription.
    pub fn is_waiting(&self) -> bool {
        self.waiting.is_some()
    }

    /// Holds `ack` until [`ChannelEntry::release`]; starts waiting if nothing waited.
    pub fn hold(&mut self, ack: ReplyTo) {
        self.waiting.get_or_insert_default().acks.push(ack);
    }

    /// Holds a subscribe with `since` (its stream is read once the node listens to the channel).
    pub fn hold_resume(&mut self, req: ResumeRequest) {
        self.waiting.get_or_insert_default().resumes.push(req);
    }

    /// Starts waiting with no ack held (the first subscriber's ack may come later).
    pub fn wait(&mut self) {
        self.waiting.get_or_insert_default();
    }

    /// The held acks and resumes; the entry stops waiting.
    pub fn release(&mut self) -> (Vec<ReplyTo>, Vec<ResumeRequest>) {
        let held = self.waiting.take().unwrap_or_default();
        (held.acks, held.resumes)
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
    pub fn subscribe(&mut self, channel: Arc<str>, user: Arc<str>, shard: usize) -> Joined {
        let entry = self.channels.entry(channel).or_default();
        let first = entry.shards.is_empty();
        count_up(&mut entry.shards, shard);
        let n = entry.users.entry(user).or_default();
        *n += 1;
        Joined {
            first,
            user_joined: *n == 1,
        }
    }

    /// One subscribed connection of `user` on `shard` left `channel`. When the channel loses its last
    /// subscriber, acks still held are returned in `released` (they are answered, not lost); resumes
    /// still held are dropped (their connections left the channel).
    pub fn unsubscribe(
        &mut self,
        channel: &str,
        user: &str,
        shard: usize,
        released: &mut Vec<ReplyTo>,
    ) -> Left {
        let Some(entry) = self.channels.get_mut(channel) else {
            return Left::default();
        };
        if !count_down(&mut entry.shards, shard) {
            return Left::default();
        }
        let mut user_left = false;
        if let Some(n) = entry.users.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                entry.users.remove(user);
                user_left = true;
            }
        }
        let last = entry.shards.is_empty();
        if last && let Some(entry) = self.channels.remove(channel) {
            released.extend(entry.waiting.unwrap_or_default().acks);
        }
        Left { last, user_left }
    }

    /// The subscribers of `channel`.
    pub fn get(&self, channel: &str) -> Option<&ChannelEntry> {
        self.channels.get(channel)
    }

    /// The subscribers of `channel`, to change its held acks.
    pub fn get_mut(&mut self, channel: &str) -> Option<&mut ChannelEntry> {
        self.channels.get_mut(channel)
    }

    /// Every channel with its entry.
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &ChannelEntry)> {
        self.channels.iter()
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
        let mut released = Vec::new();
        let j = idx.subscribe("room".into(), "bob".into(), 0);
        assert_eq!(
            j,
            Joined {
                first: true,
                user_joined: true
            }
        );
        let j = idx.subscribe("room".into(), "bob".into(), 1);
        assert_eq!(
            j,
            Joined {
                first: false,
                user_joined: false
            }
        );
        assert!(idx.subscribe("room".into(), "amy".into(), 1).user_joined);
        let e = idx.get("room").unwrap();
        assert_eq!(e.connections(), 3);
        assert_eq!(e.users_sorted(), vec!["amy", "bob"]);
        assert_eq!(
            idx.unsubscribe("room", "bob", 1, &mut released),
            Left::default()
        );
        assert_eq!(idx.get("room").unwrap().users_sorted(), vec!["amy", "bob"]);
        let l = idx.unsubscribe("room", "bob", 0, &mut released);
        assert!(l.user_left && !l.last);
        assert_eq!(idx.get("room").unwrap().users_sorted(), vec!["amy"]);
        // A shard that holds no subscriber cannot unsubscribe anyone.
        assert_eq!(
            idx.unsubscribe("room", "amy", 0, &mut released),
            Left::default()
        );
        assert_eq!(idx.get("room").unwrap().connections(), 1);
        let l = idx.unsubscribe("room", "amy", 1, &mut released);
        assert!(l.user_left && l.last);
        assert!(idx.is_empty());
        assert!(released.is_empty());
    }

    #[test]
    fn held_acks_are_released_once_even_when_the_channel_empties() {
        let ack = |conn| ReplyTo {
            shard: 0,
            conn: crate::ids::ConnId {
                index: conn,
                generation: 0,
            },
            id: None,
        };
        let mut idx = ChannelIndex::default();
        idx.subscribe("room".into(), "amy".into(), 0);
        let e = idx.get_mut("room").unwrap();
        e.hold(ack(1));
        e.hold(ack(2));
        assert!(e.is_waiting());
        assert_eq!(e.release().0.len(), 2);
        assert!(!e.is_waiting() && e.release().0.is_empty());
        idx.get_mut("room").unwrap().hold(ack(3));
        let mut released = Vec::new();
        assert!(idx.unsubscribe("room", "amy", 0, &mut released).last);
        assert_eq!(released.len(), 1);
    }
}
