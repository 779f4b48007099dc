//! Readiness backends: the one place that talks to `select(2)`, `poll(2)` and `epoll(7)`.
//!
//! Every backend is level-triggered and keeps the interest of each descriptor between waits, so
//! the loop tells it only what changed (`register`, `reregister`, `deregister`) and a pass costs one
//! `wait` plus one call per channel whose `readable()`/`writable()` answer flipped.
//!
//! This module is the only part of the crate allowed to use `unsafe`: each block wraps one syscall
//! and says why it is sound.
#![allow(unsafe_code)]

mod epoll;
mod poll;
mod select;
mod waker;

use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

pub(crate) use waker::WakerFd;

/// Which readiness API a [`Loop`](crate::Loop) waits with.
///
/// asyncore chose with `use_poll`; sockloop adds epoll and an automatic choice.
///
/// ```
/// use sockloop::{Backend, Loop};
/// let lp = Loop::with_backend(Backend::Poll)?;
/// assert_eq!(lp.backend(), Backend::Poll);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Backend {
    /// The best backend of the platform: epoll on Linux, poll elsewhere.
    #[default]
    Auto,
    /// `select(2)`, asyncore's default. Refuses descriptors `>= FD_SETSIZE` (1024) with an error.
    Select,
    /// `poll(2)`, asyncore's `use_poll=True`.
    Poll,
    /// `epoll(7)` (Linux): cost per pass grows with ready channels, not with all channels.
    Epoll,
}

impl Backend {
    /// Every concrete backend available on this platform, for tests and benchmarks that cover all.
    ///
    /// ```
    /// assert!(sockloop::Backend::all().contains(&sockloop::Backend::Select));
    /// ```
    pub fn all() -> &'static [Backend] {
        if cfg!(target_os = "linux") || cfg!(target_os = "android") {
            &[Backend::Select, Backend::Poll, Backend::Epoll]
        } else {
            &[Backend::Select, Backend::Poll]
        }
    }

    /// The concrete backend `Auto` stands for here; other values map to themselves.
    ///
    /// ```
    /// use sockloop::Backend;
    /// assert_ne!(Backend::Auto.resolve(), Backend::Auto);
    /// ```
    pub fn resolve(self) -> Backend {
        match self {
            Backend::Auto if cfg!(any(target_os = "linux", target_os = "android")) => Backend::Epoll,
            Backend::Auto => Backend::Poll,
            other => other,
        }
    }

    /// Parses `auto`, `select`, `poll` or `epoll` (for command-line flags).
    ///
    /// ```
    /// assert_eq!(sockloop::Backend::parse("poll"), Some(sockloop::Backend::Poll));
    /// assert_eq!(sockloop::Backend::parse("kqueue9"), None);
    /// ```
    pub fn parse(name: &str) -> Option<Backend> {
        match name.to_ascii_lowercase().as_str() {
            "auto" => Some(Backend::Auto),
            "select" => Some(Backend::Select),
            "poll" => Some(Backend::Poll),
            "epoll" => Some(Backend::Epoll),
            _ => None,
        }
    }

    /// The lower-case name, as [`Backend::parse`] accepts it.
    ///
    /// ```
    /// assert_eq!(sockloop::Backend::Epoll.name(), "epoll");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Select => "select",
            Backend::Poll => "poll",
            Backend::Epoll => "epoll",
        }
    }
}

/// What a descriptor is watched for: the answers of `readable()` and `writable()`.
///
/// Read interest also covers urgent (out-of-band) data, as asyncore's poll flags did.
///
/// ```
/// use sockloop::poller::Interest;
/// assert!(Interest::NONE.is_empty());
/// assert!(!Interest { read: true, write: false }.is_empty());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct Interest {
    /// Input (and urgent data) is wanted.
    pub read: bool,
    /// Room for output is wanted.
    pub write: bool,
}

impl Interest {
    /// Neither: the descriptor stays known but is not watched (no hang-up wake-ups either).
    ///
    /// ```
    /// assert!(sockloop::poller::Interest::NONE.is_empty());
    /// ```
    pub const NONE: Interest = Interest { read: false, write: false };

    /// Whether nothing is wanted.
    ///
    /// ```
    /// assert!(sockloop::poller::Interest::default().is_empty());
    /// ```
    pub fn is_empty(self) -> bool {
        !self.read && !self.write
    }
}

/// One descriptor's readiness, as the OS reported it in one wait.
///
/// ```
/// let ev = sockloop::poller::Event::default();
/// assert!(!ev.readable && !ev.hangup);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// The token given at registration.
    pub token: u64,
    /// Input or end of stream can be read (`POLLIN`).
    pub readable: bool,
    /// Output can be written (`POLLOUT`).
    pub writable: bool,
    /// Urgent data (`POLLPRI`, select's exceptional set).
    pub priority: bool,
    /// The peer hung up (`POLLHUP`).
    pub hangup: bool,
    /// An error is pending on the descriptor (`POLLERR`).
    pub error: bool,
    /// `POLLNVAL`: the descriptor was closed behind the loop's back.
    pub invalid: bool,
}

/// A readiness selector on one backend, for code that keeps its own map (the Python package
/// does): register descriptors with a token and an [`Interest`], wait, read [`Event`]s.
/// Level-triggered; interest stays registered until changed.
///
/// A `Selector` is [`Send`] and [`Sync`]: it may be built on one thread and waited on from
/// another (the Python package waits with the GIL released, which needs exactly that, and PyO3
/// classes must be `Sync`). Every method that changes it takes `&mut self`.
///
/// ```
/// fn assert_send_sync<T: Send + Sync>(_: &T) {}
/// let sel = sockloop::poller::Selector::new(sockloop::Backend::Auto)?;
/// assert_send_sync(&sel);
/// std::thread::spawn(move || drop(sel)).join().unwrap();
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// ```
/// use sockloop::{poller::{Interest, Selector}, Backend};
/// use std::os::fd::AsRawFd;
/// let (a, mut b) = std::os::unix::net::UnixStream::pair()?;
/// let mut sel = Selector::new(Backend::Poll)?;
/// sel.register(a.as_raw_fd(), 7, Interest { read: true, write: false })?;
/// std::io::Write::write_all(&mut b, b"x")?;
/// let mut events = Vec::new();
/// sel.wait(&mut events, Some(std::time::Duration::from_secs(5)))?;
/// assert_eq!(events[0].token, 7);
/// assert!(events[0].readable);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Selector {
    inner: Box<dyn Poller>,
    backend: Backend,
}

impl Selector {
    /// A selector on `backend` (`Auto` picks the best).
    ///
    /// ```
    /// let s = sockloop::poller::Selector::new(sockloop::Backend::Auto)?;
    /// assert_ne!(s.backend(), sockloop::Backend::Auto);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new(backend: Backend) -> io::Result<Selector> {
        let backend = backend.resolve();
        Ok(Selector { inner: new_poller(backend)?, backend })
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

    /// Starts watching `fd` (select refuses `fd >= FD_SETSIZE` with an error).
    ///
    /// ```
    /// # use std::os::fd::AsRawFd;
    /// let (a, _b) = std::os::unix::net::UnixStream::pair()?;
    /// let mut s = sockloop::poller::Selector::new(sockloop::Backend::Epoll)?;
    /// s.register(a.as_raw_fd(), 1, sockloop::poller::Interest::NONE)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn register(&mut self, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        self.inner.register(fd, token, interest)
    }

    /// Changes what `fd` is watched for (one syscall at most, none on select and poll).
    ///
    /// ```
    /// # use std::os::fd::AsRawFd;
    /// let (a, _b) = std::os::unix::net::UnixStream::pair()?;
    /// let mut s = sockloop::poller::Selector::new(sockloop::Backend::Epoll)?;
    /// s.register(a.as_raw_fd(), 1, sockloop::poller::Interest::NONE)?;
    /// s.reregister(a.as_raw_fd(), 1, sockloop::poller::Interest { read: true, write: true })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn reregister(&mut self, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        self.inner.reregister(fd, token, interest)
    }

    /// Stops watching `fd`; call it before closing the descriptor.
    ///
    /// ```
    /// # use std::os::fd::AsRawFd;
    /// let (a, _b) = std::os::unix::net::UnixStream::pair()?;
    /// let mut s = sockloop::poller::Selector::new(sockloop::Backend::Poll)?;
    /// s.register(a.as_raw_fd(), 1, sockloop::poller::Interest { read: true, write: false })?;
    /// s.deregister(a.as_raw_fd())?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn deregister(&mut self, fd: RawFd) -> io::Result<()> {
        self.inner.deregister(fd)
    }

    /// Waits up to `timeout` (`None`: no limit) and appends readiness to `events`. A signal
    /// interrupting the wait makes it return early with what it has.
    ///
    /// ```
    /// let mut s = sockloop::poller::Selector::new(sockloop::Backend::Auto)?;
    /// let mut ev = Vec::new();
    /// s.wait(&mut ev, Some(std::time::Duration::ZERO))?;
    /// assert!(ev.is_empty());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn wait(&mut self, events: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<()> {
        self.inner.wait(events, timeout)
    }
}

/// The small interface every backend implements. `Send + Sync` (plain data and descriptors),
/// so a [`Selector`] can change threads.
pub(crate) trait Poller: Send + Sync {
    /// Starts watching `fd`. An empty interest is allowed: the fd is then known but not watched.
    fn register(&mut self, fd: RawFd, token: u64, interest: Interest) -> io::Result<()>;
    /// Changes what is watched for an already registered `fd`.
    fn reregister(&mut self, fd: RawFd, token: u64, interest: Interest) -> io::Result<()>;
    /// Forgets `fd`. Must be called before the descriptor is closed.
    fn deregister(&mut self, fd: RawFd) -> io::Result<()>;
    /// Waits up to `timeout` (forever when `None`) and appends what became ready to `events`.
    /// A signal interrupting the wait restarts it with the time that is left.
    fn wait(&mut self, events: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<()>;
    /// Watches the waker's descriptor. Returns whether the loop must drain it after it fired
    /// (level-triggered backends) or may leave it alone (epoll, edge-triggered).
    fn register_waker(&mut self, fd: RawFd, token: u64) -> io::Result<bool> {
        self.register(fd, token, Interest { read: true, write: false })?;
        Ok(true)
    }
}

/// Builds the poller for a backend.
pub(crate) fn new_poller(backend: Backend) -> io::Result<Box<dyn Poller>> {
    Ok(match backend.resolve() {
        Backend::Select => Box::new(select::Select::new()),
        Backend::Poll => Box::new(poll::Poll::new()),
        #[cfg(any(target_os = "linux", target_os = "android"))]
        Backend::Epoll => Box::new(epoll::Epoll::new()?),
        other => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("the {} backend is not available on this platform", other.name()),
            ))
        }
    })
}

/// Milliseconds for `poll`/`epoll_wait`, rounded up so a short timer never turns into a busy loop.
fn timeout_ms(timeout: Option<Duration>) -> libc::c_int {
    match timeout {
        None => -1,
        Some(d) => {
            let ms = d.as_nanos().div_ceil(1_000_000);
            ms.min(libc::c_int::MAX as u128) as libc::c_int
        }
    }
}

/// Deadline bookkeeping shared by the backends' EINTR retry.
fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|d| Instant::now().checked_add(d))
}

fn remaining(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()))
}

/// Returns `Ok(true)` when a syscall result means "interrupted, try again".
fn check(rc: libc::c_int) -> io::Result<bool> {
    if rc >= 0 {
        return Ok(false);
    }
    let err = io::Error::last_os_error();
    if err.kind() == io::ErrorKind::Interrupted {
        Ok(true)
    } else {
        Err(err)
    }
}

/// Sets or clears `O_NONBLOCK` on any descriptor (pipes and ttys for `FileDispatcher`).
pub(crate) fn set_nonblocking(fd: std::os::fd::BorrowedFd<'_>, on: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let raw = fd.as_raw_fd();
    // SAFETY: F_GETFL/F_SETFL on a descriptor that `fd` borrows (so it is open for the call);
    // neither touches memory.
    unsafe {
        let flags = libc::fcntl(raw, libc::F_GETFL);
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        let new = if on { flags | libc::O_NONBLOCK } else { flags & !libc::O_NONBLOCK };
        if new != flags && libc::fcntl(raw, libc::F_SETFL, new) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Makes SIGPIPE ignored if it is at its default action (which kills the process). Sockets use
/// `MSG_NOSIGNAL`, but `write(2)` on a pipe whose reader left has no such flag, so the first
/// file channel sets this once. A handler the application installed is left alone.
pub(crate) fn ignore_default_sigpipe() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: sigaction with a null new action only reads the current disposition into
        // `old`, a zeroed (valid) sigaction owned by this frame.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        if unsafe { libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) } != 0 {
            return;
        }
        if old.sa_sigaction == libc::SIG_DFL {
            // SAFETY: installs SIG_IGN, which runs no code in signal context.
            unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        }
    });
}

/// Views an initialised byte buffer as the `MaybeUninit` slice socket2's receive calls take.
pub(crate) fn as_uninit(buf: &mut [u8]) -> &mut [std::mem::MaybeUninit<u8>] {
    // SAFETY: MaybeUninit<u8> has the layout of u8, every initialised u8 is a valid
    // MaybeUninit<u8>, and the receive calls only ever write initialised bytes into it, so the
    // caller's slice stays initialised.
    unsafe { &mut *(buf as *mut [u8] as *mut [std::mem::MaybeUninit<u8>]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_round_up_to_the_next_millisecond() {
        assert_eq!(timeout_ms(Some(Duration::from_micros(1))), 1);
        assert_eq!(timeout_ms(Some(Duration::from_micros(1500))), 2);
        assert_eq!(timeout_ms(Some(Duration::ZERO)), 0);
        assert_eq!(timeout_ms(None), -1);
    }
}
