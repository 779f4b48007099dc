//! Readiness backends: the one place that talks to `select(2)`, `poll(2)` and `epoll(7)`.
//!
//! Every backend is level-triggered and keeps the interest of each descriptor between waits, so
//! the loop tells it only what changed ([`Selector::set_interest`], [`Selector::remove`]) and a
//! pass costs one wait plus one call per channel whose `readable()`/`writable()` answer flipped.
//!
//! The backends sit behind one small interface, `Poller`, with one contract, checked over every
//! backend by `tests/selector_contract.rs`:
//! - `set_interest` on a descriptor the backend does not know starts watching it; on a known one
//!   it changes what is watched. A descriptor that is not open when the backend first sees it
//!   fails with `EBADF`. (Closing a descriptor the backend knows without `remove` first is
//!   outside the contract: the calls take a `BorrowedFd`, so safe code cannot do it, and the
//!   backends are not asked to notice, which would cost select and poll a syscall per change.)
//! - `remove` forgets a descriptor; removing one that is not known is not an error.
//! - `wait` returns after one wait; `EINTR` comes back as `ErrorKind::Interrupted`, and
//!   [`Selector::wait`] retries it with the time that is left.
//!
//! `select.rs` and `poll.rs` hold the crate's only `unsafe` outside `sys/`: the two syscalls
//! over raw descriptor tables, each with its `// SAFETY:`. The io_uring backend (`uring.rs`)
//! keeps its own in `uring_ring.rs`, the calls that hand memory to the kernel.

mod epoll;
mod poll;
mod select;
mod selector;
#[cfg(target_os = "linux")]
mod uring;
#[cfg(target_os = "linux")]
mod uring_buf;
#[cfg(target_os = "linux")]
mod uring_ring;
#[cfg(target_os = "linux")]
mod uring_slot;

pub use selector::{Selector, SelectorWaker};

use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::time::Duration;

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
    /// `io_uring(7)` (Linux 6.0+): readiness from single-shot polls re-armed each pass, all of
    /// a pass's changes and its wait in one `io_uring_enter`; a connected stream channel that
    /// allows it (Unix streams, and TCP where
    /// [`Dispatcher::urgent_data`](crate::Dispatcher::urgent_data) is false) has its input
    /// received on the ring instead, so its `recv` costs no syscall, and its output sent on the
    /// ring: `send` copies into a staging buffer (at most 64 KiB owed per channel, past which
    /// it would block as a full socket does) and the pass's sends are submitted together at
    /// its end. What `send` accepted is delivered before the FIN also when the channel closes
    /// at once, and [`Channel::pending_output`](crate::Channel::pending_output) counts it until
    /// the kernel took it. Fails with an error naming
    /// io_uring where the kernel refuses it (`kernel.io_uring_disabled`, seccomp); it is in
    /// [`Backend::all`] only where the kernel accepts it.
    ///
    /// ```
    /// use sockloop::{Backend, Loop};
    /// if Backend::all().contains(&Backend::Uring) {
    ///     let lp = Loop::with_backend(Backend::Uring)?;
    ///     assert_eq!(lp.backend(), Backend::Uring);
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    Uring,
}

impl Backend {
    /// Every concrete backend available on this platform, for tests and benchmarks that cover
    /// all. Uring is listed only if the kernel lets this process set up a ring (probed once).
    ///
    /// ```
    /// assert!(sockloop::Backend::all().contains(&sockloop::Backend::Select));
    /// ```
    pub fn all() -> &'static [Backend] {
        if cfg!(target_os = "linux") && uring_available() {
            &[Backend::Select, Backend::Poll, Backend::Epoll, Backend::Uring]
        } else if cfg!(target_os = "linux") || cfg!(target_os = "android") {
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

    /// Parses `auto`, `select`, `poll`, `epoll` or `uring` (for command-line flags).
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
            "uring" | "io_uring" => Some(Backend::Uring),
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
            Backend::Uring => "uring",
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

    /// Input only.
    ///
    /// ```
    /// assert!(sockloop::poller::Interest::READ.read);
    /// ```
    pub const READ: Interest = Interest { read: true, write: false };

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

impl Event {
    /// The event `poll(2)`'s `revents` bits describe (poll and io_uring's `POLL_ADD` share them).
    pub(crate) fn from_poll_bits(token: u64, re: i16) -> Event {
        Event {
            token,
            readable: re & libc::POLLIN != 0,
            writable: re & libc::POLLOUT != 0,
            priority: re & libc::POLLPRI != 0,
            hangup: re & libc::POLLHUP != 0,
            error: re & libc::POLLERR != 0,
            invalid: re & libc::POLLNVAL != 0,
        }
    }
}

/// The small interface every backend implements. `Send + Sync` (plain data and descriptors),
/// so a [`Selector`] can change threads. The contract is in the module documentation.
pub(crate) trait Poller: Send + Sync {
    /// Starts watching `fd` for `interest`, or changes what it is watched for. An empty
    /// interest keeps the descriptor known but unwatched (no hang-up wake-ups either).
    fn set_interest(&mut self, fd: BorrowedFd<'_>, token: u64, interest: Interest) -> io::Result<()>;
    /// Forgets `fd`; must be called before the descriptor is closed. Unknown: `Ok(())`.
    fn remove(&mut self, fd: BorrowedFd<'_>) -> io::Result<()>;
    /// Waits once, up to `timeout` (forever when `None`), and appends what became ready to
    /// `events`. `EINTR` is returned as `ErrorKind::Interrupted`.
    fn wait(&mut self, events: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<()>;
    /// Watches a waker's descriptor. Returns whether it must be drained after it fired
    /// (level-triggered backends) or may be left alone (epoll watches it edge-triggered).
    fn watch_waker(&mut self, fd: BorrowedFd<'_>, token: u64) -> io::Result<bool> {
        self.set_interest(fd, token, Interest::READ)?;
        Ok(true)
    }
    /// Lets the backend receive a known stream socket's input itself (io_uring). Returns
    /// whether it does; the others do not.
    fn set_stream(&mut self, _fd: BorrowedFd<'_>) -> io::Result<bool> {
        Ok(false)
    }
    /// Takes `fd` out of the backend's receiving for good; returns what it received and did not
    /// hand over, and (end of stream, errno) behind it.
    fn leave_stream(&mut self, _fd: BorrowedFd<'_>) -> io::Result<(Vec<u8>, bool, Option<i32>)> {
        Ok((Vec::new(), false, None))
    }
    /// Appends what the backend received for `fd` to `into`; returns (end of stream, errno).
    fn move_received(&mut self, _fd: RawFd, _into: &mut Vec<u8>) -> (bool, Option<i32>) {
        (false, None)
    }
    /// Takes `staged` (output a stream-mode channel accepted, oldest first) to send behind what
    /// it owes already, and with `shut` a half-close once all of it is sent. Returns what it
    /// still owes for `fd` and the errno a send failed with.
    fn stage_send(&mut self, _fd: RawFd, _staged: &mut Vec<u8>, _shut: bool) -> (usize, Option<i32>) {
        (0, None)
    }
    /// Submits the sends staged since the last wait now (the end of a pass), so output a
    /// handler's `send` accepted is in the kernel when the pass returns, as a direct send's is.
    fn flush_sends(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// Whether output of channels already removed is still owed (io_uring's lingers and sends
    /// in flight): only the loop's own waits deliver it, where a kernel's socket buffer would
    /// send it alone, so a loop whose map emptied waits for it before it returns.
    fn owes_output(&self) -> bool {
        false
    }
}

/// What a stream-mode channel may have on the ring and not yet sent (staged and in flight);
/// past it, its `send` would block as a full socket's would.
pub(crate) const STREAM_SEND_CAP: usize = 64 * 1024;

/// Builds the poller for a backend.
fn new_poller(backend: Backend) -> io::Result<Box<dyn Poller>> {
    Ok(match backend.resolve() {
        Backend::Select => Box::new(select::Select::new()),
        Backend::Poll => Box::new(poll::Poll::new()),
        #[cfg(any(target_os = "linux", target_os = "android"))]
        Backend::Epoll => Box::new(epoll::Epoll::new()?),
        #[cfg(target_os = "linux")]
        Backend::Uring => Box::new(uring::Uring::new()?),
        other => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("the {} backend is not available on this platform", other.name()),
            ))
        }
    })
}

/// Whether this process may set up an io_uring instance: probed once, then cached.
fn uring_available() -> bool {
    #[cfg(target_os = "linux")]
    {
        static PROBE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *PROBE.get_or_init(|| uring::Uring::new().is_ok())
    }
    #[cfg(not(target_os = "linux"))]
    false
}

/// The error for a descriptor that is not open, the same on every backend.
fn not_open() -> io::Error {
    io::Error::from_raw_os_error(libc::EBADF)
}
