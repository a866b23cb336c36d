//! A connection's outbound queue: `Bytes` handles, bounded in bytes.

use std::collections::VecDeque;

use bytes::Bytes;

/// Frames waiting to be written to one client: one pointer while nothing waits (the state is boxed on
/// the first frame and freed when the last is written), so an idle connection pays 8 bytes for it.
#[derive(Debug, Default)]
pub struct OutQueue(Option<Box<Queued>>);

/// The state of a queue that holds frames.
#[derive(Debug, Default)]
struct Queued {
    /// Whole frames; the first may be partly written (see `written`).
    frames: VecDeque<Bytes>,
    /// Bytes of the first frame already written.
    written: usize,
    /// Bytes queued and not yet written, over all frames.
    bytes: usize,
    /// Bytes from the write position that a send in flight is writing (0: none in flight). Frames they
    /// touch are started: they must finish, even when the rest is dropped.
    in_flight: usize,
}

/// The bytes of the next send, from [`OutQueue::prepare_send`].
pub enum Prepared {
    /// The rest of the first frame, which waits alone (or is too large to gather): shared, not copied.
    Frame(Bytes),
    /// Several frames copied into the given buffer.
    Gathered(Vec<u8>),
}

impl OutQueue {
    /// Queues a frame.
    pub fn push(&mut self, frame: Bytes) {
        let q = self.0.get_or_insert_with(Box::default);
        q.bytes += frame.len();
        q.frames.push_back(frame);
    }

    /// Bytes waiting.
    pub fn bytes(&self) -> usize {
        self.0.as_ref().map_or(0, |q| q.bytes)
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|q| q.frames.is_empty())
    }

    /// Drops every frame not yet started (a partly written frame must finish, or the stream breaks;
    /// so must every frame a send in flight is writing).
    pub fn drop_unstarted(&mut self) {
        let Some(q) = self.0.as_mut() else { return };
        let mut keep = usize::from(q.written > 0);
        if q.in_flight > 0 {
            let mut covered = q.written + q.in_flight;
            keep = 0;
            for f in &q.frames {
                if covered == 0 {
                    break;
                }
                keep += 1;
                covered = covered.saturating_sub(f.len());
            }
        }
        let keep = keep.min(q.frames.len());
        while q.frames.len() > keep {
            if let Some(f) = q.frames.pop_back() {
                q.bytes -= f.len();
            }
        }
        self.release_if_drained();
    }

    /// True while a send prepared by [`OutQueue::prepare_send`] has not completed.
    pub fn sending(&self) -> bool {
        self.0.as_ref().is_some_and(|q| q.in_flight > 0)
    }

    /// The bytes of the next send, from the write position: the first frame itself when it waits alone
    /// or fills `max`, else up to `max` bytes of whole frames copied into a buffer from `buffer` (taken
    /// only then, so a pooled buffer is not spent on a send that needs none). Marks them in flight
    /// until [`OutQueue::sent`]. `None` when nothing waits.
    pub fn prepare_send(
        &mut self,
        buffer: impl FnOnce() -> Vec<u8>,
        max: usize,
    ) -> Option<Prepared> {
        let q = self.0.as_mut()?;
        let first = q.frames.front()?;
        let rest = first.len() - q.written;
        if q.frames.len() == 1 || rest >= max {
            q.in_flight = rest;
            return Some(Prepared::Frame(first.slice(q.written..)));
        }
        let mut buf = buffer();
        buf.clear();
        buf.extend_from_slice(&first[q.written..]);
        for f in q.frames.iter().skip(1) {
            if buf.len() + f.len() > max {
                break;
            }
            buf.extend_from_slice(f);
        }
        q.in_flight = buf.len();
        Some(Prepared::Gathered(buf))
    }

    /// The send in flight wrote `n` bytes (0 when it failed); returns how many whole frames completed.
    pub fn sent(&mut self, n: usize) -> usize {
        if let Some(q) = self.0.as_mut() {
            q.in_flight = 0;
        }
        self.advance(n)
    }

    /// Marks `n` bytes written; returns how many whole frames completed.
    pub fn advance(&mut self, mut n: usize) -> usize {
        let Some(q) = self.0.as_mut() else { return 0 };
        q.bytes -= n;
        let mut done = 0;
        while n > 0 {
            let Some(front) = q.frames.front() else {
                break;
            };
            let left = front.len() - q.written;
            if n >= left {
                n -= left;
                q.written = 0;
                q.frames.pop_front();
                done += 1;
            } else {
                q.written += n;
                n = 0;
            }
        }
        self.release_if_drained();
        done
    }

    /// Frees the state once nothing waits and no send is in flight: an idle connection holds no queue
    /// (the state and the smallest ring are about 120 B, which on a million idle connections is
    /// 120 MB), while a busy one pays two small allocations per burst.
    fn release_if_drained(&mut self) {
        if self
            .0
            .as_ref()
            .is_some_and(|q| q.frames.is_empty() && q.in_flight == 0)
        {
            self.0 = None;
        }
    }

    /// Heap bytes of the queue's state and ring (the frames are shared and counted where they are built).
    pub fn heap_bytes(&self) -> usize {
        self.0.as_ref().map_or(0, |q| {
            std::mem::size_of::<Queued>() + q.frames.capacity() * std::mem::size_of::<Bytes>()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes of the next send.
    fn gathered(q: &mut OutQueue, max: usize) -> Vec<u8> {
        match q.prepare_send(Vec::new, max) {
            Some(Prepared::Frame(b)) => b.to_vec(),
            Some(Prepared::Gathered(v)) => v,
            None => Vec::new(),
        }
    }

    #[test]
    fn gather_and_advance_across_partial_writes() {
        let mut q = OutQueue::default();
        q.push(Bytes::from_static(b"abc"));
        q.push(Bytes::from_static(b"defg"));
        q.push(Bytes::from_static(b"h"));
        assert_eq!(q.bytes(), 8);
        assert_eq!(gathered(&mut q, 64), b"abcdefgh");
        assert_eq!(q.sent(5), 1);
        assert_eq!(gathered(&mut q, 64), b"fgh");
        assert_eq!(q.sent(0), 0);
        assert_eq!(gathered(&mut q, 2), b"fg");
        assert_eq!(q.sent(3), 2);
        assert!(q.is_empty());
        assert_eq!(q.bytes(), 0);
        assert_eq!(q.heap_bytes(), 0, "a drained queue holds no ring");
    }

    #[test]
    fn drop_unstarted_keeps_a_partly_written_frame() {
        let mut q = OutQueue::default();
        q.push(Bytes::from_static(b"abc"));
        q.push(Bytes::from_static(b"def"));
        q.advance(1);
        q.drop_unstarted();
        assert_eq!(q.bytes(), 2);
        assert_eq!(gathered(&mut q, 64), b"bc");
        let mut q = OutQueue::default();
        q.push(Bytes::from_static(b"abc"));
        q.drop_unstarted();
        assert!(q.is_empty());
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn frames_in_flight_are_never_dropped() {
        let mut q = OutQueue::default();
        q.push(Bytes::from_static(b"abc"));
        q.push(Bytes::from_static(b"def"));
        q.push(Bytes::from_static(b"ghi"));
        let Some(Prepared::Gathered(buf)) = q.prepare_send(Vec::new, 5) else {
            panic!("two frames wait: gathered");
        };
        assert_eq!(buf, b"abc");
        assert!(q.sending());
        q.drop_unstarted();
        assert_eq!(q.bytes(), 3, "the frame being sent stays");
        assert_eq!(q.sent(2), 0);
        assert!(!q.sending());
        let Some(Prepared::Frame(rest)) = q.prepare_send(Vec::new, 64) else {
            panic!("one frame waits: shared");
        };
        assert_eq!(&rest[..], b"c");
        assert_eq!(q.sent(1), 1);
        assert!(q.is_empty());
    }
}
