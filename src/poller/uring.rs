//! `io_uring(7)` as a readiness backend: single-shot `POLL_ADD` per descriptor, re-armed before
//! each wait while interest remains, so it is level-triggered like the others.
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
//! when the loop asks, in its own wait: no interrupting task work), else `COOP_TASKRUN`, else
//! plain. A single-issuer ring belongs to the thread that first submits to it, while a
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

use super::uring_ring::{self as ring_ops, RingFlags};
use super::{Event, Interest, Poller};
use io_uring::{cqueue, opcode, types, IoUring};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::thread::ThreadId;
use std::time::Duration;

/// Size of the submission queue. A pass that has more to push submits early (one more enter).
const SQ_ENTRIES: u32 = 1024;
/// Size of the completion queue: completions of a pass for up to this many descriptors fit
/// without the kernel's overflow list.
const CQ_ENTRIES: u32 = 16 * 1024;

/// What a completion is, from the top bits of its user data.
const KIND_SHIFT: u32 = 62;
const KIND_POLL: u64 = 0;
const KIND_WAKER: u64 = 1;
/// The completion of a `POLL_REMOVE` itself: nothing to do.
const KIND_CANCEL: u64 = 2;
/// A second look at a descriptor whose completion carried only a wake-up's hint (see `recheck`).
const KIND_CHECK: u64 = 3;
/// The arm sequence takes the 30 bits between the kind and the descriptor.
const SEQ_MASK: u32 = (1 << 30) - 1;

fn poll_data(fd: RawFd, seq: u32) -> u64 {
    user_data(KIND_POLL, fd, seq)
}

fn user_data(kind: u64, fd: RawFd, seq: u32) -> u64 {
    (kind << KIND_SHIFT) | (u64::from(seq & SEQ_MASK) << 32) | u64::from(fd as u32)
}

const WAKER_DATA: u64 = KIND_WAKER << KIND_SHIFT;
const CANCEL_DATA: u64 = KIND_CANCEL << KIND_SHIFT;

/// One descriptor number's state.
#[derive(Clone, Copy, Default)]
struct Slot {
    known: bool,
    token: u64,
    interest: Interest,
    /// The sequence number of the last poll armed for this number (it only grows).
    seq: u32,
    /// A poll with sequence `seq` is in flight.
    armed: bool,
    /// On `to_arm` (so it is queued once).
    queued: bool,
    /// The sequence number of the last second look (it only grows).
    check_seq: u32,
    /// A second look is due at the next wait, in place of the re-arm (see `Uring::wait`).
    look: bool,
}

pub(crate) struct Uring {
    ring: IoUring,
    flags: RingFlags,
    /// The thread the ring is enabled for, when it is single-issuer.
    owner: Option<ThreadId>,
    slots: Vec<Slot>,
    /// Descriptors that may need a poll armed at the next wait.
    to_arm: Vec<RawFd>,
    /// The waker's eventfd, and whether its multishot poll is in flight.
    waker: Option<(RawFd, bool)>,
    /// Descriptors whose completion needs a second look in this wait (kept for its capacity).
    suspects: Vec<RawFd>,
}

impl Uring {
    /// A ring, or an error naming io_uring and why the kernel refused it.
    pub fn new() -> io::Result<Uring> {
        let (ring, flags) = ring_ops::build(SQ_ENTRIES, CQ_ENTRIES)?;
        Ok(Uring {
            ring,
            flags,
            owner: None,
            slots: Vec::new(),
            to_arm: Vec::new(),
            waker: None,
            suspects: Vec::new(),
        })
    }

    fn slot(&mut self, fd: RawFd) -> &mut Slot {
        let i = fd as usize; // a BorrowedFd is never negative
        if self.slots.len() <= i {
            self.slots.resize(i + 1, Slot::default());
        }
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
        self.ring = ring;
        self.flags = flags;
        self.owner = Some(me);
        self.to_arm.clear();
        for (fd, slot) in self.slots.iter_mut().enumerate() {
            slot.armed = false;
            slot.queued = slot.known && !slot.interest.is_empty();
            if slot.queued {
                self.to_arm.push(fd as RawFd);
            }
        }
        if let Some((_, armed)) = self.waker.as_mut() {
            *armed = false;
        }
        Ok(())
    }

    fn queue_arm(&mut self, fd: RawFd) {
        let slot = self.slot(fd);
        if !slot.queued {
            slot.queued = true;
            self.to_arm.push(fd);
        }
    }

    /// Cancels `fd`'s poll in flight, if any (the cancel is submitted with the next enter).
    fn cancel(&mut self, fd: RawFd) -> io::Result<bool> {
        let slot = self.slot(fd);
        if !slot.armed {
            return Ok(false);
        }
        slot.armed = false;
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
        let mut todo = std::mem::take(&mut self.to_arm);
        let mut result = Ok(());
        for (i, &fd) in todo.iter().enumerate() {
            let slot = &mut self.slots[fd as usize];
            slot.queued = false;
            if !slot.known || slot.armed || slot.interest.is_empty() {
                continue;
            }
            if std::mem::take(&mut slot.look) {
                if let Err(e) = self.push_look(fd) {
                    result = Err(e);
                }
                continue;
            }
            slot.seq = slot.seq.wrapping_add(1) & SEQ_MASK;
            slot.armed = true;
            let sqe = opcode::PollAdd::new(types::Fd(fd), poll_mask(slot.interest))
                .build()
                .user_data(poll_data(fd, slot.seq));
            if let Err(e) = ring_ops::push(&mut self.ring, &sqe) {
                // Keep the rest for the next wait.
                self.slots[fd as usize].armed = false;
                for &rest in &todo[i..] {
                    self.slots[rest as usize].queued = true;
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

    /// Takes a second look at the descriptors in `suspects`: for each, a poll for its interest
    /// and its cancel, submitted together, so only readiness present at that moment completes
    /// it (with `vfs_poll`'s true mask); the answers are reaped as events.
    fn recheck(&mut self, suspects: &mut Vec<RawFd>, events: &mut Vec<Event>) -> io::Result<()> {
        for fd in suspects.drain(..) {
            self.push_look(fd)?;
        }
        ring_ops::flush(&self.ring)?;
        self.reap(events, None);
        Ok(())
    }

    /// Pushes a second look at `fd`: a poll for its interest and, right behind it, its cancel.
    fn push_look(&mut self, fd: RawFd) -> io::Result<()> {
        let slot = &mut self.slots[fd as usize];
        slot.check_seq = slot.check_seq.wrapping_add(1) & SEQ_MASK;
        let data = user_data(KIND_CHECK, fd, slot.check_seq);
        let look = opcode::PollAdd::new(types::Fd(fd), poll_mask(slot.interest)).build().user_data(data);
        let cancel = opcode::PollRemove::new(data).build().user_data(CANCEL_DATA);
        ring_ops::push(&mut self.ring, &look)?;
        ring_ops::push(&mut self.ring, &cancel)
    }

    /// Turns the completions waiting in the queue into events. A poll completed by a wake-up
    /// reports the wake-up's mask, not the descriptor's state, and a socket's "data arrived"
    /// wake-up says `POLLIN | POLLPRI` whatever arrived; when it is the urgent byte alone,
    /// reading would even lose it (a plain `recv` skips the mark). So a completion that says
    /// `POLLPRI` is not reported: its descriptor goes to `suspects` for a second look.
    fn reap(&mut self, events: &mut Vec<Event>, mut suspects: Option<&mut Vec<RawFd>>) {
        let mut woken = false;
        let mut cq = self.ring.completion();
        cq.sync();
        for cqe in &mut cq {
            let data = cqe.user_data();
            match data >> KIND_SHIFT {
                KIND_WAKER => {
                    if !cqueue::more(cqe.flags()) {
                        if let Some((_, armed)) = self.waker.as_mut() {
                            *armed = false;
                        }
                    }
                    if !woken && cqe.result() >= 0 {
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
                    if !slot.known || !slot.armed || slot.seq != seq {
                        continue; // stale: cancelled, superseded, or an earlier descriptor
                    }
                    slot.armed = false;
                    let res = cqe.result();
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
                    if !slot.interest.is_empty() && !slot.queued {
                        slot.queued = true;
                        self.to_arm.push(fd);
                    }
                }
                KIND_CHECK => {
                    let fd = (data & 0xffff_ffff) as u32 as RawFd;
                    let seq = (data >> 32) as u32 & SEQ_MASK;
                    let Some(slot) = self.slots.get_mut(fd as usize) else { continue };
                    let res = cqe.result();
                    if !slot.known || slot.check_seq != seq {
                        continue;
                    }
                    if res > 0 {
                        events.push(event(slot.token, res));
                    }
                    // Ready or not, the descriptor is watched again from the next wait.
                    if !slot.interest.is_empty() && !slot.queued && !slot.armed {
                        slot.queued = true;
                        self.to_arm.push(fd);
                    }
                }
                _ => {}
            }
        }
    }
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
        if !self.slot(raw).known {
            if !crate::sys::is_open(fd) {
                return Err(super::not_open());
            }
            let slot = self.slot(raw);
            slot.known = true;
            slot.armed = false;
        }
        let slot = self.slot(raw);
        let changed = slot.interest != interest || slot.token != token;
        slot.token = token;
        slot.interest = interest;
        if changed {
            self.slot(raw).look = false;
            self.cancel(raw)?;
            if !interest.is_empty() {
                self.queue_arm(raw);
            }
        }
        Ok(())
    }

    fn remove(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let raw = fd.as_raw_fd();
        if !self.slots.get(raw as usize).is_some_and(|s| s.known) {
            return Ok(());
        }
        let cancelled = self.cancel(raw)?;
        let slot = self.slot(raw);
        slot.known = false;
        slot.interest = Interest::NONE;
        slot.look = false;
        if cancelled {
            // The poll holds the file: let the kernel drop it now, before the caller closes the
            // descriptor, so closing it really closes the socket. The completions stay queued
            // for the next wait, which drops them as stale.
            self.own()?;
            ring_ops::flush(&self.ring)?;
        }
        Ok(())
    }

    fn watch_waker(&mut self, fd: BorrowedFd<'_>, _token: u64) -> io::Result<bool> {
        self.waker = Some((fd.as_raw_fd(), false));
        Ok(false)
    }

    fn wait(&mut self, events: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<()> {
        self.own()?;
        self.arm_pending()?;
        let first = events.len();
        let result = ring_ops::submit_and_wait(&self.ring, timeout);
        let mut suspects = std::mem::take(&mut self.suspects);
        self.reap(events, Some(&mut suspects));
        let mut checked = Ok(());
        if events.len() > first {
            // The loop has work: the second looks ride on the next wait's enter (they complete
            // within it, so it does not block on them), instead of costing one of their own.
            for fd in suspects.drain(..) {
                self.slots[fd as usize].look = true;
            }
        } else if !suspects.is_empty() {
            // Nothing else to report: look now, so a wait returns only with something to do.
            checked = self.recheck(&mut suspects, events);
        }
        self.suspects = suspects;
        result.and(checked)
    }
}
