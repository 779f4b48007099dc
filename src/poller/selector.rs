//! [`Selector`]: one backend, its waker and the waker's drain policy, behind a public face.

use super::{new_poller, Backend, Event, Interest, Poller};
use crate::sys::{Deadline, WakeFd};
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::Duration;

/// A readiness selector on one backend, for code that keeps its own map (the loop does, and so
/// does the Python package): set each descriptor's [`Interest`] under a token, wait, read
/// [`Event`]s. Level-triggered; interest stays set until changed.
///
/// The selector owns its waker ([`Selector::waker`]): a wake arrives as an event whose token is
/// [`Selector::WAKE_TOKEN`], already drained where the backend needs that.
///
/// A `Selector` is [`Send`] and [`Sync`]: it may be built on one thread and waited on from
/// another (the Python package waits with the GIL released). Every method that changes it
/// takes `&mut self`.
///
/// ```
/// use sockloop::{poller::{Interest, Selector}, Backend};
/// use std::os::fd::AsFd;
/// let (a, mut b) = std::os::unix::net::UnixStream::pair()?;
/// let mut sel = Selector::new(Backend::Poll)?;
/// sel.set_interest(a.as_fd(), 7, Interest::READ)?;
/// std::io::Write::write_all(&mut b, b"x")?;
/// let mut events = Vec::new();
/// sel.wait(&mut events, Some(std::time::Duration::from_secs(5)))?;
/// assert_eq!(events[0].token, 7);
/// assert!(events[0].readable);
/// sel.remove(a.as_fd())?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Selector {
    poller: Box<dyn Poller>,
    backend: Backend,
    waker: Option<Waker>,
}

struct Waker {
    fd: Arc<WakeFd>,
    /// Level-triggered backends report the waker until it is read.
    drain: bool,
}

impl Selector {
    /// The token of the events that report a wake from a [`SelectorWaker`]. Do not use it for
    /// a descriptor of your own.
    ///
    /// ```
    /// assert_eq!(sockloop::poller::Selector::WAKE_TOKEN, u64::MAX);
    /// ```
    pub const WAKE_TOKEN: u64 = u64::MAX;

    /// A selector on `backend` (`Auto` picks the best).
    ///
    /// ```
    /// let s = sockloop::poller::Selector::new(sockloop::Backend::Auto)?;
    /// assert_ne!(s.backend(), sockloop::Backend::Auto);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new(backend: Backend) -> io::Result<Selector> {
        let backend = backend.resolve();
        Ok(Selector { poller: new_poller(backend)?, backend, waker: None })
    }

    /// The concrete backend.
    ///
    /// ```
    /// assert_eq!(sockloop::poller::Selector::new(sockloop::Backend::Select)?.backend(), sockloop::Backend::Select);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Watches `fd` for `interest` under `token`: starts watching a descriptor the selector
    /// does not know, changes what a known one is watched for (one syscall at most, none on
    /// select and poll). Select refuses `fd >= FD_SETSIZE` with `InvalidInput`.
    ///
    /// ```
    /// # use std::os::fd::AsFd;
    /// use sockloop::poller::{Interest, Selector};
    /// let (a, _b) = std::os::unix::net::UnixStream::pair()?;
    /// let mut s = Selector::new(sockloop::Backend::Epoll)?;
    /// s.set_interest(a.as_fd(), 1, Interest::NONE)?;
    /// s.set_interest(a.as_fd(), 1, Interest { read: true, write: true })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn set_interest(&mut self, fd: BorrowedFd<'_>, token: u64, interest: Interest) -> io::Result<()> {
        if token == Self::WAKE_TOKEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "token u64::MAX is the selector's waker",
            ));
        }
        self.poller.set_interest(fd, token, interest)
    }

    /// Stops watching `fd`; call it before closing the descriptor. Forgetting a descriptor the
    /// selector does not know is not an error.
    ///
    /// ```
    /// # use std::os::fd::AsFd;
    /// let (a, _b) = std::os::unix::net::UnixStream::pair()?;
    /// let mut s = sockloop::poller::Selector::new(sockloop::Backend::Poll)?;
    /// s.set_interest(a.as_fd(), 1, sockloop::poller::Interest::READ)?;
    /// s.remove(a.as_fd())?;
    /// s.remove(a.as_fd())?; // no longer known: nothing to do
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn remove(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.poller.remove(fd)
    }

    /// Lets the backend receive `fd`'s input itself (io_uring stream mode); whether it does.
    pub(crate) fn set_stream(&mut self, fd: BorrowedFd<'_>) -> io::Result<bool> {
        self.poller.set_stream(fd)
    }

    /// Takes `fd` out of io_uring stream mode: what was received and not handed over, and
    /// (end of stream, errno) behind it. The descriptor's input is polled again.
    pub(crate) fn leave_stream(&mut self, fd: BorrowedFd<'_>) -> io::Result<(Vec<u8>, bool, Option<i32>)> {
        self.poller.leave_stream(fd)
    }

    /// Appends what the backend received for `fd`; returns (end of stream, errno).
    pub(crate) fn move_received(
        &mut self,
        fd: std::os::fd::RawFd,
        into: &mut Vec<u8>,
    ) -> (bool, Option<i32>) {
        self.poller.move_received(fd, into)
    }

    /// Hands a stream-mode channel's staged output to the backend (see `Poller::stage_send`).
    pub(crate) fn stage_send(
        &mut self,
        fd: std::os::fd::RawFd,
        staged: &mut Vec<u8>,
        shut: bool,
    ) -> (usize, Option<i32>) {
        self.poller.stage_send(fd, staged, shut)
    }

    /// Submits the sends staged for the ring since the last wait (see `Poller::flush_sends`).
    pub(crate) fn flush_sends(&mut self) -> io::Result<()> {
        self.poller.flush_sends()
    }

    /// Whether removed channels' output is still owed (see `Poller::owes_output`).
    pub(crate) fn owes_output(&self) -> bool {
        self.poller.owes_output()
    }

    /// The selector's waker, created and watched on first use: [`SelectorWaker::wake`] from any
    /// thread ends the current or next wait with an event for [`Selector::WAKE_TOKEN`].
    ///
    /// ```
    /// let mut s = sockloop::poller::Selector::new(sockloop::Backend::Select)?;
    /// let w = s.waker()?;
    /// std::thread::spawn(move || w.wake()).join().unwrap()?;
    /// let mut ev = Vec::new();
    /// s.wait(&mut ev, None)?;
    /// assert_eq!(ev[0].token, sockloop::poller::Selector::WAKE_TOKEN);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn waker(&mut self) -> io::Result<SelectorWaker> {
        if self.waker.is_none() {
            let fd = Arc::new(WakeFd::new()?);
            let drain = self.poller.watch_waker(fd.fd(), Self::WAKE_TOKEN)?;
            self.waker = Some(Waker { fd, drain });
        }
        Ok(SelectorWaker(self.waker.as_ref().expect("created above").fd.clone()))
    }

    /// Waits up to `timeout` (`None`: no limit) and appends readiness to `events`. A signal
    /// that interrupts the wait (`EINTR`) restarts it with the time that is left, so this
    /// returns only for readiness, a wake, or the timeout.
    ///
    /// ```
    /// let mut s = sockloop::poller::Selector::new(sockloop::Backend::Auto)?;
    /// let mut ev = Vec::new();
    /// s.wait(&mut ev, Some(std::time::Duration::ZERO))?;
    /// assert!(ev.is_empty());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn wait(&mut self, events: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<()> {
        let deadline = Deadline::after(timeout);
        loop {
            match self.wait_interruptible(events, deadline.remaining()) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted && !deadline.passed() => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
                other => return other,
            }
        }
    }

    /// One wait, as [`wait`](Selector::wait), except that a signal interrupting it returns
    /// `ErrorKind::Interrupted` (PEP 475's rule: the caller runs its signal handlers, then
    /// waits again with the time left).
    ///
    /// ```
    /// let mut s = sockloop::poller::Selector::new(sockloop::Backend::Poll)?;
    /// let mut ev = Vec::new();
    /// s.wait_interruptible(&mut ev, Some(std::time::Duration::ZERO))?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn wait_interruptible(
        &mut self,
        events: &mut Vec<Event>,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        let first = events.len();
        self.poller.wait(events, timeout)?;
        if let Some(w) = self.waker.as_ref().filter(|w| w.drain) {
            if events[first..].iter().any(|e| e.token == Self::WAKE_TOKEN) {
                w.fd.drain();
            }
        }
        Ok(())
    }
}

/// Wakes a [`Selector`] from any thread (`Send + Sync + Clone`): its current or next wait
/// returns with an event for [`Selector::WAKE_TOKEN`]. One `write` to an eventfd on Linux.
///
/// ```
/// let mut s = sockloop::poller::Selector::new(sockloop::Backend::Auto)?;
/// let w = s.waker()?;
/// w.wake()?;
/// w.clone().wake()?; // wakes coalesce
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct SelectorWaker(Arc<WakeFd>);

impl SelectorWaker {
    /// Makes the selector's wait return.
    ///
    /// ```
    /// let mut s = sockloop::poller::Selector::new(sockloop::Backend::Epoll)?;
    /// s.waker()?.wake()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn wake(&self) -> io::Result<()> {
        self.0.wake()
    }

    /// The waker's descriptor number (for diagnostics).
    ///
    /// ```
    /// let mut s = sockloop::poller::Selector::new(sockloop::Backend::Auto)?;
    /// assert!(s.waker()?.fileno() > 2);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn fileno(&self) -> std::os::fd::RawFd {
        self.0.raw()
    }
}
