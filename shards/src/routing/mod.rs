//! Who holds what: the partitioned routing tables.
//!
//! A user's directory entry (which shards hold its connections, and how many) lives only on its owner
//! shard `owner_of(user) % N`; a channel's subscriber map (which shards have subscribers, which users)
//! only on `owner_of(channel) % N`. Each shard also keeps local tables of its own connections by user
//! and by channel. A send is at most two hops (sender → owner → holder), each of which checks its local
//! fast path first; no table is replicated to every shard.

pub mod channels;
pub mod directory;
pub mod local;
pub mod members;
pub mod state;

/// Per-shard connection counts, kept small and inline: most users and channels live on few shards.
pub type ShardCounts = smallvec::SmallVec<[(u16, u32); 2]>;

/// Adds one to `shard`'s count.
pub(crate) fn count_up(counts: &mut ShardCounts, shard: usize) {
    match counts.iter_mut().find(|(s, _)| *s as usize == shard) {
        Some((_, n)) => *n += 1,
        None => counts.push((shard as u16, 1)),
    }
}

/// Subtracts one from `shard`'s count; drops the shard at zero. Returns false if it had none.
pub(crate) fn count_down(counts: &mut ShardCounts, shard: usize) -> bool {
    let Some(pos) = counts.iter().position(|(s, _)| *s as usize == shard) else {
        return false;
    };
    counts[pos].1 -= 1;
    if counts[pos].1 == 0 {
        counts.swap_remove(pos);
    }
    true
}

/// Total connections over all shards.
pub(crate) fn total(counts: &ShardCounts) -> u64 {
    counts.iter().map(|(_, n)| *n as u64).sum()
}
