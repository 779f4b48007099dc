//! The provided-buffer ring every multishot receive of one io_uring instance shares (issue 15,
//! phase 2): `count` buffers of `size` bytes, and the ring of descriptors through which the
//! loop hands them to the kernel. The kernel picks a buffer for each receive completion and
//! names it in the completion (`IORING_CQE_F_BUFFER`); the loop copies the bytes out and gives
//! the buffer back at once, so the memory is the ring's, not a connection's: an idle connection
//! holds no buffer.
//!
//! Lifetimes, which every `// SAFETY:` below relies on: the descriptor ring and the buffers are
//! allocated here and freed only in `Drop`, which the owner runs after the io_uring instance is
//! gone (field order in `Uring`: the ring first). Between registration and then, the kernel may
//! write into any buffer it has been given and not yet returned in a completion; the loop reads
//! only buffers a completion returned, and writes only descriptors past the kernel's head.
#![cfg(target_os = "linux")]
#![allow(unsafe_code)]

use io_uring::types::BufRingEntry;
use io_uring::IoUring;
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

pub(crate) struct BufRing {
    /// `count` descriptors, page-aligned as the kernel requires.
    ring: NonNull<BufRingEntry>,
    ring_layout: Layout,
    /// `count * size` bytes of buffers.
    mem: NonNull<u8>,
    mem_layout: Layout,
    count: u16,
    size: u32,
    /// The next descriptor slot to fill (the kernel consumes from its own head up to this).
    tail: u16,
}

// SAFETY: the pointers are to memory this value owns alone; it moves between threads with the
// poller that owns it, never shared.
unsafe impl Send for BufRing {}
// SAFETY: every method that touches the memory takes `&mut self` except `data`, which reads a
// buffer the kernel has returned and no one writes to until `give_back`.
unsafe impl Sync for BufRing {}

impl BufRing {
    /// Allocates `count` (a power of two, at most 32768) buffers of `size` bytes, offers them
    /// all to the kernel and registers the ring as buffer group `bgid`.
    pub fn new(uring: &IoUring, count: u16, size: u32, bgid: u16) -> io::Result<BufRing> {
        if !count.is_power_of_two() || count > 32768 || size == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "buffer ring: bad geometry"));
        }
        let page = 4096;
        let ring_layout = Layout::from_size_align(usize::from(count) * size_of::<BufRingEntry>(), page)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let mem_layout = Layout::from_size_align(usize::from(count) * size as usize, page)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: both layouts have a non-zero size (count >= 1, size >= 1); the pointers are
        // checked for null, owned by the value built below and freed once in Drop.
        let (ring, mem) = unsafe { (alloc_zeroed(ring_layout), alloc_zeroed(mem_layout)) };
        let (Some(ring), Some(mem)) = (NonNull::new(ring.cast::<BufRingEntry>()), NonNull::new(mem)) else {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        };
        let mut br = BufRing { ring, ring_layout, mem, mem_layout, count, size, tail: 0 };
        for bid in 0..count {
            br.put(bid);
        }
        br.publish();
        // SAFETY: the descriptor ring is `count` entries, page-aligned, and stays allocated
        // until Drop, which the owner runs only after the io_uring instance is closed.
        unsafe { uring.submitter().register_buf_ring_with_flags(ring.as_ptr() as u64, count, bgid, 0)? };
        Ok(br)
    }

    /// The `len` bytes a completion said the kernel wrote into buffer `bid`.
    pub fn data(&self, bid: u16, len: usize) -> &[u8] {
        let bid = usize::from(bid % self.count);
        let len = len.min(self.size as usize);
        // SAFETY: the range lies inside `mem` (bid < count, len <= size); the kernel returned
        // this buffer in a completion and does not touch it again until `give_back` offers it.
        unsafe { std::slice::from_raw_parts(self.mem.as_ptr().add(bid * self.size as usize), len) }
    }

    /// Offers buffer `bid` to the kernel again.
    pub fn give_back(&mut self, bid: u16) {
        self.put(bid % self.count);
        self.publish();
    }

    /// Fills the next descriptor slot with buffer `bid` (not yet visible to the kernel).
    fn put(&mut self, bid: u16) {
        let slot = usize::from(self.tail & (self.count - 1));
        let addr = self.mem.as_ptr() as u64 + u64::from(bid) * u64::from(self.size);
        // SAFETY: `slot < count`, inside the descriptor ring; the kernel reads only slots
        // between its head and the published tail, and this one is past the tail.
        let entry = unsafe { &mut *self.ring.as_ptr().add(slot) };
        entry.set_addr(addr);
        entry.set_len(self.size);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes every descriptor filled so far visible to the kernel (a release store of the tail).
    fn publish(&self) {
        // SAFETY: the tail field lives in the first descriptor of the ring, which is allocated
        // and aligned for a u16; the kernel only reads it, so an atomic store is the protocol.
        let tail = unsafe { &*(BufRingEntry::tail(self.ring.as_ptr()) as *const AtomicU16) };
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with exactly these layouts, freed once; the io_uring
        // instance that could write into them is closed before this runs.
        unsafe {
            dealloc(self.ring.as_ptr().cast(), self.ring_layout);
            dealloc(self.mem.as_ptr(), self.mem_layout);
        }
    }
}
