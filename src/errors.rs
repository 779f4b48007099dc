//! How errors are classified and reported: asyncore's `_DISCONNECTED` set, `strerror`, and the
//! condensed report of `handle_error`.

use std::any::Any;
use std::io;

/// asyncore's `_DISCONNECTED`: errors that mean the peer is gone, handled by `handle_close`
/// rather than `handle_error`.
pub(crate) fn is_disconnect(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(e.kind(), ConnectionReset | NotConnected | ConnectionAborted | BrokenPipe)
        || matches!(e.raw_os_error(), Some(libc::ESHUTDOWN) | Some(libc::EBADF))
}

/// The error `send_all` returns when a channel's unsent output would pass its hard limit.
pub(crate) fn limit_error(wanted: usize, limit: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::OutOfMemory,
        format!("unsent output would reach {wanted} bytes, over the channel's hard limit of {limit}"),
    )
}

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
