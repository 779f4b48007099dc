//! One descriptor number's state in the io_uring backend ([`Slot`]), and what a stream holds
//! only while it holds something ([`Held`]: its inbox, a receive's error, its output [`Out`]).
//!
//! The backend keeps a slot for every descriptor number up to the highest it watches, so a
//! slot is most of what an idle connection costs it (issue 15 bounds the user-space memory of
//! an idle connection at 256 bytes, the loop's own share included). A slot is therefore 32
//! bytes: its flags are bits of one word, and a stream's buffers and output are one box,
//! allocated with its first input or output and freed once it holds nothing again.
#![cfg(target_os = "linux")]

use super::Interest;
use std::num::NonZeroI32;

/// The descriptor is registered (`set_interest` saw it, `remove` did not follow).
pub(super) const KNOWN: u16 = 1;
/// A poll with sequence `Slot::seq` is in flight.
pub(super) const ARMED: u16 = 1 << 1;
/// On `Uring::to_arm` (so it is queued once).
pub(super) const QUEUED: u16 = 1 << 2;
/// A second look is due at the next wait, in place of the re-arm (see `Uring::wait`).
pub(super) const LOOK: u16 = 1 << 3;
/// Read interest.
pub(super) const READ: u16 = 1 << 4;
/// Write interest.
pub(super) const WRITE: u16 = 1 << 5;
/// Stream mode: the ring receives this descriptor's input and sends its output.
pub(super) const STREAM: u16 = 1 << 6;
/// Stream mode: the peer ended the stream (a receive completed with 0).
pub(super) const EOF: u16 = 1 << 7;
/// Stream mode: a receive with sequence `Slot::recv_seq` is in flight and not cancelled.
pub(super) const RECV_ARMED: u16 = 1 << 8;
/// Stream mode: the kernel has not ended the receive with sequence `Slot::recv_seq` yet (live
/// or cancelled): what it still delivers belongs to this stream, and no new receive is armed
/// before it ends, so bytes never arrive out of order.
pub(super) const INFLIGHT: u16 = 1 << 9;
/// Stream mode: on `Uring::writers` (write interest: writable reports come from the send side).
pub(super) const WRITER: u16 = 1 << 10;
/// Stream mode: the buffers its receive filled in the current wait (the fairness bound),
/// counted up to 15 in these four bits and reset when the next wait begins.
const TOOK_SHIFT: u16 = 11;
const TOOK: u16 = 0xf << TOOK_SHIFT;
/// Stream mode: the descriptor is in the ring's file table at its own number, and the ring's
/// receives and sends name it there. Set by `Uring::fix`, cleared only by `Uring::unfix` (which
/// empties the entry) or a ring rebuild: not one of `STREAM_BITS`, so ending stream mode never
/// forgets an entry the table still holds.
pub(super) const FIXED: u16 = 1 << 15;
/// Every bit that belongs to stream mode, cleared when it ends.
pub(super) const STREAM_BITS: u16 = STREAM | EOF | RECV_ARMED | INFLIGHT | WRITER | TOOK;

/// One descriptor number's state.
#[derive(Clone, Default)]
pub(super) struct Slot {
    pub token: u64,
    /// The sequence number of the last poll or second look armed for this number (it only
    /// grows). They share it: a look is pushed only while no poll is armed, and the next poll
    /// supersedes a look that has not completed yet.
    pub seq: u32,
    /// The sequence number of the last receive armed for this number: it only grows, also
    /// across `remove` and stream mode off and on, so a late completion of an earlier receive
    /// never passes for the current one.
    pub recv_seq: u32,
    /// The sequence number of the last send for this number: it only grows, as `recv_seq`,
    /// so a send's completion is never taken for a newcomer's on the same number.
    pub send_seq: u32,
    /// Stream mode: what the stream holds, allocated only while it holds something.
    pub held: Held,
    /// Where in the current wait's events the stream's event is (a read and a write report
    /// share one event; see `report`). Past `u16::MAX` events a stream's reports in one wait
    /// may come as separate events, which costs only a repeated readiness.
    pub ev_at: u16,
    /// The flags above, and the `TOOK` count.
    bits: u16,
}

impl Slot {
    /// Whether every bit of `bits` is set.
    pub fn has(&self, bits: u16) -> bool {
        self.bits & bits == bits
    }

    pub fn set(&mut self, bits: u16, on: bool) {
        if on {
            self.bits |= bits;
        } else {
            self.bits &= !bits;
        }
    }

    /// Clears `bits`, saying whether they were all set.
    pub fn take(&mut self, bits: u16) -> bool {
        let was = self.has(bits);
        self.set(bits, false);
        was
    }

    /// Buffers the stream's receive filled in the current wait.
    pub fn took(&self) -> u8 {
        ((self.bits & TOOK) >> TOOK_SHIFT) as u8
    }

    /// Counts one more buffer taken in this wait (saturating), saying whether it is the
    /// first (so the caller lists the stream for the reset at the next wait).
    pub fn count_took(&mut self) -> bool {
        let took = self.took();
        if took < 15 {
            self.bits = (self.bits & !TOOK) | (u16::from(took + 1) << TOOK_SHIFT);
        }
        took == 0
    }

    /// A new wait: the stream has its full share again.
    pub fn reset_took(&mut self) {
        self.bits &= !TOOK;
    }

    pub fn interest(&self) -> Interest {
        Interest { read: self.has(READ), write: self.has(WRITE) }
    }

    pub fn set_interest(&mut self, interest: Interest) {
        self.set(READ, interest.read);
        self.set(WRITE, interest.write);
    }

    pub fn stream(&self) -> bool {
        self.has(STREAM)
    }

    /// Stream mode with something for the channel to hear: bytes, the end or an error.
    pub fn has_input(&self) -> bool {
        self.stream() && (!self.held.inbox.is_empty() || self.has(EOF) || self.held.error.is_some())
    }

    /// Whether the ring should have a receive in flight for this descriptor.
    pub fn wants_recv(&self, inbox_cap: usize) -> bool {
        self.has(KNOWN | READ | STREAM)
            && !self.has(INFLIGHT)
            && !self.has(EOF)
            && self.held.error.is_none()
            && self.held.inbox.len() < inbox_cap
    }

    /// The poll mask: none in stream mode, where the receive covers input and the send side
    /// output (see `Out::writable`).
    pub fn poll_interest(&self) -> Interest {
        match self.stream() {
            true => Interest::NONE,
            false => self.interest(),
        }
    }

    /// Ends stream mode, handing back what the stream held.
    pub fn end_stream(&mut self) -> Option<Box<StreamBufs>> {
        self.set(STREAM_BITS, false);
        std::mem::take(&mut self.held).0
    }
}

/// Slots per page of the table: 128 of 32 bytes, a 4 KiB page.
const PAGE: usize = 128;

/// The slots, one per descriptor number up to the highest seen, in fixed pages that never
/// move. A table that grew by reallocation would copy itself at every step and leave the old
/// block behind in the heap: about 30 bytes per connection with 5000 of them, measured, more
/// than the slot itself. Pages cost one pointer per 128 descriptors.
#[derive(Default)]
pub(super) struct Slots {
    pages: Vec<Box<[Slot]>>,
}

impl Slots {
    /// Makes slot `i` exist.
    pub fn grow(&mut self, i: usize) {
        while self.pages.len() <= i / PAGE {
            self.pages.push(vec![Slot::default(); PAGE].into_boxed_slice());
        }
    }

    pub fn get(&self, i: usize) -> Option<&Slot> {
        self.pages.get(i / PAGE).map(|p| &p[i % PAGE])
    }

    pub fn get_mut(&mut self, i: usize) -> Option<&mut Slot> {
        self.pages.get_mut(i / PAGE).map(|p| &mut p[i % PAGE])
    }

    /// How many slots exist (descriptor numbers `0..len`).
    pub fn len(&self) -> usize {
        self.pages.len() * PAGE
    }

    pub fn iter(&self) -> impl Iterator<Item = &Slot> {
        self.pages.iter().flat_map(|p| p.iter())
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Slot> {
        self.pages.iter_mut().flat_map(|p| p.iter_mut())
    }
}

impl std::ops::Index<usize> for Slots {
    type Output = Slot;
    fn index(&self, i: usize) -> &Slot {
        &self.pages[i / PAGE][i % PAGE]
    }
}

impl std::ops::IndexMut<usize> for Slots {
    fn index_mut(&mut self, i: usize) -> &mut Slot {
        &mut self.pages[i / PAGE][i % PAGE]
    }
}

/// What a stream holds, boxed, allocated only while it holds anything: an idle connection has
/// none. Reading an unallocated one sees an empty [`StreamBufs`]; writing allocates it.
#[derive(Clone, Default)]
pub(super) struct Held(Option<Box<StreamBufs>>);

/// A stream's buffers and output.
#[derive(Clone, Default)]
pub(super) struct StreamBufs {
    /// Received, not yet taken by the channel.
    pub inbox: Vec<u8>,
    /// A receive failed with this errno (reported once the inbox is empty).
    pub error: Option<NonZeroI32>,
    /// The output the ring sends for this stream.
    pub out: Out,
}

/// What an unallocated `Held` reads as.
static NOTHING: StreamBufs = StreamBufs {
    inbox: Vec::new(),
    error: None,
    out: Out {
        flight: Vec::new(),
        done: 0,
        next: Vec::new(),
        busy: false,
        error: None,
        shut: false,
        progress: false,
    },
};

impl std::ops::Deref for Held {
    type Target = StreamBufs;
    fn deref(&self) -> &StreamBufs {
        self.0.as_deref().unwrap_or(&NOTHING)
    }
}

impl std::ops::DerefMut for Held {
    fn deref_mut(&mut self) -> &mut StreamBufs {
        self.0.get_or_insert_with(Box::default)
    }
}

impl Held {
    /// Makes the box exist, with a spare one when `spares` has one: a stream busy in every
    /// round trip gets and gives up its box each time, and the spares make that cost no
    /// allocation.
    #[allow(clippy::vec_box)] // boxes: they move between `Held` and the spares, never reallocated
    pub fn make(&mut self, spares: &mut Vec<Box<StreamBufs>>) {
        if self.0.is_none() {
            self.0 = Some(spares.pop().unwrap_or_default());
        }
    }

    /// Gives up the box once it holds nothing (no input, no error, no output owed or in
    /// flight, no buffer): into `spares` while it has fewer than `room`, else freed. A spare
    /// box holds no buffer, so the spares cost at most `room` small boxes.
    #[allow(clippy::vec_box)] // as in `make`
    pub fn release_into(&mut self, spares: &mut Vec<Box<StreamBufs>>, room: usize) {
        let empty = |b: &StreamBufs| {
            b.inbox.capacity() == 0
                && b.error.is_none()
                && b.out.idle()
                && b.out.flight.capacity() == 0
                && b.out.next.capacity() == 0
        };
        if let Some(b) = self.0.take_if(|b| empty(b)) {
            if spares.len() < room {
                spares.push(b);
            }
        }
    }

    /// Whether the box exists.
    #[cfg(test)]
    pub fn allocated(&self) -> bool {
        self.0.is_some()
    }

    /// The output, if the box exists (reading it does not allocate one).
    pub fn out_mut(&mut self) -> Option<&mut Out> {
        self.0.as_deref_mut().map(|b| &mut b.out)
    }
}

/// A stream's output on the ring (phase 3): the bytes its channel's `send` accepted, in
/// order, with at most one send in flight, so they leave in the order they were accepted.
///
/// Buffer lifetime (the `// SAFETY:` of `uring_ring::push_send` rests on it): while `busy`,
/// the kernel reads `flight[done..]`, so `flight` is not written, resized or freed until the
/// send's completion is reaped; new bytes go to `next` meanwhile. A removed descriptor's `Out`
/// moves into a [`Linger`] (the `Vec` moves, its heap block does not), and where a completion
/// can no longer be awaited the block is leaked rather than freed.
#[derive(Clone, Default)]
pub(super) struct Out {
    /// The bytes of the send in flight, or of the last one if it was short: `flight[done..]`
    /// is still owed.
    pub flight: Vec<u8>,
    pub done: usize,
    /// Accepted while `flight` was being sent: sent once it is done.
    pub next: Vec<u8>,
    /// A send naming `flight` is in flight.
    pub busy: bool,
    /// A send failed with this errno: what was owed is dropped, and every later send fails.
    pub error: Option<i32>,
    /// The channel asked for `shutdown(Write)`: done once nothing is owed.
    pub shut: bool,
    /// A send completed since the last writable report (progress makes one).
    pub progress: bool,
}

impl Out {
    /// Bytes accepted and not yet taken by the kernel.
    pub fn owed(&self) -> usize {
        self.flight.len() - self.done + self.next.len()
    }

    pub fn wants_send(&self) -> bool {
        !self.busy && self.error.is_none() && self.owed() > 0
    }

    /// The bytes the next send carries: the rest of a short send, else what came next.
    pub fn prepare(&mut self) -> &[u8] {
        if self.done == self.flight.len() {
            self.flight.clear();
            self.done = 0;
            std::mem::swap(&mut self.flight, &mut self.next);
        }
        &self.flight[self.done..]
    }

    /// What a send's completion says: `res` bytes went, or it failed.
    pub fn completed(&mut self, res: i32) {
        self.busy = false;
        match res {
            n if n >= 0 => self.done = (self.done + n as usize).min(self.flight.len()),
            // Nothing went: sent again from the next wait.
            e if e == -libc::EAGAIN || e == -libc::EINTR => {}
            e => {
                self.error = Some(-e);
                self.flight = Vec::new();
                self.next = Vec::new();
                self.done = 0;
            }
        }
        if self.owed() == 0 {
            // Nothing owed: `flight` is left empty with its buffer. A stream's goes to the
            // poller's spares at once (`Uring::reap`), so an idle connection holds none; a
            // linger's goes with the linger.
            self.flight.clear();
            self.next = Vec::new();
            self.done = 0;
        }
    }

    /// Nothing to send, hear or do: the allocation can go.
    pub fn idle(&self) -> bool {
        !self.busy && self.error.is_none() && !self.shut && self.owed() == 0
    }

    /// Whether the stream is writable for its channel: an error to hear, nothing owed, or a
    /// send completed since the last report and there is room again. (While a send is in flight and
    /// makes no progress the socket is full: no report, as epoll would not report it.)
    pub fn writable(&self) -> bool {
        self.error.is_some() || self.owed() == 0 || (self.progress && self.owed() < super::STREAM_SEND_CAP)
    }

    /// Takes the channel's staged bytes behind what is owed (without a copy when nothing
    /// waits: the vectors are swapped).
    pub fn stage(&mut self, staged: &mut Vec<u8>) {
        if self.error.is_some() {
            staged.clear();
        } else if self.next.is_empty() {
            std::mem::swap(&mut self.next, staged);
        } else {
            self.next.extend_from_slice(staged);
            *staged = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_grows_in_pages_and_never_moves_a_slot() {
        let mut slots = Slots::default();
        slots.grow(5);
        slots[5].token = 55;
        let before: *const Slot = &slots[5];
        slots.grow(10_000);
        assert!(std::ptr::eq(before, &slots[5]), "growing moved the slots (a copy per step)");
        assert_eq!(slots[5].token, 55);
        assert!(slots.len() > 10_000 && slots.len() % PAGE == 0);
        assert!(slots.get(slots.len()).is_none());
        assert_eq!(slots.iter().filter(|s| s.token == 55).count(), 1);
    }

    #[test]
    fn the_fairness_count_lives_in_the_flag_word_without_touching_flags() {
        let mut slot = Slot::default();
        slot.set(KNOWN | STREAM | WRITER, true);
        assert!(slot.count_took(), "the first buffer of a wait");
        for _ in 0..40 {
            slot.count_took();
        }
        assert_eq!(slot.took(), 15, "saturates");
        assert!(slot.has(KNOWN | STREAM | WRITER) && !slot.has(EOF));
        slot.reset_took();
        assert_eq!(slot.took(), 0);
        assert!(slot.has(KNOWN | STREAM | WRITER));
    }
}
