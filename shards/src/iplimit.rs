//! Open connections per client address, counted across every shard (`limits.max_connections_per_ip`).
//!
//! The count of an address must be node-wide: SO_REUSEPORT hashes each 4-tuple to a shard, so one
//! client's connections land on every shard, and a per-shard count would let it hold `cap × shards`.
//! It is touched twice per connection (accept, close) and never per message, so a shared structure
//! costs nothing on the hot path. It is a fixed array of mutex-protected hash maps ("stripes"), an
//! address always mapping to the same stripe by its hash: with 64 stripes and a lock held for one hash
//! map operation, two cores accepting at once almost never meet on a lock. A lock-free map would save
//! nothing measurable at this rate and needs far more code; per-shard maps merged through the inboxes
//! would make admission asynchronous.
//!
//! An entry exists only while its address holds a connection: the last close removes it, so a flood
//! from many addresses leaves no memory behind. IPv6 clients are counted per /64 (the block one host or
//! one subscriber line is given, so rotating addresses inside it does not multiply the cap), and an
//! IPv4-mapped IPv6 address as its IPv4 address.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv6Addr},
    sync::Mutex,
};

/// Number of independently locked maps.
const STRIPES: usize = 64;

/// Connection counts by client address, shared by every shard of a node.
#[derive(Debug)]
pub struct PerIpCounts {
    /// Picks an address's stripe.
    hasher: ahash::RandomState,
    /// Counts by address; an address is in `stripes[hash % STRIPES]`, with a count of at least 1.
    stripes: Box<[Mutex<HashMap<IpAddr, u32>>]>,
}

impl Default for PerIpCounts {
    fn default() -> Self {
        PerIpCounts {
            hasher: ahash::RandomState::new(),
            stripes: (0..STRIPES).map(|_| Mutex::default()).collect(),
        }
    }
}

impl PerIpCounts {
    /// The key `ip` is counted under: IPv4 as is, IPv4-mapped IPv6 as IPv4, other IPv6 by its /64.
    pub fn key(ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(_) => ip,
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & (u128::MAX << 64))),
            },
        }
    }

    /// Counts one more connection from `ip` unless it already holds `max`; returns the key to
    /// [`release`](Self::release) when the connection ends, or `None` when it is over the cap.
    pub fn try_acquire(&self, ip: IpAddr, max: u32) -> Option<IpAddr> {
        let key = Self::key(ip);
        let mut map = self.stripe(key);
        let count = map.entry(key).or_insert(0);
        if *count >= max {
            if *count == 0 {
                map.remove(&key); // max == 0: nothing may be held
            }
            return None;
        }
        *count += 1;
        Some(key)
    }

    /// Counts a connection acquired under `key` as gone; the entry goes with its last connection.
    pub fn release(&self, key: IpAddr) {
        let mut map = self.stripe(key);
        if let Some(count) = map.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                map.remove(&key);
            }
        }
    }

    /// Connections counted for `ip`.
    pub fn count(&self, ip: IpAddr) -> u32 {
        let key = Self::key(ip);
        self.stripe(key).get(&key).copied().unwrap_or(0)
    }

    /// Addresses currently holding at least one connection.
    pub fn addresses(&self) -> usize {
        self.stripes.iter().map(|s| lock(s).len()).sum()
    }

    /// The locked stripe of `key`.
    fn stripe(&self, key: IpAddr) -> std::sync::MutexGuard<'_, HashMap<IpAddr, u32>> {
        let i = self.hasher.hash_one(key) as usize % STRIPES;
        lock(&self.stripes[i])
    }
}

/// Locks a stripe; a panic while holding it cannot leave a count half-updated, so poisoning is ignored.
fn lock(m: &Mutex<HashMap<IpAddr, u32>>) -> std::sync::MutexGuard<'_, HashMap<IpAddr, u32>> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_holds_per_address_and_entries_go_with_their_last_connection() {
        let counts = PerIpCounts::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let held: Vec<_> = (0..3).map(|_| counts.try_acquire(a, 3).unwrap()).collect();
        assert_eq!(counts.try_acquire(a, 3), None);
        assert!(counts.try_acquire(b, 3).is_some());
        assert_eq!(counts.count(a), 3);
        counts.release(held[0]);
        assert!(counts.try_acquire(a, 3).is_some());
        for key in held.iter().skip(1).chain([&a, &b]) {
            counts.release(*key);
        }
        assert_eq!(counts.count(a), 0);
        assert_eq!(counts.addresses(), 0);
        assert_eq!(counts.try_acquire(a, 0), None);
        assert_eq!(counts.addresses(), 0);
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        let counts = PerIpCounts::default();
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let other: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let next_block: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(counts.try_acquire(one, 1).is_some());
        assert_eq!(counts.try_acquire(other, 1), None);
        assert!(counts.try_acquire(next_block, 1).is_some());
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(PerIpCounts::key(mapped), v4);
        assert!(counts.try_acquire(v4, 1).is_some());
        assert_eq!(counts.try_acquire(mapped, 1), None);
    }
}
