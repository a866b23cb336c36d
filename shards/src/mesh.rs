//! A shard's sending side: one handle to every inbox, plus per-target overflow.
//!
//! Pushes are collected during a unit of work (one connection's poll, one inbox batch) and the targets
//! are woken once at [`Mesh::flush`]. A full inbox never blocks the sender: the message waits in the
//! sender's overflow queue for that target and is retried at the next flush or timer tick. Overflow is
//! bounded for payload deliveries (dropped and counted beyond it) and unbounded for control messages,
//! which are few and must not be lost.

use std::{collections::VecDeque, sync::Arc};

use crate::{inbox::Inbox, messages::ShardMsg};

/// Most payload messages waiting for one full target before new ones are dropped.
const OVERFLOW_DATA_LIMIT: usize = 65536;

/// Sending handles of one shard.
pub struct Mesh {
    /// Index of the owning shard.
    me: usize,
    /// Every shard's inbox, by shard index (including our own, used only by tests and the control thread).
    inboxes: Arc<[Arc<Inbox>]>,
    /// Messages that found their target full, per target, in order.
    overflow: Vec<VecDeque<ShardMsg>>,
    /// Targets pushed to since the last flush.
    touched: Vec<bool>,
    /// True when some target was touched or has overflow: flush has work. Every connection poll ends
    /// in a flush, so the common nothing-sent case must cost one branch, not a scan of every shard.
    dirty: bool,
    /// Payload messages dropped because a target stayed full (read by metrics).
    pub dropped: u64,
}

impl Mesh {
    /// The mesh of shard `me`.
    pub fn new(me: usize, inboxes: Arc<[Arc<Inbox>]>) -> Self {
        let n = inboxes.len();
        Mesh {
            me,
            inboxes,
            overflow: (0..n).map(|_| VecDeque::new()).collect(),
            touched: vec![false; n],
            dirty: false,
            dropped: 0,
        }
    }

    /// Queues `msg` for shard `to` (never our own shard: local work is done in place).
    pub fn send(&mut self, to: usize, msg: impl Into<ShardMsg>) {
        let msg = msg.into();
        debug_assert_ne!(to, self.me, "local work must not go through the inbox");
        self.touched[to] = true;
        self.dirty = true;
        let backlog = &mut self.overflow[to];
        if backlog.is_empty() {
            if let Err(back) = self.inboxes[to].push(msg) {
                backlog.push_back(back);
            }
        } else if msg.droppable() && backlog.len() >= OVERFLOW_DATA_LIMIT {
            self.dropped += 1;
        } else {
            backlog.push_back(msg);
        }
    }

    /// Retries overflow and wakes every target pushed to since the last flush.
    pub fn flush(&mut self) {
        if !self.dirty {
            return;
        }
        let mut backlog_left = false;
        for to in 0..self.inboxes.len() {
            let backlog = &mut self.overflow[to];
            while let Some(msg) = backlog.pop_front() {
                if let Err(back) = self.inboxes[to].push(msg) {
                    backlog.push_front(back);
                    break;
                }
                self.touched[to] = true;
            }
            backlog_left |= !backlog.is_empty();
            if std::mem::take(&mut self.touched[to]) {
                self.inboxes[to].notify();
            }
        }
        // Overflow still waiting keeps the mesh dirty, so the next flush (or tick) retries it.
        self.dirty = backlog_left;
    }

    /// Messages waiting in overflow, over all targets.
    pub fn backlog(&self) -> usize {
        self.overflow.iter().map(VecDeque::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::NodeMsg;

    #[test]
    fn full_targets_keep_control_messages_and_bound_payload() {
        let inboxes: Arc<[Arc<Inbox>]> =
            vec![Arc::new(Inbox::new(16)), Arc::new(Inbox::new(16))].into();
        let mut mesh = Mesh::new(0, inboxes.clone());
        for i in 0..20 {
            mesh.send(1, NodeMsg::Probe(i));
        }
        assert_eq!(inboxes[1].len(), 16);
        assert_eq!(mesh.backlog(), 4);
        // Drain the target, flush: the overflow goes through in order.
        let mut got: Vec<u64> = std::iter::from_fn(|| inboxes[1].pop())
            .map(|m| {
                if let ShardMsg::Node(NodeMsg::Probe(v)) = m {
                    v
                } else {
                    unreachable!()
                }
            })
            .collect();
        mesh.flush();
        got.extend(std::iter::from_fn(|| inboxes[1].pop()).map(|m| {
            if let ShardMsg::Node(NodeMsg::Probe(v)) = m {
                v
            } else {
                0
            }
        }));
        assert_eq!(got, (0..20).collect::<Vec<_>>());
        assert_eq!(mesh.backlog(), 0);
        assert_eq!(mesh.dropped, 0);
        assert!(!mesh.dirty, "nothing left: the next flush is one branch");
        // Overflow that cannot drain yet keeps the mesh dirty until it does.
        for i in 0..20 {
            mesh.send(1, NodeMsg::Probe(i));
        }
        mesh.flush();
        assert!(mesh.dirty);
        while inboxes[1].pop().is_some() {}
        mesh.flush();
        assert_eq!(mesh.backlog(), 0);
        assert!(!mesh.dirty);
    }
}
