//! The shard's provided buffer ring: the kernel picks a free buffer for each multishot receive.
//!
//! With a buffer ring no connection holds a receive buffer while it waits: the kernel takes one from
//! the shard's ring only when bytes arrive, and the shard gives it back as soon as the decoder has
//! consumed it (only an incomplete frame is copied out, into the connection's decoder). The entries
//! array (16 B per buffer) is pinned and charged to RLIMIT_MEMLOCK; the buffers themselves are plain
//! memory and are not.
//!
//! The ring starts with a few buffers in circulation and grows (doubling, up to its entries) each time
//! a pass runs out ([`BufRing::grow`]). The kernel takes buffers in ring order, so every buffer in
//! circulation is touched sooner or later: circulating only what the load has needed keeps an idle
//! or lightly loaded shard's resident memory at a few pages, while the pool's address space (never
//! touched beyond what circulates) is reserved for bursts.

use std::{
    alloc::{Layout, alloc_zeroed, dealloc},
    io,
    sync::atomic::{AtomicU16, Ordering},
};

use io_uring::{IoUring, types::BufRingEntry};

/// The buffer group id of the shard's ring (one group per ring).
pub const GROUP: u16 = 0;

/// A registered buffer ring and the buffers it hands out.
pub struct BufRing {
    /// The entries array shared with the kernel (page aligned, `entries` long).
    ring: *mut BufRingEntry,
    /// Its layout, to free it.
    layout: Layout,
    /// Number of entries (a power of two).
    entries: u16,
    /// Our copy of the tail: the next entry we fill.
    tail: u16,
    /// Buffers in circulation (ids `0..live`); at most `entries`.
    live: u16,
    /// The buffers, `size` bytes each, back to back.
    bufs: Box<[u8]>,
    /// Bytes per buffer.
    size: usize,
}

impl BufRing {
    /// Buffers in circulation at start.
    pub const INITIAL: u16 = 16;

    /// Registers a ring of up to `entries` buffers of `size` bytes with `uring` (group [`GROUP`]), with
    /// [`BufRing::INITIAL`] of them in circulation. `entries` is rounded down to a power of two, at most
    /// 32,768.
    pub fn register(uring: &IoUring, entries: u16, size: usize) -> io::Result<BufRing> {
        let entries = entries.clamp(1, 1 << 15);
        let entries = if entries.is_power_of_two() {
            entries
        } else {
            entries.next_power_of_two() >> 1
        };
        let bytes = entries as usize * std::mem::size_of::<BufRingEntry>();
        let layout = Layout::from_size_align(bytes.max(4096), 4096)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: the layout has a non-zero size.
        let ring = unsafe { alloc_zeroed(layout) } as *mut BufRingEntry;
        if ring.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        let mut this = BufRing {
            ring,
            layout,
            entries,
            tail: 0,
            live: 0,
            bufs: vec![0u8; entries as usize * size].into_boxed_slice(),
            size,
        };
        // SAFETY: `ring` is page aligned, `entries` long, and lives until `this` is dropped, which the
        // caller does only after the io_uring that holds the registration is gone (see `Drop`).
        unsafe {
            uring
                .submitter()
                .register_buf_ring_with_flags(ring as u64, entries, GROUP, 0)?;
        }
        this.grow_to(Self::INITIAL.min(entries));
        Ok(this)
    }

    /// Puts more buffers in circulation after the ring ran dry: doubles them, up to the entries.
    /// Returns false when every entry already circulates.
    pub fn grow(&mut self) -> bool {
        if self.live >= self.entries {
            return false;
        }
        self.grow_to(self.live.saturating_mul(2).min(self.entries));
        true
    }

    /// Adds buffers `live..to` to the ring.
    fn grow_to(&mut self, to: u16) {
        for bid in self.live..to {
            self.stage(bid);
        }
        self.live = to;
        self.publish();
    }

    /// Buffers in circulation.
    pub fn live(&self) -> u16 {
        self.live
    }

    /// Buffers in the ring.
    pub fn entries(&self) -> u16 {
        self.entries
    }

    /// Bytes per buffer.
    pub fn buffer_size(&self) -> usize {
        self.size
    }

    /// Memory charged to RLIMIT_MEMLOCK for `entries` buffers: the entries array, in whole pages.
    pub fn memlock_bytes(entries: u16) -> usize {
        (entries as usize * std::mem::size_of::<BufRingEntry>()).div_ceil(4096) * 4096
    }

    /// The first `len` bytes of buffer `bid`, which the kernel filled and handed to us.
    pub fn filled(&mut self, bid: u16, len: usize) -> &mut [u8] {
        let start = (bid as usize % self.entries as usize) * self.size;
        &mut self.bufs[start..start + len.min(self.size)]
    }

    /// Gives buffer `bid` back to the kernel.
    pub fn give_back(&mut self, bid: u16) {
        self.stage(bid);
        self.publish();
    }

    /// Writes buffer `bid` into the next entry (not yet visible to the kernel).
    fn stage(&mut self, bid: u16) {
        let mask = self.entries - 1;
        let idx = (self.tail & mask) as usize;
        // SAFETY: idx < entries, inside the array; the kernel only reads entries between its head and
        // our published tail, and this one is past the published tail.
        let entry = unsafe { &mut *self.ring.add(idx) };
        let start = (bid as usize % self.entries as usize) * self.size;
        entry.set_addr(self.bufs[start..].as_ptr() as u64);
        entry.set_len(self.size as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the staged entries visible to the kernel (a release store of the tail).
    fn publish(&self) {
        // SAFETY: the tail field overlays the first entry's reserved field, which the kernel reads
        // as the ring's tail; it is a u16 aligned to 2 bytes inside our allocation.
        let tail = unsafe { &*(BufRingEntry::tail(self.ring) as *const AtomicU16) };
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `register` with this layout. The owner drops the ring only after the
        // io_uring it was registered with (field order in `Uring`), so the kernel no longer reads it.
        unsafe { dealloc(self.ring as *mut u8, self.layout) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_grows_by_doubling_up_to_its_entries() {
        let ring = IoUring::new(8).expect("io_uring");
        let mut bufs = BufRing::register(&ring, 100, 512).expect("buffer ring");
        assert_eq!(bufs.entries(), 64, "rounded down to a power of two");
        assert_eq!(bufs.live(), BufRing::INITIAL);
        assert!(bufs.grow());
        assert_eq!(bufs.live(), 32);
        assert!(bufs.grow());
        assert_eq!(bufs.live(), 64);
        assert!(!bufs.grow(), "every entry circulates");
        assert_eq!(
            bufs.filled(3, 10_000).len(),
            512,
            "a buffer's bytes, never past it"
        );
        assert_eq!(BufRing::memlock_bytes(256), 4096);
        assert_eq!(BufRing::memlock_bytes(1024), 16384);
    }
}
