//! A connection's outbound queue: `Bytes` handles, bounded in bytes.

use std::collections::VecDeque;

use bytes::Bytes;

/// Frames waiting to be written to one client.
#[derive(Debug, Default)]
pub struct OutQueue {
    /// Whole frames; the first may be partly written (see `written`).
    frames: VecDeque<Bytes>,
    /// Bytes of the first frame already written.
    written: usize,
    /// Bytes queued and not yet written, over all frames.
    bytes: usize,
}

impl OutQueue {
    /// Queues a frame.
    pub fn push(&mut self, frame: Bytes) {
        self.bytes += frame.len();
        self.frames.push_back(frame);
    }

    /// Bytes waiting.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Drops every frame not yet started (a partly written frame must finish, or the stream breaks).
    pub fn drop_unstarted(&mut self) {
        let keep = usize::from(self.written > 0).min(self.frames.len());
        while self.frames.len() > keep {
            if let Some(f) = self.frames.pop_back() {
                self.bytes -= f.len();
            }
        }
        if self.frames.is_empty() {
            self.frames = VecDeque::new();
        }
    }

    /// Copies queued bytes (from the current write position) into `buf`, up to its capacity; returns
    /// the bytes to write: the first frame directly when it is alone, else the gathered copy.
    pub fn gather<'a>(&'a self, buf: &'a mut Vec<u8>, max: usize) -> &'a [u8] {
        let first = match self.frames.front() {
            Some(f) => &f[self.written..],
            None => return &[],
        };
        if self.frames.len() == 1 || first.len() >= max {
            return first;
        }
        buf.clear();
        buf.extend_from_slice(first);
        for f in self.frames.iter().skip(1) {
            if buf.len() + f.len() > max {
                break;
            }
            buf.extend_from_slice(f);
        }
        buf
    }

    /// Marks `n` bytes written; returns how many whole frames completed.
    pub fn advance(&mut self, mut n: usize) -> usize {
        self.bytes -= n;
        let mut done = 0;
        while n > 0 {
            let Some(front) = self.frames.front() else {
                break;
            };
            let left = front.len() - self.written;
            if n >= left {
                n -= left;
                self.written = 0;
                self.frames.pop_front();
                done += 1;
            } else {
                self.written += n;
                n = 0;
            }
        }
        if self.frames.is_empty() && self.frames.capacity() > 8 {
            // Give back the ring a burst grew; an idle connection keeps none.
            self.frames = VecDeque::new();
        }
        done
    }

    /// Heap bytes of the queue's ring (the frames are shared and counted where they are built).
    pub fn heap_bytes(&self) -> usize {
        self.frames.capacity() * std::mem::size_of::<Bytes>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_and_advance_across_partial_writes() {
        let mut q = OutQueue::default();
        q.push(Bytes::from_static(b"abc"));
        q.push(Bytes::from_static(b"defg"));
        q.push(Bytes::from_static(b"h"));
        assert_eq!(q.bytes(), 8);
        let mut buf = Vec::new();
        assert_eq!(q.gather(&mut buf, 64), b"abcdefgh");
        assert_eq!(q.advance(5), 1);
        assert_eq!(q.gather(&mut buf, 64), b"fgh");
        assert_eq!(q.gather(&mut buf, 2), b"fg");
        assert_eq!(q.advance(3), 2);
        assert!(q.is_empty());
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn drop_unstarted_keeps_a_partly_written_frame() {
        let mut q = OutQueue::default();
        q.push(Bytes::from_static(b"abc"));
        q.push(Bytes::from_static(b"def"));
        q.advance(1);
        q.drop_unstarted();
        assert_eq!(q.bytes(), 2);
        let mut buf = Vec::new();
        assert_eq!(q.gather(&mut buf, 64), b"bc");
        let mut q = OutQueue::default();
        q.push(Bytes::from_static(b"abc"));
        q.drop_unstarted();
        assert!(q.is_empty());
        assert_eq!(q.bytes(), 0);
    }
}
