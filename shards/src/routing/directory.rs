//! The user directory of an owner shard: user → shards holding its connections, with counts.

use std::{collections::HashMap, sync::Arc};

use super::{ShardCounts, count_down, count_up, total};

/// Directory entries of the users this shard owns.
#[derive(Default)]
pub struct Directory {
    /// User → connection count per holding shard. A user with no connection has no entry.
    users: HashMap<Arc<str>, ShardCounts, ahash::RandomState>,
}

impl Directory {
    /// One more connection of `user` on `shard`.
    pub fn add(&mut self, user: Arc<str>, shard: usize) {
        count_up(self.users.entry(user).or_default(), shard);
    }

    /// One connection of `user` on `shard` is gone.
    pub fn remove(&mut self, user: &str, shard: usize) {
        if let Some(counts) = self.users.get_mut(user) {
            count_down(counts, shard);
            if counts.is_empty() {
                self.users.remove(user);
            }
        }
    }

    /// Shards holding `user`, with their counts.
    pub fn holders(&self, user: &str) -> Option<&ShardCounts> {
        self.users.get(user)
    }

    /// Connections of `user` over all shards.
    pub fn connections(&self, user: &str) -> u64 {
        self.users.get(user).map_or(0, total)
    }

    /// True when `user` has at least one connection.
    pub fn is_online(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// Every user with an entry and its connection count over all shards.
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, u64)> + '_ {
        self.users.iter().map(|(u, counts)| (u, total(counts)))
    }

    /// Users with an entry.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// True when no user has an entry.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_connections() {
        let mut d = Directory::default();
        d.add("bob".into(), 0);
        d.add("bob".into(), 1);
        d.add("bob".into(), 1);
        assert_eq!(d.connections("bob"), 3);
        assert_eq!(d.holders("bob").unwrap().len(), 2);
        d.remove("bob", 1);
        d.remove("bob", 0);
        assert_eq!(d.holders("bob").unwrap().as_slice(), &[(1, 1)]);
        d.remove("bob", 1);
        assert!(!d.is_online("bob"));
        assert!(d.is_empty());
        d.add("amy".into(), 0);
        d.add("amy".into(), 1);
        let listed: Vec<_> = d.iter().map(|(u, n)| (u.to_string(), n)).collect();
        assert_eq!(listed, vec![("amy".to_string(), 2)]);
        d.remove("amy", 0);
        d.remove("amy", 1);
        // Removing what is not there changes nothing.
        d.remove("bob", 1);
        assert_eq!(d.connections("bob"), 0);
    }
}
