//! Exactly-once, in-order checking of one numbered stream (one sender to one receiver).
//!
//! The gateway promises at most once delivery and per-(sender, recipient) order. A receiver feeds
//! every sequence number it sees to a [`SeqTracker`]; at the end, [`SeqTracker::finish`] with the
//! number the sender says it sent gives exact counts of messages lost (never arrived), duplicated
//! (arrived again) and out of order (arrived after a higher number). Memory is a bitmap over the
//! window between the lowest missing number and the highest seen, so an in-order stream costs a few
//! words however long it runs.

use std::collections::VecDeque;

/// Highest distance above the lowest missing number a tracker accepts; anything further is counted
/// as invalid rather than allocating a huge bitmap for a corrupt number.
const MAX_WINDOW: u64 = 1 << 32;

/// The receive side of one stream.
#[derive(Debug, Default, Clone)]
pub struct SeqTracker {
    /// Every number below `base` has arrived (`base` is a multiple of 64).
    base: u64,
    /// Bit `i` of word `w`: number `base + 64 w + i` has arrived.
    words: VecDeque<u64>,
    /// Highest number seen so far.
    max_seen: Option<u64>,
    /// Distinct numbers that arrived.
    distinct: u64,
    /// Arrivals of a number already seen.
    duplicated: u64,
    /// First arrivals of a number below one already seen.
    out_of_order: u64,
    /// Numbers too far ahead to be plausible.
    invalid: u64,
}

/// The verdict on a finished stream.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StreamCounts {
    /// Distinct messages received (below the expected total).
    pub received: u64,
    /// Messages sent that never arrived.
    pub lost: u64,
    /// Extra arrivals of a message already received.
    pub duplicated: u64,
    /// Messages that arrived after a higher-numbered one.
    pub out_of_order: u64,
    /// Numbers at or above the expected total, or absurdly far ahead.
    pub invalid: u64,
}

impl StreamCounts {
    /// Adds another stream's counts.
    pub fn add(&mut self, o: &StreamCounts) {
        self.received += o.received;
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.out_of_order += o.out_of_order;
        self.invalid += o.invalid;
    }
}

impl SeqTracker {
    /// A tracker expecting numbers from 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes the arrival of number `seq`.
    pub fn record(&mut self, seq: u64) {
        if seq < self.base {
            self.duplicated += 1;
            return;
        }
        let off = seq - self.base;
        if off >= MAX_WINDOW {
            self.invalid += 1;
            return;
        }
        let (w, bit) = ((off / 64) as usize, 1u64 << (off % 64));
        if w >= self.words.len() {
            self.words.resize(w + 1, 0);
        }
        if self.words[w] & bit != 0 {
            self.duplicated += 1;
            return;
        }
        self.words[w] |= bit;
        self.distinct += 1;
        match self.max_seen {
            Some(m) if seq < m => self.out_of_order += 1,
            _ => self.max_seen = Some(seq),
        }
        while self.words.front() == Some(&u64::MAX) {
            self.words.pop_front();
            self.base += 64;
        }
    }

    /// True once every number below `total` has arrived.
    pub fn complete(&self, total: u64) -> bool {
        self.count_below(total) == total
    }

    /// Highest number seen, if any.
    pub fn max_seen(&self) -> Option<u64> {
        self.max_seen
    }

    /// Distinct numbers below `total` that arrived.
    fn count_below(&self, total: u64) -> u64 {
        let mut n = self.base.min(total);
        for (w, word) in self.words.iter().enumerate() {
            let start = self.base + 64 * w as u64;
            if start >= total {
                break;
            }
            let keep = total - start;
            let mask = if keep >= 64 {
                u64::MAX
            } else {
                (1u64 << keep) - 1
            };
            n += u64::from((word & mask).count_ones());
        }
        n
    }

    /// The counts, given that the sender sent numbers `0..total`.
    pub fn finish(&self, total: u64) -> StreamCounts {
        let received = self.count_below(total);
        StreamCounts {
            received,
            lost: total - received,
            duplicated: self.duplicated,
            out_of_order: self.out_of_order,
            invalid: self.invalid + (self.distinct - received),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seqs: &[u64], total: u64) -> StreamCounts {
        let mut t = SeqTracker::new();
        for &s in seqs {
            t.record(s);
        }
        t.finish(total)
    }

    fn counts(received: u64, lost: u64, dup: u64, ooo: u64) -> StreamCounts {
        StreamCounts {
            received,
            lost,
            duplicated: dup,
            out_of_order: ooo,
            invalid: 0,
        }
    }

    #[test]
    fn a_clean_stream() {
        let seqs: Vec<u64> = (0..1000).collect();
        assert_eq!(run(&seqs, 1000), counts(1000, 0, 0, 0));
        let mut t = SeqTracker::new();
        seqs.iter().for_each(|&s| t.record(s));
        assert!(t.complete(1000));
        assert!(t.words.len() <= 1, "in-order streams keep no bitmap");
    }

    #[test]
    fn gaps_never_filled_are_lost() {
        assert_eq!(run(&[0, 1, 3, 4, 7], 8), counts(5, 3, 0, 0));
        // A missing tail is lost too.
        assert_eq!(run(&[0, 1, 2], 10), counts(3, 7, 0, 0));
        // The very first one missing, across many words.
        let seqs: Vec<u64> = (1..500).collect();
        assert_eq!(run(&seqs, 500), counts(499, 1, 0, 0));
        assert_eq!(run(&[], 4), counts(0, 4, 0, 0));
    }

    #[test]
    fn duplicates_are_counted_each_time() {
        assert_eq!(run(&[0, 1, 1, 2, 2, 2], 3), counts(3, 0, 3, 0));
        // A duplicate of a number far behind the contiguous front.
        let mut seqs: Vec<u64> = (0..200).collect();
        seqs.push(5);
        assert_eq!(run(&seqs, 200), counts(200, 0, 1, 0));
    }

    #[test]
    fn late_arrivals_fill_gaps_and_count_as_out_of_order() {
        // 2 arrives after 3 and 4: one out of order, nothing lost.
        assert_eq!(run(&[0, 1, 3, 4, 2], 5), counts(5, 0, 0, 1));
        // Full reversal: every arrival after the first is below the maximum.
        assert_eq!(run(&[4, 3, 2, 1, 0], 5), counts(5, 0, 0, 4));
        // Reordered and duplicated and lost at once.
        assert_eq!(run(&[1, 0, 0, 3, 5, 3, 2], 7), counts(5, 2, 2, 2));
    }

    #[test]
    fn numbers_beyond_the_total_are_invalid() {
        let c = run(&[0, 1, 2, 9], 3);
        assert_eq!((c.received, c.lost, c.invalid), (3, 0, 1));
        let c = run(&[0, u64::MAX], 1);
        assert_eq!((c.received, c.invalid), (1, 1));
    }

    #[test]
    fn counts_add_up() {
        let mut a = counts(1, 2, 3, 4);
        a.add(&counts(10, 20, 30, 40));
        assert_eq!(a, counts(11, 22, 33, 44));
    }
}
