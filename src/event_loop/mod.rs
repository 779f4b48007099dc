//! [`Loop`]: asyncore's map of channels and its `loop()`, plus timers and a cross-thread waker.
//!
//! The map is a slab of entries keyed by [`Token`] (index plus generation). While a channel's
//! handler runs, its channel and dispatcher are lent out of the slab, so the handler's
//! [`Context`](crate::Context) can offer the rest of the map without shared ownership. A pass:
//! re-ask the interest of volatile channels, wait (capped by the run timeout and the next
//! timer), dispatch each event whose token is still current, fire due timers.

mod dispatch;
mod map;
mod signals;
mod timers;
mod waker;

pub mod default_map;

pub use timers::TimerId;
pub use waker::Waker;

pub(crate) use map::Core;
pub(crate) use timers::Action;

use crate::poller::{new_poller, Backend, Event};
use crate::{Channel, Dispatcher};
use std::io;
use std::time::{Duration, Instant};

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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(u64);

impl Token {
    pub(crate) fn new(index: usize, gen: u32) -> Token {
        Token(((gen as u64) << 32) | index as u64)
    }

    pub(crate) fn index(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }

    pub(crate) fn gen(self) -> u32 {
        (self.0 >> 32) as u32
    }

    pub(crate) fn raw(self) -> u64 {
        self.0
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
    /// Keep running with an empty map until [`Loop::stop`] (for loops fed by a [`Waker`]).
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

    /// Runs until [`Loop::stop`], even with an empty map.
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
    pub(crate) core: Core,
    scratch: Vec<u8>,
    events: Vec<Event>,
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
        let resolved = backend.resolve();
        Ok(Loop {
            core: Core::new(new_poller(resolved)?, resolved),
            scratch: vec![0; SCRATCH_SIZE],
            events: Vec::with_capacity(1024),
        })
    }

    /// The concrete backend this loop waits with.
    ///
    /// ```
    /// assert_ne!(sockloop::Loop::new()?.backend(), sockloop::Backend::Auto);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn backend(&self) -> Backend {
        self.core.backend
    }

    /// asyncore `add_channel`: puts a channel and its dispatcher in the map. Fails when the
    /// backend cannot watch the descriptor (select and descriptors >= 1024).
    ///
    /// ```
    /// let mut lp = sockloop::Loop::new()?;
    /// lp.add(sockloop::Channel::tcp_listener("127.0.0.1:0".parse().unwrap(), 1)?, sockloop::Ignore)?;
    /// assert_eq!(lp.len(), 1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn add(&mut self, channel: Channel, handler: impl Dispatcher) -> io::Result<Token> {
        self.core.insert(channel, Box::new(handler))
    }

    /// Whether `token` names a channel still in the map.
    ///
    /// ```
    /// let mut lp = sockloop::Loop::new()?;
    /// let t = lp.add(sockloop::Channel::tcp_listener("127.0.0.1:0".parse().unwrap(), 1)?, sockloop::Ignore)?;
    /// assert!(lp.contains(t));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn contains(&self, token: Token) -> bool {
        self.core.contains(token)
    }

    /// The number of channels in the map.
    ///
    /// ```
    /// assert_eq!(sockloop::Loop::new()?.len(), 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.core.len()
    }

    /// Whether the map is empty.
    ///
    /// ```
    /// assert!(sockloop::Loop::new()?.is_empty());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.core.len() == 0
    }

    /// The dispatcher of `token` if it is (or wraps) a `T`; the loop re-asks its
    /// `readable()`/`writable()` at the end of the pass.
    ///
    /// ```
    /// struct Counter(u32);
    /// impl sockloop::Dispatcher for Counter {}
    /// let mut lp = sockloop::Loop::new()?;
    /// let t = lp.add(sockloop::Channel::tcp_listener("127.0.0.1:0".parse().unwrap(), 1)?, Counter(7))?;
    /// assert_eq!(lp.get_mut::<Counter>(t).map(|c| c.0), Some(7));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn get_mut<T: Dispatcher>(&mut self, token: Token) -> Option<&mut T> {
        self.core.get_mut::<T>(token).map(|(h, _)| h)
    }

    /// The channel of `token`.
    ///
    /// ```
    /// let mut lp = sockloop::Loop::new()?;
    /// let t = lp.add(sockloop::Channel::tcp_listener("127.0.0.1:0".parse().unwrap(), 1)?, sockloop::Ignore)?;
    /// assert!(lp.channel_mut(t).unwrap().accepting());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn channel_mut(&mut self, token: Token) -> Option<&mut Channel> {
        self.core.channel_mut(token)
    }

    /// Calls `f` with every dispatcher that is (or wraps) a `T`, and its channel.
    ///
    /// ```
    /// struct Peer;
    /// impl sockloop::Dispatcher for Peer {}
    /// let mut lp = sockloop::Loop::new()?;
    /// lp.add(sockloop::Channel::tcp_listener("127.0.0.1:0".parse().unwrap(), 1)?, Peer)?;
    /// let mut n = 0;
    /// lp.for_each_mut::<Peer>(|_, _, _| n += 1);
    /// assert_eq!(n, 1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn for_each_mut<T: Dispatcher>(&mut self, f: impl FnMut(Token, &mut T, &mut Channel)) {
        self.core.for_each_mut(f)
    }

    /// Closes one channel (asyncore `close()` from outside it): it leaves the map at once and
    /// gets no further events. Returns whether it was there.
    ///
    /// ```
    /// let mut lp = sockloop::Loop::new()?;
    /// let t = lp.add(sockloop::Channel::tcp_listener("127.0.0.1:0".parse().unwrap(), 1)?, sockloop::Ignore)?;
    /// assert!(lp.close_channel(t));
    /// assert!(lp.is_empty());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn close_channel(&mut self, token: Token) -> bool {
        self.core.close_token(token)
    }

    /// asyncore `close_all(map)`: closes every channel and empties the map.
    ///
    /// ```
    /// let mut lp = sockloop::Loop::new()?;
    /// lp.add(sockloop::Channel::tcp_listener("127.0.0.1:0".parse().unwrap(), 1)?, sockloop::Ignore)?;
    /// lp.close_all();
    /// assert!(lp.is_empty());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn close_all(&mut self) {
        self.core.close_all()
    }

    /// Sets (or with `None` clears) the idle timeout of a channel: when it sees no event for
    /// `timeout`, its `handle_timeout` runs (default: close). Returns whether it is in the map.
    ///
    /// ```
    /// let mut lp = sockloop::Loop::new()?;
    /// let t = lp.add(sockloop::Channel::tcp_listener("127.0.0.1:0".parse().unwrap(), 1)?, sockloop::Ignore)?;
    /// assert!(lp.set_idle_timeout(t, Some(std::time::Duration::from_millis(5))));
    /// lp.run()?; // the listener idles out, the map empties, run returns
    /// assert!(lp.is_empty());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn set_idle_timeout(&mut self, token: Token, timeout: Option<Duration>) -> bool {
        self.core.set_idle_of(token, timeout)
    }

    /// Chooses whether a panicking handler is caught and reported to `handle_error` (the
    /// default) or propagated out of [`run`](Loop::run). After a propagated panic the channel
    /// that panicked is gone from the map.
    ///
    /// ```
    /// let mut lp = sockloop::Loop::new()?;
    /// lp.set_catch_panics(false);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn set_catch_panics(&mut self, catch: bool) {
        self.core.catch_panics = catch;
    }

    /// asyncore's `ExitNow`: makes [`run`](Loop::run) return after the current handler.
    ///
    /// ```
    /// let mut lp = sockloop::Loop::new()?;
    /// lp.call_later(std::time::Duration::ZERO, |lp| lp.stop());
    /// lp.run_with(sockloop::RunOptions::new().until_stopped())?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn stop(&mut self) {
        self.core.stop = true;
    }

    /// Runs `f` with this loop after `delay` (asyncio's `call_later`).
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc, time::Duration};
    /// let mut lp = sockloop::Loop::new()?;
    /// let fired = Rc::new(Cell::new(false));
    /// let f = fired.clone();
    /// lp.call_later(Duration::from_millis(1), move |_| f.set(true));
    /// lp.run()?; // returns once no channel and no timer is left
    /// assert!(fired.get());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn call_later(&mut self, delay: Duration, f: impl FnOnce(&mut Loop) + 'static) -> TimerId {
        self.core.call_later(delay, f)
    }

    /// Runs `f` at `deadline` (monotonic clock).
    ///
    /// ```
    /// let mut lp = sockloop::Loop::new()?;
    /// lp.call_at(std::time::Instant::now(), |lp| lp.stop());
    /// lp.run()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn call_at(&mut self, deadline: Instant, f: impl FnOnce(&mut Loop) + 'static) -> TimerId {
        self.core.timers.schedule(deadline, Action::Once(Box::new(f)))
    }

    /// Runs `f` every `period` until cancelled; missed ticks after a stall are skipped.
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc, time::Duration};
    /// let mut lp = sockloop::Loop::new()?;
    /// let n = Rc::new(Cell::new(0));
    /// let m = n.clone();
    /// lp.call_every(Duration::from_millis(1), move |lp| { m.set(m.get() + 1); if m.get() == 3 { lp.stop() } });
    /// lp.run()?;
    /// assert_eq!(n.get(), 3);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn call_every(&mut self, period: Duration, f: impl FnMut(&mut Loop) + 'static) -> TimerId {
        self.core.call_every(period, f)
    }

    /// Cancels a timer; returns whether it was still pending. A cancelled timer never fires.
    ///
    /// ```
    /// let mut lp = sockloop::Loop::new()?;
    /// let id = lp.call_later(std::time::Duration::from_secs(1), |_| unreachable!());
    /// assert!(lp.cancel(id));
    /// lp.run()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn cancel(&mut self, id: TimerId) -> bool {
        self.core.timers.cancel(id)
    }

    /// The number of pending timers.
    ///
    /// ```
    /// let mut lp = sockloop::Loop::new()?;
    /// lp.call_later(std::time::Duration::from_secs(9), |_| {});
    /// assert_eq!(lp.pending_timers(), 1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn pending_timers(&self) -> usize {
        self.core.timers.len()
    }

    /// A handle that wakes this loop from any thread and runs closures on it
    /// (`call_soon_threadsafe`).
    ///
    /// ```
    /// let mut lp = sockloop::Loop::new()?;
    /// let waker = lp.waker()?;
    /// std::thread::spawn(move || waker.call_soon(|lp| lp.stop())).join().unwrap()?;
    /// lp.run_with(sockloop::RunOptions::new().until_stopped())?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn waker(&mut self) -> io::Result<Waker> {
        self.core.waker()
    }

    /// Calls `f` on the loop thread whenever `signal` (such as `libc::SIGTERM`) arrives,
    /// replacing any handler set before for it. The signal is caught through signal-hook's
    /// self-pipe, so `f` runs as an ordinary callback during a pass, never in signal context.
    ///
    /// ```
    /// let mut lp = sockloop::Loop::new()?;
    /// lp.on_signal(libc::SIGUSR1, |lp| lp.stop())?;
    /// signal_hook::low_level::raise(libc::SIGUSR1)?;
    /// lp.run_with(sockloop::RunOptions::new().until_stopped())?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn on_signal(&mut self, signal: i32, f: impl FnMut(&mut Loop) + 'static) -> io::Result<()> {
        self.core.on_signal(signal, Box::new(f))
    }

    /// Graceful shutdown: closes every listening channel at once, calls every other channel's
    /// [`handle_shutdown`](Dispatcher::handle_shutdown) (by default: stop reading, send what is
    /// queued, then close; [`AsyncChat`](crate::chat::AsyncChat) also drains its producers),
    /// and closes whatever is left after `grace`. [`run`](Loop::run) returns when the map is
    /// empty or the deadline passes.
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
        self.core.shutdown_deadline = Some(Instant::now() + grace);
        for token in self.core.tokens() {
            let Some(mut body) = self.core.lend(token) else { continue };
            if body.channel.accepting() {
                body.channel.close();
            } else if !body.channel.is_closed() {
                self.call(token, &mut body, "handle_shutdown", &mut |h, cx| h.handle_shutdown(cx));
            }
            self.core.settle(token, body);
        }
    }

    /// Whether [`shutdown`](Loop::shutdown) was called.
    ///
    /// ```
    /// assert!(!sockloop::Loop::new()?.is_shutting_down());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_shutting_down(&self) -> bool {
        self.core.shutdown_deadline.is_some()
    }

    /// asyncore `loop()` with its defaults: runs until the map is empty (and no timer is left)
    /// or [`stop`](Loop::stop) is called.
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
        self.core.stop = false;
        let mut passes = 0;
        while !self.core.stop && opts.count.is_none_or(|c| passes < c) {
            if !opts.until_stopped && self.core.len() == 0 && self.core.timers.len() == 0 {
                break;
            }
            let mut timeout = opts.timeout;
            if let Some(deadline) = self.core.shutdown_deadline {
                let now = Instant::now();
                if self.core.len() == 0 || deadline <= now {
                    self.core.close_all();
                    break;
                }
                timeout = timeout.min(deadline - now);
            }
            self.poll(Some(timeout))?;
            passes += 1;
        }
        Ok(())
    }

    /// asyncore `poll(timeout)`: one pass. Waits up to `timeout` (`None`: until something
    /// happens), dispatches what is ready, fires due timers.
    ///
    /// ```
    /// let mut lp = sockloop::Loop::new()?;
    /// lp.poll(Some(std::time::Duration::ZERO))?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn poll(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.core.refresh_volatile();
        let wait = self.core.wait_time(timeout);
        let mut events = std::mem::take(&mut self.events);
        events.clear();
        let waited = self.core.poller.wait(&mut events, wait);
        if let Err(e) = waited {
            self.events = events;
            return Err(e);
        }
        for ev in events.iter() {
            if self.core.stop {
                break;
            }
            self.dispatch(*ev);
        }
        self.events = events;
        if !self.core.stop {
            self.fire_timers();
        }
        self.core.refresh_dirty();
        self.deliver_due_closes();
        Ok(())
    }
}
