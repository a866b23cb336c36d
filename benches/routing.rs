//! Routing benches: the tables every send, publish and (un)subscribe touches, and the fan-out at the end.
//!
//! The routing tables are keyed by shared `Arc<str>` names in ahash maps, with small inline shard counts
//! and an `IndexSet` per local channel; the fan-out encodes a message once and queues `Bytes` handles.
//! Each group keeps a plain std baseline doing the same work (`HashMap<String, Vec<_>>`, encoding per
//! recipient) so a regression, or a design choice that stopped paying, shows as a ratio.

use std::{collections::HashMap, hint::black_box, sync::Arc};

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use shards::{
    conn::outq::OutQueue,
    ids::ConnId,
    protocol::encode,
    routing::{channels::ChannelIndex, directory::Directory, local::LocalChannels},
};

/// Users in the directory groups.
const USERS: usize = 100_000;
/// Subscribers in the channel groups, and recipients of the fan-out.
const SUBSCRIBERS: usize = 10_000;
/// Shards the connections are spread over.
const SHARDS: usize = 4;

/// `n` names like `user-42`, shared as the gateway shares them.
fn names(prefix: &str, n: usize) -> Vec<Arc<str>> {
    (0..n).map(|i| format!("{prefix}-{i}").into()).collect()
}

/// A fixed permutation of `0..n` (connections leave in any order, not the order they came).
fn shuffled(n: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
    v
}

fn conn(i: usize) -> ConnId {
    ConnId {
        index: i as u32,
        generation: 0,
    }
}

/// The directory with a std map instead: owned `String` keys, a `Vec` of shard counts.
#[derive(Default)]
struct NaiveDirectory(HashMap<String, Vec<(u16, u32)>>);

impl NaiveDirectory {
    fn add(&mut self, user: &str, shard: usize) {
        let counts = self.0.entry(user.to_string()).or_default();
        match counts.iter_mut().find(|(s, _)| *s as usize == shard) {
            Some((_, n)) => *n += 1,
            None => counts.push((shard as u16, 1)),
        }
    }

    fn remove(&mut self, user: &str, shard: usize) {
        if let Some(counts) = self.0.get_mut(user) {
            if let Some(pos) = counts.iter().position(|(s, _)| *s as usize == shard) {
                counts[pos].1 -= 1;
                if counts[pos].1 == 0 {
                    counts.swap_remove(pos);
                }
            }
            if counts.is_empty() {
                self.0.remove(user);
            }
        }
    }
}

fn directory(c: &mut Criterion) {
    let users = names("user", USERS);
    let order = shuffled(USERS);
    let filled = || {
        let mut d = Directory::default();
        for (i, u) in users.iter().enumerate() {
            d.add(u.clone(), i % SHARDS);
        }
        d
    };
    let naive_filled = || {
        let mut d = NaiveDirectory::default();
        for (i, u) in users.iter().enumerate() {
            d.add(u, i % SHARDS);
        }
        d
    };
    let mut g = c.benchmark_group("directory: 100k users, one connection each");
    g.throughput(Throughput::Elements(USERS as u64));
    g.bench_function("Directory add 100k", |b| {
        b.iter_batched(
            Directory::default,
            |mut d| {
                for (i, u) in users.iter().enumerate() {
                    d.add(u.clone(), i % SHARDS);
                }
                d
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("baseline HashMap<String,Vec> add 100k", |b| {
        b.iter_batched(
            NaiveDirectory::default,
            |mut d| {
                for (i, u) in users.iter().enumerate() {
                    d.add(u, i % SHARDS);
                }
                d
            },
            BatchSize::LargeInput,
        )
    });
    let d = filled();
    g.bench_function("Directory lookup 100k", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for &i in &order {
                n += d.holders(&users[i]).map_or(0, |h| h.len());
            }
            black_box(n)
        })
    });
    let naive = naive_filled();
    g.bench_function("baseline HashMap<String,Vec> lookup 100k", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for &i in &order {
                n += naive.0.get(&*users[i]).map_or(0, |h| h.len());
            }
            black_box(n)
        })
    });
    g.bench_function("Directory remove 100k", |b| {
        b.iter_batched(
            filled,
            |mut d| {
                for &i in &order {
                    d.remove(&users[i], i % SHARDS);
                }
                assert!(d.is_empty());
                d
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("baseline HashMap<String,Vec> remove 100k", |b| {
        b.iter_batched(
            naive_filled,
            |mut d| {
                for &i in &order {
                    d.remove(&users[i], i % SHARDS);
                }
                assert!(d.0.is_empty());
                d
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// The channel index with std maps: owned `String` keys, shard counts in a `Vec`, users in a map.
#[derive(Default)]
struct NaiveChannels(HashMap<String, NaiveEntry>);

/// One channel of [`NaiveChannels`].
#[derive(Default)]
struct NaiveEntry {
    /// Subscribed connections per shard.
    shards: Vec<(u16, u32)>,
    /// Subscribed connections per user.
    users: HashMap<String, u32>,
}

impl NaiveChannels {
    fn subscribe(&mut self, channel: &str, user: &str, shard: usize) {
        let NaiveEntry { shards, users } = self.0.entry(channel.to_string()).or_default();
        match shards.iter_mut().find(|(s, _)| *s as usize == shard) {
            Some((_, n)) => *n += 1,
            None => shards.push((shard as u16, 1)),
        }
        *users.entry(user.to_string()).or_default() += 1;
    }

    fn unsubscribe(&mut self, channel: &str, user: &str, shard: usize) {
        let Some(NaiveEntry { shards, users }) = self.0.get_mut(channel) else {
            return;
        };
        let Some(pos) = shards.iter().position(|(s, _)| *s as usize == shard) else {
            return;
        };
        shards[pos].1 -= 1;
        if shards[pos].1 == 0 {
            shards.swap_remove(pos);
        }
        if let Some(n) = users.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                users.remove(user);
            }
        }
        if shards.is_empty() {
            self.0.remove(channel);
        }
    }
}

fn channel_index(c: &mut Criterion) {
    let users = names("user", SUBSCRIBERS);
    let channel: Arc<str> = "room:1".into();
    let order = shuffled(SUBSCRIBERS);
    let filled = || {
        let mut idx = ChannelIndex::default();
        for (i, u) in users.iter().enumerate() {
            idx.subscribe(channel.clone(), u.clone(), i % SHARDS);
        }
        idx
    };
    let naive_filled = || {
        let mut idx = NaiveChannels::default();
        for (i, u) in users.iter().enumerate() {
            idx.subscribe(&channel, u, i % SHARDS);
        }
        idx
    };
    let mut g = c.benchmark_group("channel index: 10k users on 4 shards, one channel");
    g.throughput(Throughput::Elements(SUBSCRIBERS as u64));
    g.bench_function("ChannelIndex subscribe 10k", |b| {
        b.iter_batched(
            ChannelIndex::default,
            |mut idx| {
                for (i, u) in users.iter().enumerate() {
                    idx.subscribe(channel.clone(), u.clone(), i % SHARDS);
                }
                idx
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("baseline HashMap<String,_> subscribe 10k", |b| {
        b.iter_batched(
            NaiveChannels::default,
            |mut idx| {
                for (i, u) in users.iter().enumerate() {
                    idx.subscribe(&channel, u, i % SHARDS);
                }
                idx
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("ChannelIndex unsubscribe 10k", |b| {
        b.iter_batched(
            filled,
            |mut idx| {
                let mut released = Vec::new();
                for &i in &order {
                    idx.unsubscribe(&channel, &users[i], i % SHARDS, &mut released);
                }
                assert!(idx.is_empty() && released.is_empty());
                idx
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("baseline HashMap<String,_> unsubscribe 10k", |b| {
        b.iter_batched(
            naive_filled,
            |mut idx| {
                for &i in &order {
                    idx.unsubscribe(&channel, &users[i], i % SHARDS);
                }
                assert!(idx.0.is_empty());
                idx
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// Local subscribers with a std map of `Vec`s: a duplicate check on add, a linear search on remove.
#[derive(Default)]
struct NaiveLocal(HashMap<String, Vec<ConnId>>);

impl NaiveLocal {
    fn add(&mut self, channel: &str, c: ConnId) -> bool {
        let v = self.0.entry(channel.to_string()).or_default();
        if v.contains(&c) {
            return false;
        }
        v.push(c);
        true
    }

    fn remove(&mut self, channel: &str, c: ConnId) -> bool {
        let Some(v) = self.0.get_mut(channel) else {
            return false;
        };
        let Some(pos) = v.iter().position(|x| *x == c) else {
            return false;
        };
        v.swap_remove(pos);
        if v.is_empty() {
            self.0.remove(channel);
        }
        true
    }
}

fn local_channels(c: &mut Criterion) {
    let channel: Arc<str> = "room:1".into();
    let order = shuffled(SUBSCRIBERS);
    let filled = || {
        let mut ch = LocalChannels::default();
        for i in 0..SUBSCRIBERS {
            ch.add(channel.clone(), conn(i));
        }
        ch
    };
    let naive_filled = || {
        let mut ch = NaiveLocal::default();
        for i in 0..SUBSCRIBERS {
            ch.add(&channel, conn(i));
        }
        ch
    };
    let mut g = c.benchmark_group("local channels: one channel, 10k subscribers");
    g.throughput(Throughput::Elements(SUBSCRIBERS as u64));
    g.bench_function("LocalChannels add 10k", |b| {
        b.iter_batched(
            LocalChannels::default,
            |mut ch| {
                for i in 0..SUBSCRIBERS {
                    assert!(ch.add(channel.clone(), conn(i)));
                }
                ch
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("baseline HashMap<String,Vec> add 10k", |b| {
        b.iter_batched(
            NaiveLocal::default,
            |mut ch| {
                for i in 0..SUBSCRIBERS {
                    assert!(ch.add(&channel, conn(i)));
                }
                ch
            },
            BatchSize::LargeInput,
        )
    });
    let ch = filled();
    g.bench_function("LocalChannels iterate 10k", |b| {
        b.iter(|| {
            black_box(
                ch.subscribers(&channel)
                    .map(|c| c.index as u64)
                    .sum::<u64>(),
            )
        })
    });
    let naive = naive_filled();
    g.bench_function("baseline HashMap<String,Vec> iterate 10k", |b| {
        b.iter(|| {
            let v = naive.0.get(&*channel).map_or(&[][..], |v| v.as_slice());
            black_box(v.iter().map(|c| c.index as u64).sum::<u64>())
        })
    });
    g.bench_function("LocalChannels remove 10k", |b| {
        b.iter_batched(
            filled,
            |mut ch| {
                for &i in &order {
                    assert!(ch.remove(&channel, conn(i)));
                }
                ch
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("baseline HashMap<String,Vec> remove 10k", |b| {
        b.iter_batched(
            naive_filled,
            |mut ch| {
                for &i in &order {
                    assert!(ch.remove(&channel, conn(i)));
                }
                ch
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn fan_out(c: &mut Criterion) {
    for (label, mut data) in [
        ("30 B", br#"{"text":"hello there","n":42}"#.to_vec()),
        (
            "1 KiB",
            format!(r#"{{"text":"{}","n":42}}"#, "x".repeat(1000)).into_bytes(),
        ),
    ] {
        let value = simd_json::to_borrowed_value(&mut data).unwrap();
        let mut g = c.benchmark_group(format!(
            "fan-out: direct message ({label} data) to 10k conns"
        ));
        g.throughput(Throughput::Elements(SUBSCRIBERS as u64));
        let queues =
            || -> Vec<OutQueue> { (0..SUBSCRIBERS).map(|_| OutQueue::default()).collect() };
        g.bench_function("encode once, queue 10k clones", |b| {
            b.iter_batched_ref(
                queues,
                |qs| {
                    let frame: Bytes = encode::direct_message("alice", &value);
                    for q in qs.iter_mut() {
                        q.push(frame.clone());
                    }
                },
                BatchSize::LargeInput,
            )
        });
        g.bench_function("baseline: encode 10k times, queue each", |b| {
            b.iter_batched_ref(
                queues,
                |qs| {
                    for q in qs.iter_mut() {
                        q.push(encode::direct_message("alice", &value));
                    }
                },
                BatchSize::LargeInput,
            )
        });
        g.finish();
    }
}

criterion_group!(benches, directory, channel_index, local_channels, fan_out);
criterion_main!(benches);
