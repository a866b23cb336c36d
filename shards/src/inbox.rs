//! Lock-free inboxes between shards.
//!
//! Topology: every shard owns one inbox; every other shard (and the control thread) pushes into it, so
//! each inbox is MPSC and a node of N shards has N inboxes (not N² channels). An inbox is a bounded
//! `crossbeam_queue::ArrayQueue` plus a waker: a sender pushes, then wakes the receiving shard's drain
//! task only if that task said it was about to park, so a burst of messages costs one cross-thread wake.
//!
//! Bounded, with an explicit policy when full: the sender keeps the message in its own per-target
//! overflow queue ([`crate::mesh::Mesh`]) and retries; data messages beyond the overflow bound are
//! dropped and counted, control messages (directory and subscription changes) never are. No sender ever
//! blocks or waits for another shard.

use std::{
    future::Future,
    pin::Pin,
    sync::atomic::{AtomicBool, Ordering, fence},
    task::{Context, Poll},
};

use atomic_waker::AtomicWaker;
use crossbeam_queue::ArrayQueue;

use crate::messages::ShardMsg;

/// One shard's inbox.
pub struct Inbox {
    /// The messages; any thread pushes, only the owning shard pops.
    queue: ArrayQueue<ShardMsg>,
    /// The owning shard's drain task, registered before it parks.
    waker: AtomicWaker,
    /// True while the drain task is parked (or about to); the first sender to clear it wakes the task.
    parked: AtomicBool,
}

impl Inbox {
    /// An inbox with room for `capacity` messages.
    pub fn new(capacity: usize) -> Self {
        Inbox {
            queue: ArrayQueue::new(capacity.max(16)),
            waker: AtomicWaker::new(),
            parked: AtomicBool::new(false),
        }
    }

    /// Pushes without waking; gives the message back when the inbox is full.
    pub fn push(&self, msg: impl Into<ShardMsg>) -> Result<(), ShardMsg> {
        self.queue.push(msg.into())
    }

    /// Wakes the receiver if it is parked. Call once after a batch of pushes.
    pub fn notify(&self) {
        fence(Ordering::SeqCst);
        if self.parked.swap(false, Ordering::AcqRel) {
            self.waker.wake();
        }
    }

    /// Pushes and wakes: for senders outside the shards (control thread) that push rarely.
    pub fn send(&self, msg: impl Into<ShardMsg>) -> Result<(), ShardMsg> {
        let r = self.push(msg);
        self.notify();
        r
    }

    /// Takes the next message (owning shard only).
    pub fn pop(&self) -> Option<ShardMsg> {
        self.queue.pop()
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True when no message waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Resolves when the inbox holds at least one message (owning shard only).
    pub fn ready(&self) -> Ready<'_> {
        Ready { inbox: self }
    }
}

/// Future returned by [`Inbox::ready`].
pub struct Ready<'a> {
    inbox: &'a Inbox,
}

impl Future for Ready<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let inbox = self.inbox;
        if !inbox.queue.is_empty() {
            return Poll::Ready(());
        }
        inbox.waker.register(cx.waker());
        inbox.parked.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        // A sender that pushed before seeing `parked` must not be missed.
        if !inbox.queue.is_empty() {
            inbox.parked.store(false, Ordering::Release);
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::NodeMsg;
    use std::sync::Arc;

    #[test]
    fn messages_cross_threads_and_wake_the_receiver() {
        let inbox = Arc::new(Inbox::new(1024));
        let senders: Vec<_> = (0..4)
            .map(|t| {
                let inbox = inbox.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        let mut msg: ShardMsg = NodeMsg::Probe(t * 1_000_000 + i).into();
                        loop {
                            match inbox.push(msg) {
                                Ok(()) => break,
                                Err(back) => {
                                    msg = back;
                                    inbox.notify();
                                    std::thread::yield_now();
                                }
                            }
                        }
                        inbox.notify();
                    }
                })
            })
            .collect();
        let mut seen = 0u64;
        let mut last = [None::<u64>; 4];
        futures_lite::future::block_on(async {
            while seen < 40_000 {
                inbox.ready().await;
                while let Some(ShardMsg::Node(NodeMsg::Probe(v))) = inbox.pop() {
                    let t = (v / 1_000_000) as usize;
                    // Per-sender FIFO.
                    assert!(last[t].is_none_or(|p| p < v));
                    last[t] = Some(v);
                    seen += 1;
                }
            }
        });
        for s in senders {
            s.join().unwrap();
        }
        assert_eq!(seen, 40_000);
        assert!(inbox.is_empty());
    }
}
