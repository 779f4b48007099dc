//! The per-thread default map: asyncore's global `socket_map`, without global state shared
//! between threads. Each thread has its own lazily created [`Loop`] on the auto backend.
//!
//! ```
//! use sockloop::{default_map, Channel, RunOptions};
//! default_map::add(Channel::tcp_listener("127.0.0.1:0".parse().unwrap(), 8)?, sockloop::Ignore)?;
//! assert_eq!(default_map::len(), 1);
//! default_map::close_all();
//! default_map::run(RunOptions::new())?; // empty map: returns at once
//! # Ok::<(), std::io::Error>(())
//! ```

use crate::{Channel, Dispatcher, Loop, RunOptions, Token};
use std::cell::RefCell;
use std::io;

thread_local! {
    static DEFAULT: RefCell<Option<Loop>> = const { RefCell::new(None) };
    static RUNNING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with this thread's default loop, creating it on first use. Fails while
/// [`run`] is running it (inside handlers, use the [`Context`](crate::Context) instead).
///
/// ```
/// let n = sockloop::default_map::with(|lp| lp.len())?;
/// assert_eq!(n, 0);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn with<R>(f: impl FnOnce(&mut Loop) -> R) -> io::Result<R> {
    if RUNNING.with(|r| r.get()) {
        return Err(io::Error::other(
            "the default map is running; inside a handler use Context::add and friends",
        ));
    }
    DEFAULT.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(Loop::new()?);
        }
        Ok(f(slot.as_mut().expect("created above")))
    })
}

/// asyncore's `dispatcher.add_channel()` with no map: adds to the default map.
///
/// ```
/// let t = sockloop::default_map::add(sockloop::Channel::tcp_listener("127.0.0.1:0".parse().unwrap(), 1)?, sockloop::Ignore)?;
/// assert!(sockloop::default_map::with(|lp| lp.contains(t))?);
/// sockloop::default_map::close_all();
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn add(channel: Channel, handler: impl Dispatcher) -> io::Result<Token> {
    with(|lp| lp.add(channel, handler))?
}

/// The number of channels in the default map (0 while it runs).
///
/// ```
/// assert_eq!(sockloop::default_map::len(), 0);
/// ```
pub fn len() -> usize {
    with(|lp| lp.len()).unwrap_or(0)
}

/// asyncore `close_all()` with no map: closes every channel of the default map.
///
/// ```
/// sockloop::default_map::close_all();
/// assert_eq!(sockloop::default_map::len(), 0);
/// ```
pub fn close_all() {
    let _ = with(|lp| lp.close_all());
}

/// asyncore `loop()` with no map: runs the default map.
///
/// ```
/// sockloop::default_map::run(sockloop::RunOptions::new().count(1))?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn run(opts: RunOptions) -> io::Result<()> {
    with(|_| ())?; // creates the loop, or fails if it is already running
    let lp = DEFAULT.with(|c| c.borrow_mut().take()).expect("created by with()");
    RUNNING.with(|r| r.set(true));
    // Put the loop back even if a handler's panic propagates out of run.
    struct Restore(Option<Loop>);
    impl Drop for Restore {
        fn drop(&mut self) {
            RUNNING.with(|r| r.set(false));
            let lp = self.0.take();
            DEFAULT.with(|c| *c.borrow_mut() = lp);
        }
    }
    // The guard owns the loop while it runs, so an unwinding panic still puts it back.
    let mut guard = Restore(Some(lp));
    guard.0.as_mut().expect("just set").run_with(opts)
}
