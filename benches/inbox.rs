//! Cross-shard hand-off bench: one shard's inbox, fed by a sender on another thread.
//!
//! A cross-thread wake is the expensive part of a hand-off (in glommio a channel send plus an eventfd
//! write). The inbox therefore wakes its receiver only when it said it was parking, and senders call
//! `notify` once per unit of work instead of once per message. This bench moves 1M messages between two
//! threads both ways: notifying once per batch of pushes (as `Mesh::flush` does), and the baseline of
//! notifying after every push. The receiver parks its thread while the inbox is empty, so the wakes are
//! real: they also count how many times the receiver was woken, printed once before the group.

use std::{
    future::Future,
    hint::black_box,
    pin::pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll, Wake, Waker},
    thread::{self, Thread},
};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shards::{
    inbox::Inbox,
    messages::{NodeMsg, ShardMsg},
};

/// Messages per run.
const MESSAGES: u64 = 1_000_000;
/// Inbox slots (the default `runtime.inbox_capacity`).
const CAPACITY: usize = 65_536;
/// Pushes between two notifies in the batched mode: a sender's unit of work.
const BATCH: u64 = 64;

/// Wakes a parked thread, counting the wakes.
struct ThreadWaker {
    /// The receiving thread.
    thread: Thread,
    /// Wakes so far.
    wakes: AtomicU64,
}

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::Relaxed);
        self.thread.unpark();
    }
}

/// Runs `fut` on this thread, parking it while the future is pending.
fn block_on<F: Future>(fut: F, waker: &Waker) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(waker);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        thread::park();
    }
}

/// Sends `MESSAGES` probes from this thread to a receiver thread, notifying after every `batch` pushes
/// (and whenever the inbox is full). Returns how many times the receiver was woken.
fn hand_off(batch: u64) -> u64 {
    let inbox = Inbox::new(CAPACITY);
    thread::scope(|s| {
        let receiver = s.spawn(|| {
            let waker = Arc::new(ThreadWaker {
                thread: thread::current(),
                wakes: AtomicU64::new(0),
            });
            let as_waker = Waker::from(waker.clone());
            let mut seen = 0u64;
            let mut sum = 0u64;
            while seen < MESSAGES {
                block_on(inbox.ready(), &as_waker);
                while let Some(msg) = inbox.pop() {
                    if let ShardMsg::Node(NodeMsg::Probe(v)) = msg {
                        sum = sum.wrapping_add(v);
                    }
                    seen += 1;
                }
            }
            black_box(sum);
            waker.wakes.load(Ordering::Relaxed)
        });
        for i in 0..MESSAGES {
            let mut msg: ShardMsg = NodeMsg::Probe(i).into();
            while let Err(back) = inbox.push(msg) {
                msg = back;
                inbox.notify();
                thread::yield_now();
            }
            if (i + 1).is_multiple_of(batch) {
                inbox.notify();
            }
        }
        inbox.notify();
        receiver.join().unwrap()
    })
}

fn inbox(c: &mut Criterion) {
    eprintln!(
        "receiver wakes per 1M messages: notify per {BATCH} pushes {}, notify per push {}",
        hand_off(BATCH),
        hand_off(1)
    );
    let mut g = c.benchmark_group("inbox: 1M probes, one thread to another");
    g.throughput(Throughput::Elements(MESSAGES));
    g.sample_size(10);
    g.bench_function(format!("batch wake: notify per {BATCH} pushes"), |b| {
        b.iter(|| black_box(hand_off(BATCH)))
    });
    g.bench_function("baseline: notify per push", |b| {
        b.iter(|| black_box(hand_off(1)))
    });
    g.finish();
}

criterion_group!(benches, inbox);
criterion_main!(benches);
