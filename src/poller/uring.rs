//! `io_uring(7)` as a backend: readiness from single-shot `POLL_ADD` per descriptor, re-armed
//! before each wait while interest remains (level-triggered like the others), and for
//! connected stream sockets in stream mode the data path itself on the ring: a multishot
//! receive into a shared buffer ring, and the channel's sends.
//!
//! The data path (see `uring_slot.rs` for a stream's state and its `Out`, and
//! `docs/architecture.md`):
//! - Input: one multishot receive per stream while read interest lasts; completions are copied
//!   into the stream's inbox (at most `INBOX_CAP`), which the loop moves into the channel.
//!   Fairness: a receive that filled more than `FAIR_BUFS` buffers in one wait is cancelled at
//!   the end of it and armed again once the channel took its input, so one busy peer gets
//!   about one share per pass and cannot hold the buffer ring.
//! - Output: the channel's `send` stages bytes (bounded with what is owed by
//!   `STREAM_SEND_CAP`); the loop hands them over (`stage_send`) and the poller sends them with
//!   at most one `SEND` in flight per socket, a short send resumed before anything newer, all
//!   pushed and submitted at the end of the pass (`flush_sends`). A stream is writable when it
//!   owes nothing, when a send made progress and there is room, or when a send failed (the
//!   error bit set for a disconnect). A stream removed while it owes bytes becomes a `Linger`:
//!   a duplicate descriptor carries the rest, then closes, so the FIN follows the last byte.
//!   Sends have their own growing sequence per descriptor number, so a late completion never
//!   reaches a newcomer on that number. A send's buffer is never touched while it is in flight
//!   (the `// SAFETY:` of `uring_ring::push_send`).
//!
//! How the contract maps onto the ring:
//! - Interest lives here, in a table indexed by descriptor number. A descriptor with interest
//!   has at most one poll in flight; when that poll completes (its readiness is reported) the
//!   descriptor goes on the `to_arm` list, and the next wait pushes a fresh poll for it. A
//!   single-shot poll checks readiness when it is armed, so a channel whose `readable()` stays
//!   true and still has unread data is reported again on the next wait, as epoll's level mode
//!   would. Idle descriptors cost nothing per pass: only the ones that fired are re-armed.
//! - Every re-arm and every cancel of a pass goes into the submission queue and is submitted by
//!   the wait's one `io_uring_enter` (submit and wait together, the timeout as an
//!   `IORING_ENTER_EXT_ARG` timespec): one syscall per pass.
//! - A change of interest cancels the poll in flight (`POLL_REMOVE` by its user data) and arms a
//!   new one; `remove` cancels and submits at once, since a poll in flight holds a reference to
//!   the file and the socket would otherwise stay open (no FIN) after the caller closes it.
//! - Stale completions: each poll's user data carries the descriptor and a per-descriptor arm
//!   sequence number that only grows, also across `remove` and a new registration of the same
//!   number. A completion whose sequence is not the one armed now (cancelled, superseded, or for
//!   an earlier descriptor with the same number) is dropped here and never reaches a newcomer.
//! - The waker's eventfd has a multishot poll: every `write` to it posts a completion without
//!   the loop reading it, which is how epoll's edge-triggered waker behaves.
//!
//! Setup: `SINGLE_ISSUER | DEFER_TASKRUN` when the kernel has them (completions are posted only
//! when the loop asks, in its own wait: no interrupting task work), else `COOP_TASKRUN`, either
//! with `TASKRUN_FLAG` (the kernel marks pending completion work, so a wait that must not block
//! enters only when something is queued or marked, and never arms a timer), else plain.
//! Streams go in the ring's file table at their own descriptor number (see `fix`). A single-issuer ring belongs to the thread that first submits to it, while a
//! `Selector` is `Send` (the Python package waits from whichever thread holds it, a loop may be
//! built on one thread and run on another): the ring is created disabled (`R_DISABLED`) and
//! enabled by the first thread that submits; if a later call comes from another thread, the
//! ring is rebuilt there and every watched descriptor re-armed (the old ring's polls end with
//! it). That costs one setup per move of thread, and nothing while a loop stays put.
//!
//! `io_uring_setup` can be refused (the `kernel.io_uring_disabled` sysctl, a seccomp filter in a
//! container): [`Uring::new`] then fails with an error that names io_uring and the reason, and
//! [`Backend::all`](super::Backend::all) leaves uring out.
#![cfg(target_os = "linux")]

use super::uring_buf::BufRing;
use super::uring_ring::{self as ring_ops, RingFlags};
use super::uring_slot::{
    Out, Slot, Slots, StreamBufs, ARMED, EOF, FIXED, INFLIGHT, KNOWN, LOOK, QUEUED, READ, RECV_ARMED, STREAM,
    WRITE, WRITER,
};
use super::{Event, Interest, Poller};
use io_uring::{cqueue, opcode, types, IoUring};
use std::io;
use std::num::NonZeroI32;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::thread::ThreadId;
use std::time::Duration;

/// Size of the submission queue. A pass that has more to push submits early (one more enter).
const SQ_ENTRIES: u32 = 1024;
/// Size of the completion queue: completions of a pass for up to this many descriptors fit
/// without the kernel's overflow list.
const CQ_ENTRIES: u32 = 16 * 1024;

/// What a completion is, from the top bits of its user data.
const KIND_SHIFT: u32 = 61;
const KIND_POLL: u64 = 0;
const KIND_WAKER: u64 = 1;
/// The completion of a `POLL_REMOVE` itself: nothing to do.
const KIND_CANCEL: u64 = 2;
/// A second look at a descriptor whose completion carried only a wake-up's hint (see `recheck`).
const KIND_CHECK: u64 = 3;
/// A multishot receive into the buffer ring (a descriptor in stream mode).
const KIND_RECV: u64 = 4;
/// A send of a stream's output (see `Out`), or of a removed stream's (see `Linger`).
const KIND_SEND: u64 = 5;
/// The arm sequence takes the 29 bits between the kind and the descriptor.
const SEQ_MASK: u32 = (1 << 29) - 1;

/// The buffer ring: buffers shared by every receive of the ring.
const BUF_COUNT: u16 = 256;
const BUF_SIZE: u32 = 4096;
const BUF_GROUP: u16 = 0;
/// A stream's inbox bound: past it the receive is cancelled until the channel takes the bytes,
/// so backpressure reaches the peer's TCP window and one busy channel cannot take everything.
pub(crate) const INBOX_CAP: usize = 64 * 1024;
/// The fairness bound: buffers one stream's receive may fill in one wait (32 KiB, half the
/// inbox bound). Past it the receive is cancelled at the end of the wait and armed again only
/// once the channel has taken its input, so a peer that always has data gets about this much
/// per pass and leaves the rest of the buffer ring (and of the pass) to the others.
const FAIR_BUFS: u8 = 8;
/// The file table's length at most (8 bytes of kernel memory an entry): streams on higher
/// descriptor numbers name their descriptor in each operation instead.
const FILE_TABLE_CAP: u32 = 1 << 16;

fn poll_data(fd: RawFd, seq: u32) -> u64 {
    user_data(KIND_POLL, fd, seq)
}

fn user_data(kind: u64, fd: RawFd, seq: u32) -> u64 {
    (kind << KIND_SHIFT) | (u64::from(seq & SEQ_MASK) << 32) | u64::from(fd as u32)
}

const WAKER_DATA: u64 = KIND_WAKER << KIND_SHIFT;
const CANCEL_DATA: u64 = KIND_CANCEL << KIND_SHIFT;

/// The output of a stream removed (its channel closed) while its ring still owed bytes: sent
/// to the end through a duplicate of the descriptor, which is then closed (the FIN follows the
/// last byte, as the kernel's own buffer would have it). Without a duplicate (out of
/// descriptors) only the send in flight is waited for, its buffer kept alive until then.
struct Linger {
    fd: Option<std::os::fd::OwnedFd>,
    out: Out,
    /// The user data of its send in flight (when `out.busy`).
    key: u64,
}

/// What [`Uring::take_received`] handed over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Received {
    /// This many bytes (more may follow).
    Bytes(usize),
    /// Nothing now: "would block".
    Nothing,
    /// The peer ended the stream and every byte before the end was handed over.
    End,
    /// The receive failed with this errno.
    Failed(i32),
}

pub(crate) struct Uring {
    /// Declared first, so it is closed before `bufs` is freed (fields drop in order).
    ring: IoUring,
    /// The buffer ring, created with the first stream.
    bufs: Option<BufRing>,
    /// The file table's length (0: refused), registered with the first stream: a stream's
    /// receives and sends name its entry there, which saves the kernel a descriptor look-up
    /// and a reference count per operation.
    files: Option<u32>,
    flags: RingFlags,
    /// The thread the ring is enabled for, when it is single-issuer.
    owner: Option<ThreadId>,
    slots: Slots,
    /// Descriptors that may need a poll armed at the next wait.
    to_arm: Vec<RawFd>,
    /// The waker's eventfd, and whether its multishot poll is in flight.
    waker: Option<(RawFd, bool)>,
    /// Descriptors whose completion needs a second look in this wait (kept for its capacity).
    suspects: Vec<RawFd>,
    /// Streams whose inbox passed its bound in this reap: their receive is cancelled after it.
    over: Vec<RawFd>,
    /// Where the current wait's events begin in the caller's vector (see `report`).
    events_from: usize,
    /// Streams whose receive filled buffers in the current wait (their `Slot::took` is reset
    /// when the next wait begins).
    took_in_wait: Vec<RawFd>,
    /// Receives the kernel has not ended yet (live or cancelled): while any is, the buffer
    /// ring may be written to and must not be freed.
    recvs: usize,
    /// Emptied inboxes kept for the next stream that receives (no allocation per round trip,
    /// and an idle stream holds no buffer).
    spare: Vec<Vec<u8>>,
    /// Emptied stream boxes (`Held`), kept for the next stream that receives or sends (boxed:
    /// they move in and out of slots without a new allocation).
    #[allow(clippy::vec_box)]
    spare_held: Vec<Box<StreamBufs>>,
    /// Streams whose read interest came back while their inbox holds something: reported by
    /// the next wait, which does not sleep then (no completion may ever come for those bytes).
    due: Vec<RawFd>,
    /// Events reaped outside a wait (while a stream left ring mode), delivered by the next one.
    deferred: Vec<Event>,
    /// Streams with write interest, whose writable reports come from their send side.
    writers: Vec<RawFd>,
    /// Output of removed streams still being sent (see `Linger`).
    lingers: Vec<Linger>,
    /// Sends in flight (streams' and lingers'): while any is, their buffers must stay.
    sends: usize,
    /// Completions taken from the queue by a sends-only reap and not applied yet (user data,
    /// result, flags), for the next reap.
    held: Vec<(u64, i32, u32)>,
    /// The completions of a reap (kept for its capacity).
    batch: Vec<(u64, i32, u32)>,
    /// A send is waiting to be pushed (`flush_sends` has work).
    send_due: bool,
    /// Streams given output since the last push of sends: at `SEND_BATCH` their sends go out
    /// before the pass ends (see `stage_send`).
    send_batch: Vec<RawFd>,
}

/// Spare inboxes kept at most (each up to `INBOX_CAP` bytes).
const SPARE_INBOXES: usize = 64;
/// Rounds of `leave_stream` (a millisecond each at most) before it gives up.
const LEAVE_ROUNDS: u32 = 5000;
/// Rounds of `flush_sends` at most (each: push, submit, reap what completed at once).
const FLUSH_ROUNDS: u32 = 4;
/// Streams whose staged output may wait for the end of the pass: past it the sends are pushed,
/// submitted and their completions reaped at once. A pass can report thousands of streams (a
/// wait takes every completion the ring holds); without this bound each would keep its output
/// buffers until the pass ends, and the peak of memory would grow with the busiest pass.
const SEND_BATCH: usize = 64;
/// How long dropping the poller waits for the sends it owes before cancelling them.
const SEND_GRACE: Duration = Duration::from_millis(250);

impl Uring {
    /// A ring, or an error naming io_uring and why the kernel refused it.
    pub fn new() -> io::Result<Uring> {
        let (ring, flags) = ring_ops::build(SQ_ENTRIES, CQ_ENTRIES)?;
        Ok(Uring {
            ring,
            bufs: None,
            files: None,
            flags,
            owner: None,
            slots: Slots::default(),
            to_arm: Vec::new(),
            waker: None,
            suspects: Vec::new(),
            over: Vec::new(),
            events_from: 0,
            took_in_wait: Vec::new(),
            recvs: 0,
            spare: Vec::new(),
            spare_held: Vec::new(),
            due: Vec::new(),
            deferred: Vec::new(),
            writers: Vec::new(),
            lingers: Vec::new(),
            sends: 0,
            held: Vec::new(),
            batch: Vec::new(),
            send_due: false,
            send_batch: Vec::new(),
        })
    }

    fn slot(&mut self, fd: RawFd) -> &mut Slot {
        let i = fd as usize; // a BorrowedFd is never negative
        self.slots.grow(i);
        &mut self.slots[i]
    }

    /// Makes the ring usable from this thread: enables a fresh single-issuer ring here, or
    /// rebuilds it if it belongs to another thread.
    fn own(&mut self) -> io::Result<()> {
        if !self.flags.single_issuer {
            return Ok(());
        }
        let me = std::thread::current().id();
        match self.owner {
            Some(owner) if owner == me => Ok(()),
            None => {
                self.ring.submitter().register_enable_rings()?;
                self.owner = Some(me);
                Ok(())
            }
            Some(_) => self.rebuild(me),
        }
    }

    /// A new ring for this thread; every poll of the old one ends with it, so every watched
    /// descriptor (and the waker) is armed again at the next wait.
    fn rebuild(&mut self, me: ThreadId) -> io::Result<()> {
        let (ring, flags) = ring_ops::build(SQ_ENTRIES, CQ_ENTRIES)?;
        if flags.single_issuer {
            ring.submitter().register_enable_rings()?;
        }
        let old = std::mem::replace(&mut self.ring, ring);
        let in_flight = std::mem::take(&mut self.recvs) > 0;
        drop(old);
        if std::mem::take(&mut self.sends) > 0 {
            self.abandon_sends();
        }
        if let Some(bufs) = self.bufs.take() {
            if in_flight {
                // The old ring's receives cannot be waited for from this thread: their buffers
                // are left to the kernel rather than freed under a receive (a rare leak).
                std::mem::forget(bufs);
            }
        }
        if self.slots.iter().any(Slot::stream) {
            self.bufs = Some(BufRing::new(&self.ring, BUF_COUNT, BUF_SIZE, BUF_GROUP)?);
        }
        self.flags = flags;
        self.owner = Some(me);
        // The old table went with the old ring: the streams go in the new one.
        self.files = None;
        let mut streams = Vec::new();
        self.to_arm.clear();
        for (fd, slot) in self.slots.iter_mut().enumerate() {
            slot.set(ARMED | RECV_ARMED | INFLIGHT | FIXED, false);
            let queue = slot.has(KNOWN) && !slot.interest().is_empty();
            slot.set(QUEUED, queue);
            if queue {
                self.to_arm.push(fd as RawFd);
            }
            if slot.stream() {
                streams.push(fd as RawFd);
            }
        }
        for fd in streams {
            self.fix(fd);
        }
        if let Some((_, armed)) = self.waker.as_mut() {
            *armed = false;
        }
        Ok(())
    }

    /// The old ring's sends in flight cannot be waited for from this thread: their buffers
    /// are left to the kernel (leaked, never freed under a send), and since how much of each
    /// went is unknown, its stream fails with `EIO` (a linger is dropped) rather than resend
    /// or skip bytes.
    fn abandon_sends(&mut self) {
        for out in self.slots.iter_mut().filter_map(|s| s.held.out_mut()) {
            if out.busy {
                std::mem::forget(std::mem::take(&mut out.flight));
                out.completed(-libc::EIO);
            }
        }
        for l in self.lingers.iter_mut().filter(|l| l.out.busy) {
            std::mem::forget(std::mem::take(&mut l.out.flight));
            l.out.completed(-libc::EIO);
        }
        self.lingers.retain(|l| l.out.wants_send());
    }

    /// Pushes the next send of `fd`'s stream, or its half-close once nothing is owed. Called
    /// only from `arm_pending`, right before the wait's enter submits it, so the descriptor
    /// named is the channel's own at submission.
    /// Pushes and submits the sends of the streams in `send_batch` and applies the send
    /// completions that are there at once (the rest wait for the wait, as at a pass's end), so
    /// their output buffers go while the pass goes on. Only sends: a poll or receive re-armed
    /// now, for a stream whose handler has not run yet in this pass, would report it twice.
    fn push_send_batch(&mut self) -> io::Result<()> {
        self.own()?;
        let batch = std::mem::take(&mut self.send_batch);
        let mut result = Ok(());
        for &fd in &batch {
            if let Err(e) = self.arm_send(fd) {
                result = Err(e);
            }
        }
        self.send_batch = batch;
        self.send_batch.clear();
        result?;
        ring_ops::flush(&self.ring)?;
        self.reap(&mut Vec::new(), None, true);
        Ok(())
    }

    fn arm_send(&mut self, fd: RawFd) -> io::Result<()> {
        let Some(slot) = self.slots.get_mut(fd as usize).filter(|s| s.has(KNOWN | STREAM)) else {
            return Ok(());
        };
        let out = &slot.held.out;
        if out.wants_send() {
            slot.send_seq = slot.send_seq.wrapping_add(1) & SEQ_MASK;
            let data = user_data(KIND_SEND, fd, slot.send_seq);
            let fixed = slot.has(FIXED);
            let out = &mut slot.held.out;
            ring_ops::push_send(&mut self.ring, fd, fixed, out.prepare(), data)?;
            out.busy = true;
            self.sends += 1;
        } else if out.shut && !out.busy && out.owed() == 0 && out.error.is_none() {
            slot.held.out.shut = false;
            let sqe = opcode::Shutdown::new(types::Fd(fd), libc::SHUT_WR).build().user_data(CANCEL_DATA);
            ring_ops::push(&mut self.ring, &sqe)?;
        }
        Ok(())
    }

    /// Pushes the lingers' next sends (through their own duplicate descriptors) and drops the
    /// ones that are done, which closes their sockets.
    fn arm_lingers(&mut self) -> io::Result<()> {
        let mut result = Ok(());
        for l in self.lingers.iter_mut() {
            let Some(fd) = l.fd.as_ref().map(|f| f.as_raw_fd()) else { continue };
            if !l.out.wants_send() {
                continue;
            }
            let i = fd as usize; // an open descriptor: not negative
            self.slots.grow(i);
            let slot = &mut self.slots[i];
            slot.send_seq = slot.send_seq.wrapping_add(1) & SEQ_MASK;
            let data = user_data(KIND_SEND, fd, slot.send_seq);
            match ring_ops::push_send(&mut self.ring, fd, false, l.out.prepare(), data) {
                Ok(()) => {
                    l.out.busy = true;
                    l.key = data;
                    self.sends += 1;
                }
                Err(e) => result = Err(e),
            }
        }
        self.lingers.retain(|l| l.out.busy || (l.fd.is_some() && l.out.wants_send()));
        result
    }

    /// Puts a stream with write interest on `writers` (once).
    fn add_writer(&mut self, fd: RawFd) {
        let slot = self.slot(fd);
        if slot.stream() && !slot.has(WRITER) {
            slot.set(WRITER, true);
            self.writers.push(fd);
        }
    }

    /// Whether a writer is writable before the wait even starts (nothing owed, or an error to
    /// hear): the wait must not sleep then, as epoll's would not over a writable socket.
    fn writer_due(&self) -> bool {
        self.writers.iter().any(|&fd| {
            let slot = &self.slots[fd as usize];
            slot.has(KNOWN | WRITE | STREAM) && (slot.held.out.error.is_some() || slot.held.out.owed() == 0)
        })
    }

    /// Reports the writers that are writable in this wait (see `Out::writable`), and forgets
    /// the ones that no longer want to write.
    fn report_writers(&mut self, events: &mut Vec<Event>) {
        let from = self.events_from;
        let slots = &mut self.slots;
        self.writers.retain(|&fd| {
            let Some(slot) = slots.get_mut(fd as usize).filter(|s| s.has(STREAM | WRITER)) else {
                return false;
            };
            if !slot.has(KNOWN | WRITE) {
                slot.set(WRITER, false);
                return false;
            }
            if slot.held.out.writable() {
                if slot.held.out.progress {
                    slot.held.out.progress = false;
                }
                let error = slot.held.out.error.is_some_and(is_disconnect_errno);
                report(events, from, slot, Report::Write { error });
            }
            true
        });
    }

    /// Keeps a removed stream's output until it is sent (see `Linger`).
    fn linger(&mut self, fd: BorrowedFd<'_>, out: Out, key: u64) {
        let dup = if out.owed() > 0 { fd.try_clone_to_owned() } else { Err(io::ErrorKind::Other.into()) };
        let dup = match dup {
            Ok(d) => Some(d),
            Err(e) if out.owed() > 0 => {
                log::warn!(target: "sockloop", "io_uring: {} bytes owed to a closed channel are lost: {e}", out.owed());
                None
            }
            Err(_) => None,
        };
        if out.busy || dup.is_some() {
            self.lingers.push(Linger { fd: dup, out, key });
            self.send_due = true;
        }
    }

    /// Puts stream `fd` in the ring's file table at its own number (registering the table with
    /// the first stream). Where that is refused the stream names its descriptor in each
    /// operation, which only costs the kernel more.
    fn fix(&mut self, fd: RawFd) {
        if self.own().is_err() {
            return;
        }
        let ring = &self.ring;
        let len = *self.files.get_or_insert_with(|| ring_ops::register_file_table(ring, FILE_TABLE_CAP));
        if (fd as u32) < len && ring_ops::set_file(&self.ring, fd, Some(fd)).is_ok() {
            self.slot(fd).set(FIXED, true);
        }
    }

    /// Takes `fd` out of the file table, if it is there: the table holds a reference to the
    /// file, so without this a closed channel's socket would stay open (no FIN).
    fn unfix(&mut self, fd: RawFd) {
        if !self.slot(fd).has(FIXED) {
            return;
        }
        // First, as a ring rebuilt for this thread has a table of its own (see `rebuild`).
        let owned = self.own();
        if !self.slot(fd).take(FIXED) {
            return;
        }
        if let Err(e) = owned.and_then(|()| ring_ops::set_file(&self.ring, fd, None)) {
            log::warn!(target: "sockloop", "io_uring: descriptor {fd} stays in the file table: {e}");
        }
    }

    fn queue_arm(&mut self, fd: RawFd) {
        let slot = self.slot(fd);
        if !slot.has(QUEUED) {
            slot.set(QUEUED, true);
            self.to_arm.push(fd);
        }
    }

    /// Cancels `fd`'s receive in flight, if any.
    fn cancel_recv(&mut self, fd: RawFd) -> io::Result<bool> {
        let slot = self.slot(fd);
        let seq = slot.recv_seq;
        if !slot.has(STREAM | RECV_ARMED) {
            return Ok(false);
        }
        slot.set(RECV_ARMED, false);
        let target = user_data(KIND_RECV, fd, seq);
        let sqe = opcode::AsyncCancel::new(target).build().user_data(CANCEL_DATA);
        ring_ops::push(&mut self.ring, &sqe)?;
        Ok(true)
    }

    /// Cancels `fd`'s poll in flight, if any (the cancel is submitted with the next enter).
    fn cancel(&mut self, fd: RawFd) -> io::Result<bool> {
        let slot = self.slot(fd);
        if !slot.take(ARMED) {
            return Ok(false);
        }
        let target = poll_data(fd, slot.seq);
        let sqe = opcode::PollRemove::new(target).build().user_data(CANCEL_DATA);
        ring_ops::push(&mut self.ring, &sqe)?;
        Ok(true)
    }

    /// Pushes the polls the next wait needs: the waker's, and one per descriptor that has
    /// interest and nothing in flight.
    fn arm_pending(&mut self) -> io::Result<()> {
        if let Some((fd, false)) = self.waker {
            let sqe = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
                .multi(true)
                .build()
                .user_data(WAKER_DATA);
            ring_ops::push(&mut self.ring, &sqe)?;
            self.waker = Some((fd, true));
        }
        let mut result = Ok(());
        if !self.lingers.is_empty() {
            result = self.arm_lingers();
        }
        let mut todo = std::mem::take(&mut self.to_arm);
        for (i, &fd) in todo.iter().enumerate() {
            let slot = &mut self.slots[fd as usize];
            slot.set(QUEUED, false);
            if slot.wants_recv(INBOX_CAP) {
                slot.recv_seq = slot.recv_seq.wrapping_add(1) & SEQ_MASK;
                let seq = slot.recv_seq;
                slot.set(RECV_ARMED | INFLIGHT, true);
                let sqe = ring_ops::recv_multi(fd, slot.has(FIXED), BUF_GROUP, user_data(KIND_RECV, fd, seq));
                match ring_ops::push(&mut self.ring, &sqe) {
                    Ok(()) => self.recvs += 1,
                    Err(e) => {
                        self.slots[fd as usize].set(RECV_ARMED | INFLIGHT, false);
                        result = Err(e);
                    }
                }
            }
            if let Err(e) = self.arm_send(fd) {
                result = Err(e);
            }
            let slot = &mut self.slots[fd as usize];
            if !slot.has(KNOWN) || slot.has(ARMED) || slot.poll_interest().is_empty() {
                continue;
            }
            if slot.take(LOOK) {
                if let Err(e) = self.push_look(fd) {
                    result = Err(e);
                }
                continue;
            }
            slot.seq = slot.seq.wrapping_add(1) & SEQ_MASK;
            slot.set(ARMED, true);
            let sqe = opcode::PollAdd::new(types::Fd(fd), poll_mask(slot.poll_interest()))
                .build()
                .user_data(poll_data(fd, slot.seq));
            if let Err(e) = ring_ops::push(&mut self.ring, &sqe) {
                // Keep the rest for the next wait.
                self.slots[fd as usize].set(ARMED, false);
                for &rest in &todo[i..] {
                    self.slots[rest as usize].set(QUEUED, true);
                    self.to_arm.push(rest);
                }
                result = Err(e);
                break;
            }
        }
        todo.clear();
        if self.to_arm.is_empty() {
            self.to_arm = todo;
        }
        result
    }

    /// Stream mode on or off for a known descriptor (a connected stream socket): on, the ring
    /// receives its input while read interest lasts and [`take_received`](Uring::take_received)
    /// hands it over; off, what was received and not taken is returned (a channel leaving the
    /// loop carries it).
    #[cfg_attr(not(test), allow(dead_code))] // the channel side is the next step (issue 15)
    pub(crate) fn set_stream(&mut self, fd: BorrowedFd<'_>, on: bool) -> io::Result<Vec<u8>> {
        let raw = fd.as_raw_fd();
        if !self.slot(raw).has(KNOWN) {
            return Err(io::Error::new(io::ErrorKind::NotFound, "set_stream: unknown descriptor"));
        }
        if on == self.slot(raw).stream() {
            return Ok(Vec::new());
        }
        // The poll's mask changes either way (input moves between the poll and the receive).
        self.cancel(raw)?;
        let left = if on {
            if self.bufs.is_none() {
                self.own()?;
                self.bufs = Some(BufRing::new(&self.ring, BUF_COUNT, BUF_SIZE, BUF_GROUP)?);
            }
            let write = self.slot(raw).has(WRITE);
            self.slot(raw).set(STREAM, true);
            self.fix(raw);
            if write {
                self.add_writer(raw);
            }
            Vec::new()
        } else {
            if self.slot(raw).held.out.busy || self.slot(raw).held.out.owed() > 0 {
                // Only `leave_stream` waits for the sends to end.
                return Err(io::Error::other("set_stream: output is still owed on the ring"));
            }
            self.cancel_recv(raw)?;
            self.unfix(raw);
            self.slot(raw).end_stream().map(|held| held.inbox).unwrap_or_default()
        };
        self.queue_arm(raw);
        Ok(left)
    }

    /// Takes a descriptor out of stream mode for good (a channel that starts TLS reads the
    /// socket itself from now on): cancels its receive and waits for the kernel to end it, so
    /// nothing more is taken from the socket, then returns what was received and not handed
    /// over (the oldest first), and whether the stream ended or failed behind it. Input is
    /// watched with polls again from the next wait. Completions reaped meanwhile for other
    /// descriptors are kept for the next wait.
    pub(crate) fn leave_stream(&mut self, fd: BorrowedFd<'_>) -> io::Result<(Vec<u8>, bool, Option<i32>)> {
        let raw = fd.as_raw_fd();
        if !self.slot(raw).stream() {
            return Ok((Vec::new(), false, None));
        }
        self.own()?;
        self.cancel_recv(raw)?;
        // Bounded: each round waits at most a millisecond for a completion (no spin); the
        // cancel of a receive ends it within the first round or two. Output owed on the ring
        // is sent first (the channel writes the socket itself from now on, and its bytes must
        // follow these): that takes as long as the peer takes to read them, up to the bound.
        let mut deferred = std::mem::take(&mut self.deferred);
        self.events_from = 0; // reports go to `deferred`, which holds only undelivered events
        let mut rounds = 0;
        let busy = |u: &mut Uring| {
            let slot = u.slot(raw);
            slot.stream() && (slot.has(INFLIGHT) || slot.held.out.busy || slot.held.out.wants_send())
        };
        while busy(self) && rounds < LEAVE_ROUNDS {
            rounds += 1;
            if let Err(e) = self.arm_send(raw) {
                self.deferred = deferred;
                return Err(e);
            }
            let r = ring_ops::submit_and_wait(&self.ring, Some(Duration::from_millis(1)));
            self.reap(&mut deferred, None, false);
            if let Err(e) = r {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.deferred = deferred;
                    return Err(e);
                }
            }
        }
        // This descriptor's own read events are the caller's business now.
        let token = self.slot(raw).token;
        deferred.retain(|ev| ev.token != token || ev.writable || ev.priority || ev.hangup || ev.error);
        self.deferred = deferred;
        if busy(self) {
            return Err(io::Error::other("io_uring: a cancelled receive or a send did not end"));
        }
        self.due.retain(|&d| d != raw);
        self.cancel(raw)?; // the poll's mask gains the input again
        let eof = self.slot(raw).has(EOF);
        self.unfix(raw);
        let held = self.slot(raw).end_stream().map(|b| *b).unwrap_or_default();
        self.queue_arm(raw);
        // A send that failed: the socket itself reports it to the channel's next write.
        Ok((held.inbox, eof, held.error.map(NonZeroI32::get)))
    }

    /// `recv` for a descriptor in stream mode: copies received bytes into `buf` (the oldest
    /// first), else says the stream ended or failed, else that nothing is there yet.
    #[cfg_attr(not(test), allow(dead_code))] // the channel side is the next step (issue 15)
    pub(crate) fn take_received(&mut self, fd: RawFd, buf: &mut [u8]) -> Received {
        let Some(slot) = self.slots.get_mut(fd as usize).filter(|s| s.has(KNOWN | STREAM)) else {
            return Received::Nothing;
        };
        if !slot.held.inbox.is_empty() && !buf.is_empty() {
            let inbox = &mut slot.held.inbox;
            let n = inbox.len().min(buf.len());
            buf[..n].copy_from_slice(&inbox[..n]);
            inbox.drain(..n);
            if inbox.is_empty() {
                keep_spare(&mut self.spare, inbox);
                slot.held.release_into(&mut self.spare_held, SPARE_INBOXES);
            }
            // Below its bound again: receive again from the next wait.
            if slot.wants_recv(INBOX_CAP) && !slot.has(QUEUED) {
                slot.set(QUEUED, true);
                self.to_arm.push(fd);
            }
            return Received::Bytes(n);
        }
        match (slot.held.error, slot.has(EOF)) {
            (Some(e), _) => Received::Failed(e.get()),
            (None, true) => Received::End,
            (None, false) => Received::Nothing,
        }
    }

    /// Takes a second look at the descriptors in `suspects`: for each, a poll for its interest
    /// and its cancel, submitted together, so only readiness present at that moment completes
    /// it (with `vfs_poll`'s true mask); the answers are reaped as events.
    fn recheck(&mut self, suspects: &mut Vec<RawFd>, events: &mut Vec<Event>) -> io::Result<()> {
        for fd in suspects.drain(..) {
            self.push_look(fd)?;
        }
        ring_ops::flush(&self.ring)?;
        self.reap(events, None, false);
        Ok(())
    }

    /// Pushes a second look at `fd`: a poll for its interest and, right behind it, its cancel.
    fn push_look(&mut self, fd: RawFd) -> io::Result<()> {
        let slot = &mut self.slots[fd as usize];
        slot.seq = slot.seq.wrapping_add(1) & SEQ_MASK;
        let data = user_data(KIND_CHECK, fd, slot.seq);
        let look =
            opcode::PollAdd::new(types::Fd(fd), poll_mask(slot.poll_interest())).build().user_data(data);
        let cancel = opcode::PollRemove::new(data).build().user_data(CANCEL_DATA);
        ring_ops::push(&mut self.ring, &look)?;
        ring_ops::push(&mut self.ring, &cancel)
    }

    /// Turns the completions waiting in the queue into events. A poll completed by a wake-up
    /// reports the wake-up's mask, not the descriptor's state, and a socket's "data arrived"
    /// wake-up says `POLLIN | POLLPRI` whatever arrived; when it is the urgent byte alone,
    /// reading would even lose it (a plain `recv` skips the mark). So a completion that says
    /// `POLLPRI` is not reported: its descriptor goes to `suspects` for a second look.
    ///
    /// With `sends_only` (the end of a pass, see `flush_sends`), only send completions are
    /// applied; the others are held, unapplied, for the next reap, so a pass's events come
    /// from its wait alone (a descriptor is never reported twice in one batch).
    fn reap(&mut self, events: &mut Vec<Event>, mut suspects: Option<&mut Vec<RawFd>>, sends_only: bool) {
        let mut woken = false;
        let mut batch = std::mem::take(&mut self.batch);
        batch.clear();
        batch.append(&mut self.held); // the older ones first
        {
            let mut cq = self.ring.completion();
            cq.sync();
            batch.extend((&mut cq).map(|cqe| (cqe.user_data(), cqe.result(), cqe.flags())));
        }
        for &(data, c_res, c_flags) in &batch {
            if sends_only && data >> KIND_SHIFT != KIND_SEND {
                self.held.push((data, c_res, c_flags));
                continue;
            }
            match data >> KIND_SHIFT {
                KIND_WAKER => {
                    if !cqueue::more(c_flags) {
                        if let Some((_, armed)) = self.waker.as_mut() {
                            *armed = false;
                        }
                    }
                    if !woken && c_res >= 0 {
                        woken = true;
                        events.push(Event {
                            token: super::Selector::WAKE_TOKEN,
                            readable: true,
                            ..Event::default()
                        });
                    }
                }
                KIND_POLL => {
                    let fd = (data & 0xffff_ffff) as u32 as RawFd;
                    let seq = (data >> 32) as u32 & SEQ_MASK;
                    let Some(slot) = self.slots.get_mut(fd as usize) else { continue };
                    if !slot.has(KNOWN | ARMED) || slot.seq != seq {
                        continue; // stale: cancelled, superseded, or an earlier descriptor
                    }
                    slot.set(ARMED, false);
                    let res = c_res;
                    let hint = res > 0 && res & i32::from(libc::POLLPRI) != 0;
                    match suspects.as_deref_mut() {
                        Some(list) if hint => list.push(fd),
                        // A hint that arrived during the second looks: not reported; the re-arm
                        // at the next wait tells again (level-triggered, so nothing is lost).
                        None if hint => {}
                        // ECANCELED: cancelled by the kernel, not by us: armed again below.
                        _ if res == -libc::ECANCELED || res == 0 => {}
                        _ => events.push(event(slot.token, res)),
                    }
                    if !slot.poll_interest().is_empty() && !slot.has(QUEUED) {
                        slot.set(QUEUED, true);
                        self.to_arm.push(fd);
                    }
                }
                KIND_RECV => {
                    let fd = (data & 0xffff_ffff) as u32 as RawFd;
                    let seq = (data >> 32) as u32 & SEQ_MASK;
                    let (res, flags) = (c_res, c_flags);
                    let more = cqueue::more(flags);
                    if !more {
                        self.recvs = self.recvs.saturating_sub(1);
                    }
                    // This stream's receive, live or cancelled: what it took from the socket is
                    // the stream's, whatever the channel wants now (dropping it would lose bytes).
                    let live = self
                        .slots
                        .get(fd as usize)
                        .is_some_and(|s| s.has(KNOWN | STREAM | INFLIGHT) && s.recv_seq == seq);
                    // A completion that carries a buffer gives it back at once, stale or not.
                    if let (Some(bid), Some(bufs)) = (cqueue::buffer_select(flags), self.bufs.as_mut()) {
                        if live && res > 0 {
                            let slot = &mut self.slots[fd as usize];
                            slot.held.make(&mut self.spare_held);
                            let inbox = &mut slot.held.inbox;
                            if inbox.capacity() == 0 {
                                *inbox = self.spare.pop().unwrap_or_default();
                            }
                            inbox.extend_from_slice(bufs.data(bid, res as usize));
                            if slot.count_took() {
                                self.took_in_wait.push(fd);
                            }
                        }
                        bufs.give_back(bid);
                    }
                    if !live {
                        continue; // stale: cancelled, or an earlier descriptor with this number
                    }
                    let slot = &mut self.slots[fd as usize];
                    match res {
                        0 => slot.set(EOF, true),
                        // ENOBUFS: the ring ran dry; re-armed at the next wait, by which time
                        // every buffer of this reap is back.
                        n if n > 0 || n == -libc::ENOBUFS || n == -libc::ECANCELED => {}
                        e => slot.held.error = NonZeroI32::new(-e),
                    }
                    if !more {
                        slot.set(RECV_ARMED | INFLIGHT, false);
                    }
                    // Reported only while the channel wants input (readable() false: no event).
                    if slot.has(READ) && slot.has_input() {
                        report(events, self.events_from, slot, Report::Read);
                    }
                    // Over its inbox bound, or past its share of the buffer ring in this wait
                    // (the fairness bound): cancelled at the end of the wait.
                    let greedy = slot.took() >= FAIR_BUFS;
                    if more && slot.has(RECV_ARMED) && (slot.held.inbox.len() >= INBOX_CAP || greedy) {
                        self.over.push(fd);
                    } else if !more && !slot.has(QUEUED) {
                        slot.set(QUEUED, true);
                        self.to_arm.push(fd);
                    }
                }
                KIND_SEND => {
                    self.sends = self.sends.saturating_sub(1);
                    let res = c_res;
                    if let Some(l) = self.lingers.iter_mut().find(|l| l.out.busy && l.key == data) {
                        l.out.completed(res);
                        self.send_due = true; // its next send, or its close
                        continue;
                    }
                    let fd = (data & 0xffff_ffff) as u32 as RawFd;
                    let seq = (data >> 32) as u32 & SEQ_MASK;
                    // Live only for the stream that pushed it: a newcomer on the same number
                    // has a later sequence.
                    let Some(slot) = self
                        .slots
                        .get_mut(fd as usize)
                        .filter(|s| s.has(KNOWN | STREAM) && s.send_seq == seq && s.held.out.busy)
                    else {
                        continue;
                    };
                    let out = &mut slot.held.out;
                    out.completed(res);
                    out.progress = true;
                    if out.owed() == 0 {
                        keep_spare(&mut self.spare, &mut out.flight); // the next inbox's buffer
                    }
                    if out.idle() {
                        // All sent: the stream is writable by `owed() == 0` from here on.
                        slot.held.release_into(&mut self.spare_held, SPARE_INBOXES);
                    } else if out.wants_send() || out.shut {
                        self.send_due = true; // the rest of a short send goes at the pass's end
                        if !slot.has(QUEUED) {
                            slot.set(QUEUED, true);
                            self.to_arm.push(fd);
                        }
                    }
                }
                KIND_CHECK => {
                    let fd = (data & 0xffff_ffff) as u32 as RawFd;
                    let seq = (data >> 32) as u32 & SEQ_MASK;
                    let Some(slot) = self.slots.get_mut(fd as usize) else { continue };
                    let res = c_res;
                    // Stale also when a poll was armed since (it has a later sequence).
                    if !slot.has(KNOWN) || slot.seq != seq {
                        continue;
                    }
                    if res > 0 {
                        events.push(event(slot.token, res));
                    }
                    // Ready or not, the descriptor is watched again from the next wait.
                    if !slot.poll_interest().is_empty() && !slot.has(QUEUED) && !slot.has(ARMED) {
                        slot.set(QUEUED, true);
                        self.to_arm.push(fd);
                    }
                }
                _ => {}
            }
        }
        self.batch = batch;
    }
}

/// Empties `inbox` for good: its buffer is kept for the next stream that receives, while there
/// is room among the spares, else freed (a stream that holds nothing holds no buffer).
fn keep_spare(spares: &mut Vec<Vec<u8>>, inbox: &mut Vec<u8>) {
    let mut buf = std::mem::take(inbox);
    if spares.len() < SPARE_INBOXES && (1..=INBOX_CAP).contains(&buf.capacity()) {
        buf.clear();
        spares.push(buf);
    }
}

/// What a stream's report says.
#[derive(Clone, Copy)]
enum Report {
    /// Input (or its end, or an error) is there to take.
    Read,
    /// Room for output; `error` when a send failed with a disconnect (as epoll's `EPOLLERR`).
    Write { error: bool },
}

/// Adds a stream's report to this wait's events: one event per stream and wait, which a read
/// and a write report share.
///
/// `from`: where the current wait's events begin in `events`. An event at the stream's
/// `ev_at` index from there on with the stream's token is this wait's event for it (only a
/// report for this stream, or a completion for its descriptor, puts that token there), so no
/// per-wait stamp is needed to tell it from an older wait's.
fn report(events: &mut Vec<Event>, from: usize, slot: &mut Slot, what: Report) {
    let token = slot.token;
    let at = slot.ev_at as usize;
    let fresh = at < from || events.get(at).is_none_or(|e| e.token != token);
    if fresh {
        slot.ev_at = u16::try_from(events.len()).unwrap_or(u16::MAX);
        events.push(Event { token, ..Event::default() });
    }
    let ev = if fresh { events.last_mut() } else { events.get_mut(at) };
    let Some(ev) = ev else { return };
    match what {
        Report::Read => ev.readable = true,
        Report::Write { error } => {
            ev.writable = true;
            ev.error |= error;
        }
    }
}

/// Whether a send's errno means the peer is gone (the channel's `handle_close` follows, as
/// after a direct send's).
fn is_disconnect_errno(errno: i32) -> bool {
    crate::errors::is_disconnect(&io::Error::from_raw_os_error(errno))
}

fn poll_mask(interest: Interest) -> u32 {
    let mut m = 0;
    if interest.read {
        m |= libc::POLLIN | libc::POLLPRI;
    }
    if interest.write {
        m |= libc::POLLOUT;
    }
    m as u32
}

/// The event for a poll's result: its `revents`, or a negative errno.
fn event(token: u64, res: i32) -> Event {
    if res < 0 {
        // The poll itself failed (the descriptor cannot be polled): say so as an error, so the
        // loop gives the channel its error path rather than waiting forever.
        return Event { token, error: true, invalid: res == -libc::EBADF, ..Event::default() };
    }
    Event::from_poll_bits(token, res as i16)
}

impl Poller for Uring {
    fn set_interest(&mut self, fd: BorrowedFd<'_>, token: u64, interest: Interest) -> io::Result<()> {
        let raw = fd.as_raw_fd();
        if !self.slot(raw).has(KNOWN) {
            if !crate::sys::is_open(fd) {
                return Err(super::not_open());
            }
            let slot = self.slot(raw);
            slot.set(KNOWN, true);
            slot.set(ARMED, false);
        }
        let slot = self.slot(raw);
        let changed = slot.interest() != interest || slot.token != token;
        slot.token = token;
        slot.set_interest(interest);
        if changed {
            self.slot(raw).set(LOOK, false);
            if !interest.read {
                self.cancel_recv(raw)?;
            } else if self.slot(raw).has_input() {
                // Input received before readable() went false: report it, as a level-triggered
                // backend reports data still in the socket.
                self.due.push(raw);
            }
            self.cancel(raw)?;
            if !interest.is_empty() {
                self.queue_arm(raw);
            }
            if interest.write && self.slot(raw).stream() {
                self.add_writer(raw);
            }
        }
        Ok(())
    }

    fn remove(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let raw = fd.as_raw_fd();
        if !self.slots.get(raw as usize).is_some_and(|s| s.has(KNOWN)) {
            return Ok(());
        }
        let cancelled = self.cancel(raw)? | self.cancel_recv(raw)?;
        let slot = self.slot(raw);
        let key = user_data(KIND_SEND, raw, slot.send_seq);
        let held = slot.end_stream(); // FIXED stays, for `unfix` below
        slot.set(KNOWN | LOOK, false);
        slot.set_interest(Interest::NONE);
        if let Some(mut held) = held.filter(|h| h.out.busy || h.out.owed() > 0) {
            // The `Vec`s move out of the box; their heap blocks (one may be in flight) stay.
            self.linger(fd, std::mem::take(&mut held.out), key);
        }
        // An entry pushed and not yet submitted names this descriptor: submit it while the
        // number is still this socket's (the caller closes it next).
        let unsubmitted = !self.ring.submission().is_empty();
        if cancelled || unsubmitted {
            // The poll holds the file: let the kernel drop it now, before the caller closes the
            // descriptor, so closing it really closes the socket. The completions stay queued
            // for the next wait, which drops them as stale.
            self.own()?;
            ring_ops::flush(&self.ring)?;
        }
        // After the flush: an entry just submitted may name the table's entry.
        self.unfix(raw);
        Ok(())
    }

    fn set_stream(&mut self, fd: BorrowedFd<'_>) -> io::Result<bool> {
        Uring::set_stream(self, fd, true).map(|_| true)
    }

    fn stage_send(&mut self, fd: RawFd, staged: &mut Vec<u8>, shut: bool) -> (usize, Option<i32>) {
        let Some(slot) = self.slots.get_mut(fd as usize).filter(|s| s.has(KNOWN | STREAM)) else {
            return (0, None);
        };
        if !staged.is_empty() {
            slot.held.make(&mut self.spare_held);
            slot.held.out.stage(staged);
        }
        if shut {
            slot.held.out.shut = true;
        }
        let out = &slot.held.out;
        let queue = out.wants_send() || (out.shut && !out.busy);
        let state = (out.owed(), out.error);
        if queue {
            self.send_due = true;
            if !slot.has(QUEUED) {
                slot.set(QUEUED, true);
                self.to_arm.push(fd);
            }
            self.send_batch.push(fd);
            if self.send_batch.len() >= SEND_BATCH {
                if let Err(e) = self.push_send_batch() {
                    log::debug!(target: "sockloop", "pushing a batch of sends failed (the pass's end retries): {e}");
                }
            }
        }
        state
    }

    fn flush_sends(&mut self) -> io::Result<()> {
        // The sends that complete at once are reaped here (other completions wait for the
        // next wait's reap): a short one's rest goes in the next round, so when this returns every stream
        // that owes bytes has its send in the kernel (or the socket is full and it waits
        // there), and a linger that is done closes its socket without another pass (a loop
        // that stops when its map empties still sends the FIN). Bounded: a few rounds.
        self.send_batch.clear(); // their sends are pushed below with the rest
        for _ in 0..FLUSH_ROUNDS {
            if !std::mem::take(&mut self.send_due) {
                break;
            }
            self.own()?;
            self.arm_pending()?;
            ring_ops::flush(&self.ring)?;
            self.reap(&mut Vec::new(), None, true);
        }
        if !self.lingers.is_empty() {
            self.arm_lingers()?; // drops the lingers that are done
        }
        Ok(())
    }

    fn owes_output(&self) -> bool {
        // As `arm_lingers` keeps them: a linger that is done is dropped by the next flush.
        self.lingers.iter().any(|l| l.out.busy || (l.fd.is_some() && l.out.wants_send()))
    }

    fn leave_stream(&mut self, fd: BorrowedFd<'_>) -> io::Result<(Vec<u8>, bool, Option<i32>)> {
        Uring::leave_stream(self, fd)
    }

    fn move_received(&mut self, fd: RawFd, into: &mut Vec<u8>) -> (bool, Option<i32>) {
        let Some(slot) = self.slots.get_mut(fd as usize).filter(|s| s.has(KNOWN | STREAM)) else {
            return (false, None);
        };
        if !slot.held.inbox.is_empty() {
            if into.is_empty() {
                std::mem::swap(into, &mut slot.held.inbox); // handed over without a copy
            } else {
                into.extend_from_slice(&slot.held.inbox);
            }
            keep_spare(&mut self.spare, &mut slot.held.inbox);
            slot.held.release_into(&mut self.spare_held, SPARE_INBOXES);
        }
        let out = (slot.has(EOF), slot.held.error.map(NonZeroI32::get));
        if slot.wants_recv(INBOX_CAP) && !slot.has(QUEUED) {
            slot.set(QUEUED, true);
            self.to_arm.push(fd);
        }
        out
    }

    fn watch_waker(&mut self, fd: BorrowedFd<'_>, _token: u64) -> io::Result<bool> {
        self.waker = Some((fd.as_raw_fd(), false));
        Ok(false)
    }

    fn wait(&mut self, events: &mut Vec<Event>, mut timeout: Option<Duration>) -> io::Result<()> {
        self.own()?;
        self.send_batch.clear(); // their sends go with this wait's arming
        self.arm_pending()?;
        let first = events.len();
        self.events_from = first;
        for fd in self.took_in_wait.drain(..) {
            if let Some(slot) = self.slots.get_mut(fd as usize) {
                slot.reset_took(); // a new wait: every stream has its share again
            }
        }
        if !self.deferred.is_empty() || !self.due.is_empty() || !self.held.is_empty() || self.writer_due() {
            timeout = Some(Duration::ZERO); // something to report already: do not sleep
        }
        let result = match timeout {
            Some(d) if d.is_zero() => ring_ops::submit_now(&mut self.ring, self.flags.taskrun_flag),
            _ => ring_ops::submit_and_wait(&self.ring, timeout),
        };
        events.append(&mut self.deferred);
        let mut suspects = std::mem::take(&mut self.suspects);
        self.reap(events, Some(&mut suspects), false);
        for fd in std::mem::take(&mut self.due) {
            let Some(slot) = self.slots.get_mut(fd as usize).filter(|s| s.has(KNOWN | READ)) else {
                continue;
            };
            if slot.has_input() {
                report(events, first, slot, Report::Read);
            }
        }
        if !self.writers.is_empty() {
            self.report_writers(events);
        }
        let mut checked = Ok(());
        if events.len() > first {
            // The loop has work: the second looks ride on the next wait's enter (they complete
            // within it, so it does not block on them), instead of costing one of their own.
            for fd in suspects.drain(..) {
                self.slots[fd as usize].set(LOOK, true);
            }
        } else if !suspects.is_empty() {
            // Nothing else to report: look now, so a wait returns only with something to do.
            checked = self.recheck(&mut suspects, events);
        }
        self.suspects = suspects;
        let mut over = std::mem::take(&mut self.over);
        for fd in over.drain(..) {
            checked = checked.and(self.cancel_recv(fd).map(drop));
        }
        self.over = over;
        result.and(checked)
    }
}

impl Drop for Uring {
    /// A receive in flight may still write into the buffer ring, and a send in flight reads
    /// its `Out::flight`: cancel them all and wait for their last completions before the
    /// buffers are freed (after `ring`, by field order). If that cannot be done (another
    /// thread owns a single-issuer ring, or the kernel is slow), the buffers are left
    /// allocated rather than freed under an operation.
    fn drop(&mut self) {
        if !self.held.is_empty() {
            self.reap(&mut Vec::new(), None, false); // their receives may be the last ones
        }
        if (self.bufs.is_none() || self.recvs == 0) && self.sends == 0 && self.lingers.is_empty() {
            return;
        }
        let mine = !self.flags.single_issuer || self.owner == Some(std::thread::current().id());
        if mine {
            self.finish_sends();
            self.cancel_all();
            let deadline = std::time::Instant::now() + Duration::from_secs(1);
            while (self.recvs > 0 || self.sends > 0) && std::time::Instant::now() < deadline {
                if ring_ops::submit_and_wait(&self.ring, Some(Duration::from_millis(10))).is_err() {
                    break;
                }
                let mut cq = self.ring.completion();
                cq.sync();
                for cqe in &mut cq {
                    match cqe.user_data() >> KIND_SHIFT {
                        KIND_RECV if !cqueue::more(cqe.flags()) => self.recvs = self.recvs.saturating_sub(1),
                        KIND_SEND => self.sends = self.sends.saturating_sub(1),
                        _ => {}
                    }
                }
            }
            if self.recvs == 0 && self.sends == 0 {
                return; // every operation ended: the buffers are freed after the ring
            }
        }
        if self.sends > 0 {
            let outs = self.slots.iter_mut().filter_map(|s| s.held.out_mut());
            for out in outs.chain(self.lingers.iter_mut().map(|l| &mut l.out)) {
                if out.busy {
                    std::mem::forget(std::mem::take(&mut out.flight));
                }
            }
        }
        if self.recvs > 0 {
            if let Some(bufs) = self.bufs.take() {
                std::mem::forget(bufs);
            }
        }
    }
}

impl Uring {
    /// Gives the sends owed (mostly lingers: channels closed as the loop was dropped) a short
    /// while to finish, as the kernel would have sent a socket buffer's bytes (for `Drop`).
    fn finish_sends(&mut self) {
        let grace = std::time::Instant::now() + SEND_GRACE;
        let mut scratch = Vec::new();
        let owed = |u: &Uring| u.sends > 0 || u.lingers.iter().any(|l| l.fd.is_some() && l.out.wants_send());
        while owed(self) && std::time::Instant::now() < grace {
            if self.arm_pending().is_err()
                || ring_ops::submit_and_wait(&self.ring, Some(Duration::from_millis(10))).is_err()
            {
                return;
            }
            self.reap(&mut scratch, None, false);
            scratch.clear();
        }
        let _ = self.arm_pending(); // drops the lingers that are done (closing their sockets)
    }

    /// Cancels every receive and send in flight (for `Drop`).
    fn cancel_all(&mut self) {
        for fd in 0..self.slots.len() {
            let _ = self.cancel_recv(fd as RawFd);
            let slot = &self.slots[fd];
            if slot.stream() && slot.held.out.busy {
                let target = user_data(KIND_SEND, fd as RawFd, slot.send_seq);
                let _ = ring_ops::push(
                    &mut self.ring,
                    &opcode::AsyncCancel::new(target).build().user_data(CANCEL_DATA),
                );
            }
        }
        let keys: Vec<u64> = self.lingers.iter().filter(|l| l.out.busy).map(|l| l.key).collect();
        for key in keys {
            let _ =
                ring_ops::push(&mut self.ring, &opcode::AsyncCancel::new(key).build().user_data(CANCEL_DATA));
        }
    }
}

#[cfg(test)]
mod tests {
    //! The ring-side receive path, at the poller's level (the channel side is the next step).
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;
    use std::time::Instant;

    const DEADLINE: Duration = Duration::from_secs(10);

    #[test]
    fn per_descriptor_state_stays_small() {
        // Memory per idle connection (issue 15): an idle stream is its slot alone (its box
        // comes with input or output and goes when it holds nothing).
        assert!(std::mem::size_of::<Slot>() <= 32, "Slot is {} B", std::mem::size_of::<Slot>());
    }

    fn uring() -> Option<Uring> {
        Uring::new().ok() // where the kernel refuses io_uring there is nothing to test
    }

    /// A Unix stream pair whose first end `u` watches for input (token 1) in stream mode.
    fn reading_stream(u: &mut Uring) -> (UnixStream, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        u.set_interest(a.as_fd(), 1, Interest::READ).unwrap();
        u.set_stream(a.as_fd(), true).unwrap();
        (a, b)
    }

    /// Waits until a readable event for `token` (failing after DEADLINE).
    fn readable(u: &mut Uring, token: u64) {
        let end = Instant::now() + DEADLINE;
        let mut events = Vec::new();
        loop {
            events.clear();
            u.wait(&mut events, Some(Duration::from_millis(50))).unwrap();
            if events.iter().any(|e| e.token == token && e.readable) {
                return;
            }
            assert!(Instant::now() < end, "no read event for {token}");
        }
    }

    /// Flushes the pass's sends and waits until `fd`'s stream gave its box up: everything sent
    /// and completed (failing after DEADLINE).
    fn until_sent(u: &mut Uring, fd: RawFd) {
        u.flush_sends().unwrap();
        let end = Instant::now() + DEADLINE;
        let mut events = Vec::new();
        while u.slots[fd as usize].held.allocated() {
            assert!(Instant::now() < end, "the send never completed");
            events.clear();
            u.wait(&mut events, Some(Duration::from_millis(20))).unwrap();
        }
    }

    /// Waits with a zero timeout only, until `token` is reported readable (DEADLINE).
    fn readable_without_blocking(u: &mut Uring, token: u64) {
        let end = Instant::now() + DEADLINE;
        let mut events = Vec::new();
        while !events.iter().any(|e: &Event| e.token == token && e.readable) {
            assert!(Instant::now() < end, "zero-timeout waits never reported {token}");
            events.clear();
            u.wait(&mut events, Some(Duration::ZERO)).unwrap();
        }
    }

    #[test]
    fn waits_that_must_not_block_still_collect_what_arrives_after_the_last_enter() {
        // A zero-timeout wait skips the enter when nothing is queued and the kernel marked no
        // pending work: bytes that arrive after the last enter must mark it, for a poll (plain
        // mode) and for a multishot receive (stream mode) alike.
        let Some(mut u) = uring() else { return };
        let (a, mut b) = UnixStream::pair().unwrap();
        let (c, mut d) = UnixStream::pair().unwrap();
        u.set_interest(a.as_fd(), 1, Interest::READ).unwrap();
        u.set_interest(c.as_fd(), 2, Interest::READ).unwrap();
        assert!(u.set_stream(c.as_fd(), true).unwrap().is_empty());
        let mut events = Vec::new();
        for _ in 0..3 {
            u.wait(&mut events, Some(Duration::ZERO)).unwrap(); // arms both, then finds nothing
        }
        assert!(events.is_empty(), "nothing was sent yet: {events:?}");
        b.write_all(b"poll").unwrap();
        readable_without_blocking(&mut u, 1);
        d.write_all(b"ring").unwrap();
        readable_without_blocking(&mut u, 2);
        let mut buf = [0u8; 8];
        assert_eq!(u.take_received(c.as_raw_fd(), &mut buf), Received::Bytes(4));
        assert_eq!(&buf[..4], b"ring");
        u.remove(a.as_fd()).unwrap();
        u.remove(c.as_fd()).unwrap();
    }

    /// Whether the peer of `b` sees the end of the stream within DEADLINE.
    fn sees_end(b: &mut UnixStream) -> bool {
        b.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut buf = [0u8; 16];
        matches!(b.read(&mut buf), Ok(0))
    }

    #[test]
    fn a_stream_is_in_the_file_table_only_while_in_stream_mode() {
        // The table holds a reference to the file: once a stream leaves it (stream mode off,
        // or removed), closing the descriptor must close the socket, and the peer sees the end.
        let Some(mut u) = uring() else { return };
        let (a, mut b) = reading_stream(&mut u);
        if u.files == Some(0) {
            return; // this kernel refused a file table: nothing to check
        }
        assert!(u.slots[a.as_raw_fd() as usize].has(FIXED), "a stream goes in the table");
        b.write_all(b"in").unwrap();
        readable(&mut u, 1);
        let mut buf = [0u8; 4];
        assert_eq!(u.take_received(a.as_raw_fd(), &mut buf), Received::Bytes(2), "a fixed receive");
        u.remove(a.as_fd()).unwrap();
        assert!(!u.slots[a.as_raw_fd() as usize].has(FIXED));
        drop(a);
        assert!(sees_end(&mut b), "removed and closed: the socket is closed");

        let (c, mut d) = UnixStream::pair().unwrap();
        u.set_interest(c.as_fd(), 2, Interest::READ).unwrap();
        u.set_stream(c.as_fd(), true).unwrap();
        assert!(u.slots[c.as_raw_fd() as usize].has(FIXED));
        u.set_stream(c.as_fd(), false).unwrap();
        assert!(!u.slots[c.as_raw_fd() as usize].has(FIXED), "stream mode off: out of the table");
        u.remove(c.as_fd()).unwrap();
        drop(c);
        assert!(sees_end(&mut d));
    }

    #[test]
    fn stream_input_is_received_on_the_ring_and_handed_over() {
        let Some(mut u) = uring() else { return };
        let (a, mut b) = UnixStream::pair().unwrap();
        u.set_interest(a.as_fd(), 1, Interest::READ).unwrap();
        assert!(u.set_stream(a.as_fd(), true).unwrap().is_empty());
        b.write_all(b"hello").unwrap();
        readable(&mut u, 1);
        let mut buf = [0u8; 3];
        assert_eq!(u.take_received(a.as_raw_fd(), &mut buf), Received::Bytes(3));
        assert_eq!(&buf, b"hel");
        assert_eq!(u.take_received(a.as_raw_fd(), &mut buf), Received::Bytes(2));
        assert_eq!(&buf[..2], b"lo");
        assert_eq!(u.take_received(a.as_raw_fd(), &mut buf), Received::Nothing, "would block");
        drop(b);
        readable(&mut u, 1);
        assert_eq!(u.take_received(a.as_raw_fd(), &mut buf), Received::End);
        u.remove(a.as_fd()).unwrap();
    }

    #[test]
    fn a_stream_holds_a_box_only_while_it_holds_input_or_output() {
        // What keeps an idle connection at its slot alone (issue 15's memory bound).
        let Some(mut u) = uring() else { return };
        let (a, mut b) = reading_stream(&mut u);
        let fd = a.as_raw_fd();
        assert!(!u.slots[fd as usize].held.allocated(), "a fresh stream holds nothing");
        b.write_all(b"ping").unwrap();
        readable(&mut u, 1);
        assert!(u.slots[fd as usize].held.allocated(), "received bytes are held");
        let mut buf = [0u8; 8];
        assert_eq!(u.take_received(fd, &mut buf), Received::Bytes(4));
        assert!(!u.slots[fd as usize].held.allocated(), "handed out: the box went");
        let mut staged = b"pong".to_vec();
        u.stage_send(fd, &mut staged, false);
        assert!(u.slots[fd as usize].held.allocated(), "output owed is held");
        until_sent(&mut u, fd);
        b.read_exact(&mut buf[..4]).unwrap();
        assert_eq!(&buf[..4], b"pong");
        u.remove(a.as_fd()).unwrap();
    }

    #[test]
    fn a_busy_stream_reuses_spare_boxes_and_buffers_and_an_idle_one_holds_none() {
        // Round trips take the box and the inbox's buffer from the spares and give them back
        // (no allocation per round trip); a spare box holds no buffer, and no empty vector is
        // kept as a buffer.
        let Some(mut u) = uring() else { return };
        let (a, mut b) = reading_stream(&mut u);
        let fd = a.as_raw_fd();
        let mut buf = [0u8; 8];
        for round in 0..3 {
            b.write_all(b"ping").unwrap();
            readable(&mut u, 1);
            let mut input = Vec::new();
            assert_eq!(u.move_received(fd, &mut input), (false, None));
            assert_eq!(input, b"ping");
            let mut staged = b"pong".to_vec();
            u.stage_send(fd, &mut staged, false);
            until_sent(&mut u, fd);
            b.read_exact(&mut buf[..4]).unwrap();
            assert_eq!(&buf[..4], b"pong");
            assert!(!u.slots[fd as usize].held.allocated(), "idle again: no box");
            assert_eq!(u.spare_held.len(), 1, "round {round}: one box, reused");
            assert!(u.spare.iter().all(|v| v.capacity() > 0), "no empty vector kept as a buffer");
            assert!(!u.spare.is_empty(), "the sent buffer is kept for the next receive");
        }
        let held = &u.spare_held[0];
        assert!(held.inbox.capacity() == 0 && held.out.flight.capacity() == 0, "a spare box holds no buffer");
        u.remove(a.as_fd()).unwrap();
    }

    #[test]
    fn no_read_interest_means_nothing_is_taken_from_the_socket() {
        let Some(mut u) = uring() else { return };
        let (a, mut b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        u.set_interest(a.as_fd(), 1, Interest::READ).unwrap();
        u.set_stream(a.as_fd(), true).unwrap();
        let mut events = Vec::new();
        u.wait(&mut events, Some(Duration::ZERO)).unwrap(); // the receive is armed
        u.set_interest(a.as_fd(), 1, Interest::NONE).unwrap();
        u.wait(&mut events, Some(Duration::ZERO)).unwrap(); // and cancelled
        b.write_all(&[7u8; 1000]).unwrap();
        for _ in 0..3 {
            events.clear();
            u.wait(&mut events, Some(Duration::from_millis(30))).unwrap();
            assert!(events.is_empty(), "{events:?}");
        }
        let mut buf = [0u8; 2000];
        assert_eq!(u.take_received(a.as_raw_fd(), &mut buf), Received::Nothing);
        assert_eq!((&a).read(&mut buf).unwrap(), 1000, "the bytes stayed in the socket");
        u.remove(a.as_fd()).unwrap();
    }

    #[test]
    fn the_inbox_is_bounded_and_nothing_is_lost_or_reordered() {
        let Some(mut u) = uring() else { return };
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        u.set_interest(a.as_fd(), 1, Interest::READ).unwrap();
        u.set_stream(a.as_fd(), true).unwrap();
        let data: Vec<u8> = (0..=250u8).cycle().take(1 << 20).collect();
        let mut sent = 0;
        let mut events = Vec::new();
        let end = Instant::now() + DEADLINE;
        // Fill until the socket refuses more while the ring receives without anyone taking.
        while sent < data.len() && Instant::now() < end {
            match (&b).write(&data[sent..]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    events.clear();
                    u.wait(&mut events, Some(Duration::from_millis(20))).unwrap();
                    let inbox = u.slots[a.as_raw_fd() as usize].held.inbox.len();
                    assert!(inbox <= INBOX_CAP + (BUF_COUNT as usize) * BUF_SIZE as usize, "{inbox}");
                    if inbox >= INBOX_CAP {
                        break; // bounded: the rest waits in the socket
                    }
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert!(sent < data.len(), "the writer was never held back");
        // Now take everything: the inbox first, then the ring receives the rest.
        let mut got = Vec::new();
        let mut buf = [0u8; 8192];
        while got.len() < sent {
            assert!(Instant::now() < end, "took {} of {sent}", got.len());
            match u.take_received(a.as_raw_fd(), &mut buf) {
                Received::Bytes(n) => got.extend_from_slice(&buf[..n]),
                Received::Nothing => {
                    events.clear();
                    u.wait(&mut events, Some(Duration::from_millis(20))).unwrap();
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(got, data[..sent], "lost or reordered bytes");
        u.remove(a.as_fd()).unwrap();
    }

    #[test]
    fn leaving_stream_mode_hands_over_every_byte_in_order_then_polls_again() {
        let Some(mut u) = uring() else { return };
        let (a, mut b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        u.set_interest(a.as_fd(), 1, Interest::READ).unwrap();
        u.set_stream(a.as_fd(), true).unwrap();
        b.write_all(b"abc").unwrap();
        readable(&mut u, 1);
        b.write_all(b"def").unwrap();
        let (mut got, end, error) = u.leave_stream(a.as_fd()).unwrap();
        assert!(!end && error.is_none());
        assert_eq!(u.recvs, 0, "the receive ended before leave_stream returned");
        let mut buf = [0u8; 16];
        if let Ok(n) = (&a).read(&mut buf) {
            got.extend_from_slice(&buf[..n]); // what the ring had not taken is in the socket
        }
        assert_eq!(got, b"abcdef", "lost or reordered bytes");
        // Input is polled again: new data is a readiness event, not a receive.
        b.write_all(b"g").unwrap();
        readable(&mut u, 1);
        assert_eq!((&a).read(&mut buf).unwrap(), 1);
        u.remove(a.as_fd()).unwrap();
    }

    #[test]
    fn input_held_while_reading_was_off_is_reported_when_it_comes_back() {
        let Some(mut u) = uring() else { return };
        let (a, mut b) = reading_stream(&mut u);
        b.write_all(b"held").unwrap();
        readable(&mut u, 1);
        u.set_interest(a.as_fd(), 1, Interest::NONE).unwrap();
        let mut events = Vec::new();
        u.wait(&mut events, Some(Duration::ZERO)).unwrap();
        assert!(events.iter().all(|e| e.token != 1), "no event without read interest: {events:?}");
        u.set_interest(a.as_fd(), 1, Interest::READ).unwrap();
        // No new data: the held bytes alone are reported, and the wait does not sleep for them.
        let t0 = Instant::now();
        events.clear();
        u.wait(&mut events, Some(Duration::from_secs(5))).unwrap();
        assert!(events.iter().any(|e| e.token == 1 && e.readable), "{events:?}");
        assert!(t0.elapsed() < Duration::from_secs(1));
        let mut buf = [0u8; 8];
        assert_eq!(u.take_received(a.as_raw_fd(), &mut buf), Received::Bytes(4));
        assert_eq!(&buf[..4], b"held");
        u.remove(a.as_fd()).unwrap();
    }

    #[test]
    fn a_receive_past_its_share_of_a_wait_is_cancelled() {
        let Some(mut u) = uring() else { return };
        let (a, b) = UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        // More than one wait's share (32 KiB) but less than the inbox bound (64 KiB) waits in
        // the socket before the receive is armed: only the fairness bound stops this receive.
        let queued = 48 << 10;
        (&b).write_all(&vec![9u8; queued]).unwrap();
        u.set_interest(a.as_fd(), 1, Interest::READ).unwrap();
        u.set_stream(a.as_fd(), true).unwrap();
        readable(&mut u, 1);
        let st = &u.slots[a.as_raw_fd() as usize];
        assert!(st.took() >= FAIR_BUFS, "one wait took {} buffers: the case proves nothing", st.took());
        assert!(st.held.inbox.len() < INBOX_CAP, "the inbox bound alone would have stopped it");
        assert!(!st.has(RECV_ARMED), "a receive past its share ({} buffers) was left running", st.took());
        // Taking the input arms it again: nothing is lost, the rest comes in later passes.
        let mut got = 0;
        let mut buf = [0u8; 65536];
        let end = Instant::now() + DEADLINE;
        while got < queued {
            assert!(Instant::now() < end, "took {got} of {queued}");
            match u.take_received(a.as_raw_fd(), &mut buf) {
                Received::Bytes(n) => got += n,
                Received::Nothing => {
                    let mut events = Vec::new();
                    u.wait(&mut events, Some(Duration::from_millis(20))).unwrap();
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(got, queued);
        u.remove(a.as_fd()).unwrap();
    }

    #[test]
    fn sends_are_bounded_ordered_and_reported_writable_on_progress() {
        let Some(mut u) = uring() else { return };
        let (a, b) = UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        u.set_interest(a.as_fd(), 1, Interest { read: false, write: true }).unwrap();
        u.set_stream(a.as_fd(), true).unwrap();
        let fd = a.as_raw_fd();
        let data: Vec<u8> = (0..(1usize << 20)).map(|i| (i % 251) as u8).collect();
        let (mut staged, mut at, mut got) = (Vec::new(), 0, Vec::new());
        let mut events = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        let end = Instant::now() + DEADLINE;
        while got.len() < data.len() {
            assert!(Instant::now() < end, "got {} of {}", got.len(), data.len());
            // Stage what the bound lets through (as a channel's `send` would).
            let (owed, error) = u.stage_send(fd, &mut staged, false);
            assert!(error.is_none());
            assert!(owed <= super::super::STREAM_SEND_CAP, "{owed} owed");
            let room = (super::super::STREAM_SEND_CAP - owed).min(data.len() - at);
            staged.extend_from_slice(&data[at..at + room]);
            at += room;
            u.stage_send(fd, &mut staged, false);
            events.clear();
            u.wait(&mut events, Some(Duration::from_millis(20))).unwrap();
            while let Ok(n) = (&b).read(&mut buf) {
                got.extend_from_slice(&buf[..n]);
            }
        }
        assert!(got == data, "lost or reordered bytes");
        // Nothing owed: writable at once, every wait (level-triggered, as epoll's).
        events.clear();
        u.wait(&mut events, Some(Duration::from_secs(5))).unwrap();
        assert!(events.iter().any(|e| e.token == 1 && e.writable), "{events:?}");
        u.remove(a.as_fd()).unwrap();
    }

    #[test]
    fn a_send_in_flight_when_its_descriptor_is_reused_completes_for_the_old_output() {
        let Some(mut u) = uring() else { return };
        let (mut a, a_peer) = {
            let (x, y) = UnixStream::pair().unwrap();
            (std::os::fd::OwnedFd::from(x), y)
        };
        let n = a.as_raw_fd();
        u.set_interest(a.as_fd(), 1, Interest::NONE).unwrap();
        u.set_stream(a.as_fd(), true).unwrap();
        // Fill the socket, so the ring's send stays in flight.
        rustix::io::ioctl_fionbio(&a, true).unwrap();
        let fill = [1u8; 4096];
        while rustix::io::write(&a, &fill).is_ok() {}
        let mut staged = vec![2u8; 4096];
        u.stage_send(n, &mut staged, false);
        let mut events = Vec::new();
        u.wait(&mut events, Some(Duration::ZERO)).unwrap();
        assert_eq!(u.sends, 1, "the send is in flight");
        // The channel goes, and a newcomer takes the same number at once (dup2 onto it).
        u.remove(a.as_fd()).unwrap();
        let (c, mut d) = UnixStream::pair().unwrap();
        rustix::io::dup2(&c, &mut a).unwrap();
        drop(c);
        u.set_interest(a.as_fd(), 2, Interest { read: false, write: true }).unwrap();
        u.set_stream(a.as_fd(), true).unwrap();
        let mut mine = b"newcomer".to_vec();
        u.stage_send(n, &mut mine, false);
        // The old peer reads: the old send completes, for the linger, not for the newcomer.
        a_peer.set_nonblocking(true).unwrap();
        let mut old = Vec::new();
        let mut buf = vec![0u8; 65536];
        let end = Instant::now() + DEADLINE;
        loop {
            assert!(Instant::now() < end, "the old peer got {} bytes", old.len());
            match (&a_peer).read(&mut buf) {
                Ok(0) => break, // the linger closed its descriptor after the last byte
                Ok(k) => old.extend_from_slice(&buf[..k]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
            events.clear();
            u.wait(&mut events, Some(Duration::from_millis(5))).unwrap();
        }
        assert!(old.ends_with(&[2u8; 4096]), "the old send's bytes did not arrive last");
        let mut got = [0u8; 8];
        d.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"newcomer");
        assert_eq!(u.stage_send(n, &mut Vec::new(), false), (0, None), "the newcomer owes nothing");
        u.remove(a.as_fd()).unwrap();
    }

    #[test]
    fn dropping_the_poller_with_receives_in_flight_ends_them_first() {
        let Some(mut u) = uring() else { return };
        let (_a, _b) = reading_stream(&mut u);
        let mut events = Vec::new();
        u.wait(&mut events, Some(Duration::ZERO)).unwrap();
        assert_eq!(u.recvs, 1, "one receive in flight");
        let t0 = Instant::now();
        drop(u);
        assert!(t0.elapsed() < Duration::from_secs(1), "drop waited for its deadline");
    }
}
