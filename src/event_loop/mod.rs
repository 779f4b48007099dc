//! [`Loop`]: asyncore's map of channels and its `loop()`, plus timers, a cross-thread waker and
//! signals.
//!
//! - `handle.rs`: [`LoopHandle`], every service of the loop, written once;
//! - `map.rs`: the slab of entries keyed by [`Token`] (index plus generation) and the selector
//!   that watches them; while a handler runs, its channel and dispatcher are lent out of the
//!   slab, so its [`Context`](crate::Context) can offer the rest of the map without shared
//!   ownership;
//! - `interest.rs`: what a channel is watched for, one pure function;
//! - `pass.rs`: one pass, from the wait to the handlers and back;
//! - `timers.rs`, `waker.rs`, `signals.rs`: the sources other than channels;
//! - `default_map.rs`: asyncore's global map, one per thread.

mod handle;
pub(crate) mod interest;
mod map;
mod pass;
mod signals;
mod timers;
mod waker;

pub mod default_map;

pub use handle::LoopHandle;
pub use timers::TimerId;
pub use waker::Waker;

use crate::poller::{Backend, Event};
use std::io;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

/// How long [`Loop::run_with`] goes on, once its map is empty, waiting for io_uring to send
/// what closed channels' `send` accepted (at most 64 KiB each): a peer that reads at all takes
/// it well within this, and one that never reads cannot hold the loop longer.
const OWED_OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// Size of the receive buffer the loop lends to handlers as [`Context::scratch`](crate::Context).
///
/// ```
/// assert_eq!(sockloop::event_loop::SCRATCH_SIZE, 64 * 1024);
/// ```
pub const SCRATCH_SIZE: usize = 64 * 1024;

/// Names one channel of a [`Loop`]: its slab index and a generation, so a token kept after its
/// channel closed never reaches a newer channel that reused the slot (or the descriptor).
///
/// ```
/// let mut lp = sockloop::Loop::new()?;
/// let t = lp.add(sockloop::Channel::tcp_listener("127.0.0.1:0".parse().unwrap(), 1)?, sockloop::Ignore)?;
/// assert!(lp.contains(t));
/// lp.close_channel(t);
/// assert!(!lp.contains(t));
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// The packing is public for code that keeps its own map over a [`Selector`](crate::poller::Selector)
/// (the Python package): the generation in the high 32 bits, the index in the low 32.
///
/// ```
/// use sockloop::Token;
/// let t = Token::new(7, 3);
/// assert_eq!((t.index(), t.generation()), (7, 3));
/// assert_eq!(Token::from_raw(t.to_raw()), t);
/// assert_eq!(t.to_raw(), (3 << 32) | 7);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(u64);

impl Token {
    /// The token of slot `index` (below 2^32) in its `generation`.
    ///
    /// ```
    /// assert_eq!(sockloop::Token::new(1, 2).index(), 1);
    /// ```
    pub fn new(index: usize, generation: u32) -> Token {
        Token(((generation as u64) << 32) | (index as u64 & 0xffff_ffff))
    }

    /// The slot index.
    ///
    /// ```
    /// assert_eq!(sockloop::Token::new(9, 0).index(), 9);
    /// ```
    pub fn index(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }

    /// The generation: which of the channels that used this slot.
    ///
    /// ```
    /// assert_eq!(sockloop::Token::new(0, 5).generation(), 5);
    /// ```
    pub fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The 64-bit form the selector carries in its events.
    ///
    /// ```
    /// assert_eq!(sockloop::Token::new(1, 1).to_raw(), (1 << 32) | 1);
    /// ```
    pub fn to_raw(self) -> u64 {
        self.0
    }

    /// A token back from its 64-bit form.
    ///
    /// ```
    /// let t = sockloop::Token::new(4, 4);
    /// assert_eq!(sockloop::Token::from_raw(t.to_raw()), t);
    /// ```
    pub fn from_raw(raw: u64) -> Token {
        Token(raw)
    }
}

/// The options of asyncore's `loop(timeout, use_poll, map, count)` (the backend and map are the
/// [`Loop`] itself).
///
/// ```
/// use std::time::Duration;
/// let opts = sockloop::RunOptions::new().timeout(Duration::from_millis(10)).count(3);
/// assert_eq!(opts.count, Some(3));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunOptions {
    /// The cap on one wait (asyncore's `timeout`, default 30 s). Timers shorten it.
    pub timeout: Duration,
    /// Stop after this many passes (asyncore's `count`); `None` runs until the map is empty.
    pub count: Option<usize>,
    /// Keep running with an empty map until [`LoopHandle::stop`](crate::LoopHandle::stop) (for loops fed by a [`Waker`]).
    pub until_stopped: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions { timeout: Duration::from_secs(30), count: None, until_stopped: false }
    }
}

impl RunOptions {
    /// asyncore's defaults: 30 s timeout, no count.
    ///
    /// ```
    /// assert_eq!(sockloop::RunOptions::new().timeout, std::time::Duration::from_secs(30));
    /// ```
    pub fn new() -> RunOptions {
        RunOptions::default()
    }

    /// Sets the cap on one wait.
    ///
    /// ```
    /// let o = sockloop::RunOptions::new().timeout(std::time::Duration::ZERO);
    /// assert!(o.timeout.is_zero());
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> RunOptions {
        self.timeout = timeout;
        self
    }

    /// Sets the number of passes.
    ///
    /// ```
    /// assert_eq!(sockloop::RunOptions::new().count(1).count, Some(1));
    /// ```
    pub fn count(mut self, passes: usize) -> RunOptions {
        self.count = Some(passes);
        self
    }

    /// Runs until [`LoopHandle::stop`](crate::LoopHandle::stop), even with an empty map.
    ///
    /// ```
    /// assert!(sockloop::RunOptions::new().until_stopped().until_stopped);
    /// ```
    pub fn until_stopped(mut self) -> RunOptions {
        self.until_stopped = true;
        self
    }
}

/// asyncore's map and `loop()`: owns channels with their dispatchers and runs them.
///
/// A `Loop` is its [`LoopHandle`] (the map and every service: `add`, `get_mut`, timers, the
/// waker ..., reached through `Deref`) plus what runs passes: [`run`](Loop::run),
/// [`run_with`](Loop::run_with), [`poll`](Loop::poll) and [`shutdown`](Loop::shutdown). No
/// method is defined on both, so every call means one thing.
///
/// ```
/// use sockloop::{Channel, Loop, RunOptions};
/// use std::time::Duration;
/// let mut lp = Loop::new()?;                       // epoll on Linux
/// lp.add(Channel::tcp_listener("127.0.0.1:0".parse().unwrap(), 1024)?, sockloop::Ignore)?;
/// lp.run_with(RunOptions::new().timeout(Duration::from_millis(1)).count(2))?;
/// assert_eq!(lp.len(), 1);
/// lp.close_all();
/// assert!(lp.is_empty());
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Loop {
    handle: LoopHandle,
    scratch: Vec<u8>,
    events: Vec<Event>,
    /// Tokens being re-asked this pass (kept to reuse its allocation).
    reask: Vec<Token>,
    /// The TLS channels with decrypted plaintext, taken from the map for one pass.
    ready: Vec<Token>,
}

impl Deref for Loop {
    type Target = LoopHandle;
    fn deref(&self) -> &LoopHandle {
        &self.handle
    }
}

impl DerefMut for Loop {
    fn deref_mut(&mut self) -> &mut LoopHandle {
        &mut self.handle
    }
}

impl Loop {
    /// A loop on the best backend of the platform ([`Backend::Auto`]).
    ///
    /// ```
    /// assert!(sockloop::Loop::new()?.is_empty());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new() -> io::Result<Loop> {
        Loop::with_backend(Backend::Auto)
    }

    /// A loop on the given backend (asyncore's `use_poll`, generalised).
    ///
    /// ```
    /// let lp = sockloop::Loop::with_backend(sockloop::Backend::Select)?;
    /// assert_eq!(lp.backend(), sockloop::Backend::Select);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn with_backend(backend: Backend) -> io::Result<Loop> {
        Ok(Loop {
            handle: LoopHandle::new(backend)?,
            scratch: vec![0; SCRATCH_SIZE],
            events: Vec::with_capacity(1024),
            reask: Vec::new(),
            ready: Vec::new(),
        })
    }

    /// asyncore `loop()` with its defaults: runs until the map is empty (and no timer is left)
    /// or [`stop`](LoopHandle::stop) is called.
    ///
    /// On io_uring, output that closed channels' `send` accepted is sent by the ring, not by
    /// the kernel on its own, so once the map is empty the loop goes on waiting until the ring
    /// has delivered it: at most 2 s, or until the deadline of a [`shutdown`](Loop::shutdown).
    ///
    /// ```
    /// sockloop::Loop::new()?.run()?; // nothing in the map: returns at once
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn run(&mut self) -> io::Result<()> {
        self.run_with(RunOptions::default())
    }

    /// asyncore `loop(timeout, use_poll, map, count)`.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let mut lp = sockloop::Loop::new()?;
    /// lp.add(sockloop::Channel::tcp_listener("127.0.0.1:0".parse().unwrap(), 1)?, sockloop::Ignore)?;
    /// let t0 = Instant::now();
    /// lp.run_with(sockloop::RunOptions::new().timeout(Duration::from_millis(20)).count(1))?;
    /// assert!(t0.elapsed() >= Duration::from_millis(20)); // nothing was ready: one full wait
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn run_with(&mut self, opts: RunOptions) -> io::Result<()> {
        self.handle.stop = false;
        let mut passes = 0;
        let mut owed_until = None;
        while !self.handle.stop && opts.count.is_none_or(|c| passes < c) {
            let now = Instant::now();
            let shutdown = self.handle.shutdown_deadline;
            if shutdown.is_some_and(|d| d <= now) {
                self.handle.close_all();
                break;
            }
            let idle = !opts.until_stopped && self.handle.pending_timers() == 0;
            let mut timeout = opts.timeout;
            if self.handle.is_empty() && (idle || shutdown.is_some()) {
                // Done, once the ring delivered what closed channels' `send` accepted.
                let until = *owed_until.get_or_insert_with(|| shutdown.unwrap_or(now + OWED_OUTPUT_GRACE));
                if until <= now || !self.handle.map.selector().owes_output() {
                    break;
                }
                timeout = timeout.min(until - now);
            } else {
                owed_until = None; // a handler added a channel meanwhile: its own wait later
                if let Some(deadline) = shutdown {
                    timeout = timeout.min(deadline - now);
                }
            }
            self.poll(Some(timeout))?;
            passes += 1;
        }
        // io_uring: submits what the ring still owes, and closes the lingers that are done.
        let _ = self.handle.map.selector().flush_sends();
        Ok(())
    }

    /// Graceful shutdown: closes every listening channel at once, calls every other channel's
    /// [`handle_shutdown`](crate::Dispatcher::handle_shutdown) (by default: stop reading, send
    /// what is owed, then close; [`AsyncChat`](crate::chat::AsyncChat) also drains its
    /// producers), and closes whatever is left after `grace`. [`run`](Loop::run) returns when
    /// the map is empty or the deadline passes.
    ///
    /// ```
    /// let mut lp = sockloop::Loop::new()?;
    /// lp.add(sockloop::Channel::tcp_listener("127.0.0.1:0".parse().unwrap(), 1)?, sockloop::Ignore)?;
    /// lp.shutdown(std::time::Duration::from_secs(5));
    /// assert!(lp.is_empty());
    /// lp.run()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn shutdown(&mut self, grace: Duration) {
        self.handle.shutdown_deadline = Some(Instant::now() + grace);
        for token in self.handle.map.tokens() {
            self.with_body(token, |lp, body| {
                if body.channel.accepting() {
                    body.channel.close();
                } else if !body.channel.is_closed() {
                    lp.deliver_received(token, body);
                    if !body.channel.is_closed() {
                        lp.call(token, body, crate::Handler::Shutdown);
                    }
                }
            });
        }
    }
}
