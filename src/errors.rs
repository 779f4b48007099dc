//! How errors are classified and reported: asyncore's `_DISCONNECTED` set, `strerror`, and the
//! condensed report of `handle_error`.

use std::any::Any;
use std::io;

/// asyncore's `_DISCONNECTED` set: whether `e` means the peer is gone (reset, not connected,
/// aborted, broken pipe, shut down, bad descriptor), which the loop turns into `handle_close`
/// rather than `handle_error`. Public so that code keeping its own map (the Python package)
/// classifies errors exactly as the loop does.
///
/// ```
/// use std::io::{Error, ErrorKind};
/// assert!(sockloop::is_disconnect(&Error::from(ErrorKind::ConnectionReset)));
/// assert!(sockloop::is_disconnect(&Error::from_raw_os_error(libc::ESHUTDOWN)));
/// assert!(!sockloop::is_disconnect(&Error::from(ErrorKind::WouldBlock)));
/// ```
pub fn is_disconnect(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(e.kind(), ConnectionReset | NotConnected | ConnectionAborted | BrokenPipe)
        || matches!(e.raw_os_error(), Some(libc::ESHUTDOWN) | Some(libc::EBADF))
}

/// The error [`Channel::send_all`](crate::Channel::send_all) fails with when a channel's
/// unsent output would pass its hard limit (a peer that does not read). Its kind is
/// [`ErrorKind::OutOfMemory`](io::ErrorKind::OutOfMemory); [`OutputLimit::is`] tells it apart
/// and [`OutputLimit::of`] gives the figures.
///
/// ```
/// use sockloop::OutputLimit;
/// let e = OutputLimit::error(70 << 20, 64 << 20);
/// assert!(OutputLimit::is(&e));
/// assert_eq!(OutputLimit::of(&e).map(|l| l.limit), Some(64 << 20));
/// assert_eq!(e.kind(), std::io::ErrorKind::OutOfMemory);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputLimit {
    /// How many bytes would have been queued.
    pub wanted: usize,
    /// The channel's hard limit.
    pub limit: usize,
}

impl OutputLimit {
    /// The `io::Error` carrying an `OutputLimit`.
    ///
    /// ```
    /// assert!(sockloop::OutputLimit::error(2, 1).to_string().contains("hard limit of 1"));
    /// ```
    pub fn error(wanted: usize, limit: usize) -> io::Error {
        io::Error::new(io::ErrorKind::OutOfMemory, OutputLimit { wanted, limit })
    }

    /// Whether `err` is an output-limit error.
    ///
    /// ```
    /// assert!(!sockloop::OutputLimit::is(&std::io::Error::other("x")));
    /// ```
    pub fn is(err: &io::Error) -> bool {
        Self::of(err).is_some()
    }

    /// The figures of an output-limit error.
    ///
    /// ```
    /// let e = sockloop::OutputLimit::error(10, 4);
    /// assert_eq!(sockloop::OutputLimit::of(&e).unwrap().wanted, 10);
    /// ```
    pub fn of(err: &io::Error) -> Option<&OutputLimit> {
        err.get_ref().and_then(|e| e.downcast_ref::<OutputLimit>())
    }
}

impl std::fmt::Display for OutputLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "unsent output would reach {} bytes, over the channel's hard limit of {}",
            self.wanted, self.limit
        )
    }
}

impl std::error::Error for OutputLimit {}

/// asyncore `_strerror(code)`: the OS text for an error number. Never fails: an unknown number
/// gives "Unknown error N".
///
/// ```
/// assert!(sockloop::strerror(libc::ECONNREFUSED).contains("refused"));
/// assert!(sockloop::strerror(123_456).contains("123456"));
/// ```
pub fn strerror(code: i32) -> String {
    let text = io::Error::from_raw_os_error(code).to_string();
    // std appends " (os error N)"; asyncore's text is the bare message.
    match text.rfind(" (os error ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// Turns a caught panic into the error `handle_error` receives.
pub(crate) fn panic_error(payload: Box<dyn Any + Send>) -> io::Error {
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic payload".to_string());
    io::Error::other(HandlerPanic(msg))
}

/// The error a panicking handler is reported with: `handle_error` can tell it apart with
/// [`HandlerPanic::is`].
///
/// ```
/// use sockloop::HandlerPanic;
/// let plain = std::io::Error::other("x");
/// assert!(!HandlerPanic::is(&plain));
/// ```
#[derive(Debug)]
pub struct HandlerPanic(pub String);

impl HandlerPanic {
    /// Whether `err` came from a caught panic.
    ///
    /// ```
    /// assert!(!sockloop::HandlerPanic::is(&std::io::Error::from(std::io::ErrorKind::Other)));
    /// ```
    pub fn is(err: &io::Error) -> bool {
        err.get_ref().is_some_and(|e| e.is::<HandlerPanic>())
    }
}

impl std::fmt::Display for HandlerPanic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "handler panicked: {}", self.0)
    }
}

impl std::error::Error for HandlerPanic {}

/// asyncore's `compact_traceback` for Rust: one line naming the dispatcher type, the handler
/// that failed, the channel and the error, which the default `handle_error` logs.
///
/// ```
/// let line = sockloop::compact_report("Echo", "handle_read", "<Channel socket fd=7>", &std::io::Error::other("boom"));
/// assert_eq!(line, "uncaptured error in Echo::handle_read on <Channel socket fd=7>: boom");
/// ```
pub fn compact_report(type_name: &str, handler: &str, channel: &str, err: &io::Error) -> String {
    format!("uncaptured error in {type_name}::{handler} on {channel}: {err}")
}

/// EMFILE/ENFILE: the process or system is out of descriptors.
pub(crate) fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// Says what went wrong where a person will see it: through `log` when a logger takes error
/// records for the `sockloop` target, on stderr otherwise (asyncore printed its reports; a
/// program with no logger installed must not lose them). Once per call.
pub(crate) fn emit(line: &str) {
    let meta = log::Metadata::builder().level(log::Level::Error).target("sockloop").build();
    if log::max_level() >= log::LevelFilter::Error && log::logger().enabled(&meta) {
        log::error!(target: "sockloop", "{line}");
    } else {
        eprintln!("sockloop: {line}");
    }
}
