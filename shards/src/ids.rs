//! Compact identifiers: connections, and the hash that gives every user and channel its owner shard.

/// A connection within its shard: slab index plus a generation, so a stale id (a connection that
/// closed and whose slot was reused) never reaches the new occupant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConnId {
    /// Slot in the shard's connection table.
    pub index: u32,
    /// Generation of the slot when the connection was created.
    pub generation: u32,
}

/// The fixed hasher used to place users and channels on shards. Fixed seeds: every shard of the
/// process must agree on the owner; the maps themselves use per-map random seeds.
fn placement_hasher() -> ahash::RandomState {
    ahash::RandomState::with_seeds(
        0x9e37_79b9_7f4a_7c15,
        0xbf58_476d_1ce4_e5b9,
        0x94d0_49bb_1331_11eb,
        0x2545_f491_4f6c_dd1d,
    )
}

/// The shard that owns `name`'s directory entry (users) or subscriber map (channels).
pub fn owner_of(name: &str, shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    (placement_hasher().hash_one(name) % shards as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_stable_and_spread() {
        assert_eq!(owner_of("alice", 4), owner_of("alice", 4));
        assert_eq!(owner_of("alice", 1), 0);
        let mut counts = [0usize; 4];
        for i in 0..4000 {
            counts[owner_of(&format!("user{i}"), 4)] += 1;
        }
        for c in counts {
            assert!((800..1200).contains(&c), "uneven spread {counts:?}");
        }
    }
}
