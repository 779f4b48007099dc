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

/// What a channel wants to hear about: the answers of `readable()` and `writable()`.
///
/// Read interest also covers urgent (out-of-band) data, as asyncore's poll flags did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct Interest {
    pub read: bool,
    pub write: bool,
}

impl Interest {
    pub const NONE: Interest = Interest { read: false, write: false };

    pub fn is_empty(self) -> bool {
        !self.read && !self.write
    }
}

/// One descriptor's readiness, as the OS reported it in one wait.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Event {
    pub token: u64,
    pub readable: bool,
    pub writable: bool,
    /// Urgent data (`POLLPRI`, select's exceptional set).
    pub priority: bool,
    pub hangup: bool,
    pub error: bool,
    /// `POLLNVAL`: the descriptor was closed behind the loop's back.
    pub invalid: bool,
}

/// The small interface every backend implements.
pub(crate) trait Poller {
    /// Starts watching `fd`. An empty interest is allowed: the fd is then known but not watched.
    fn register(&mut self, fd: RawFd, token: u64, interest: Interest) -> io::Result<()>;
    /// Changes what is watched for an already registered `fd`.
    fn reregister(&mut self, fd: RawFd, token: u64, interest: Interest) -> io::Result<()>;
    /// Forgets `fd`. Must be called before the descriptor is closed.
    fn deregister(&mut self, fd: RawFd) -> io::Result<()>;
    /// Waits up to `timeout` (forever when `None`) and appends what became ready to `events`.
    /// Returns early with no events when a signal interrupts the wait, so the loop can look at
    /// its timers and flags.
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
