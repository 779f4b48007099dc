//! [`LoopHandle`]: every service of the loop, written once. A [`Loop`] is a `LoopHandle` plus
//! the machinery that runs passes (it dereferences to it), and a handler reaches the same
//! handle as [`Context::lp`](crate::Context::lp).

use super::map::{Map, Restored, Timing};
use super::signals::{Signals, SIGNAL_TOKEN};
use super::timers::{Action, TimerId, Timers};
use super::waker::{Jobs, Waker};
use super::{Loop, Token};
use crate::poller::{Backend, Interest};
use crate::{Channel, Dispatcher};
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The loop's map and services: add and find channels, close them, timers, idle timeouts,
/// pauses, the cross-thread waker, signals, `stop`. Reached as `lp` (a [`Loop`] dereferences to
/// it) from outside a handler, as `cx.lp` inside one, and as the `&mut Loop` a timer or waker
/// callback gets.
///
/// Services that concern one channel take its [`Token`] (`cx.token()` for the running one),
/// so the same call works from its own handler, another channel's, or a timer:
///
/// ```
/// use sockloop::{Context, Dispatcher};
/// use std::time::Duration;
/// struct Session;
/// impl Dispatcher for Session {
///     fn handle_connect(&mut self, cx: &mut Context<'_>) -> std::io::Result<()> {
///         cx.lp.set_idle_timeout(cx.token(), Some(Duration::from_secs(300)));
///         Ok(())
///     }
/// }
/// ```
pub struct LoopHandle {
    pub(super) map: Map,
    pub(super) timers: Timers,
    pub(super) stop: bool,
    pub(super) catch_panics: bool,
    pub(super) jobs: Option<Arc<Jobs>>,
    pub(super) signals: Option<Signals>,
    pub(super) shutdown_deadline: Option<Instant>,
}

impl LoopHandle {
    pub(super) fn new(backend: Backend) -> io::Result<LoopHandle> {
        Ok(LoopHandle {
            map: Map::new(backend)?,
            timers: Timers::default(),
            stop: false,
            catch_panics: true,
            jobs: None,
            signals: None,
            shutdown_deadline: None,
        })
    }

    /// The concrete backend the loop waits with.
    ///
    /// ```
    /// assert_ne!(sockloop::Loop::new()?.backend(), sockloop::Backend::Auto);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn backend(&self) -> Backend {
        self.map.backend()
    }

    /// asyncore `add_channel`: puts a channel and its dispatcher in the map; from inside a
    /// handler, it is serviced from the next pass. Fails when the backend cannot watch the
    /// descriptor (select and descriptors >= 1024).
    ///
    /// ```
    /// let mut lp = sockloop::Loop::new()?;
    /// lp.add(sockloop::Channel::tcp_listener("127.0.0.1:0".parse().unwrap(), 1)?, sockloop::Ignore)?;
    /// assert_eq!(lp.len(), 1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn add(&mut self, channel: Channel, handler: impl Dispatcher) -> io::Result<Token> {
        #[cfg(feature = "tls")]
        let mut channel = channel;
        #[cfg(feature = "tls")]
        let handshake = channel.tls_take_timer();
        let token = self.map.insert(channel, Box::new(handler))?;
        #[cfg(feature = "tls")]
        if let Some(d) = handshake {
            self.arm_handshake(token, d);
        }
        Ok(token)
    }

    /// Whether `token` names a channel still in the map (the running one included).
    ///
    /// ```
    /// let mut lp = sockloop::Loop::new()?;
    /// let t = lp.add(sockloop::Channel::tcp_listener("127.0.0.1:0".parse().unwrap(), 1)?, sockloop::Ignore)?;
    /// assert!(lp.contains(t));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn contains(&self, token: Token) -> bool {
        self.map.contains(token)
    }

    /// The number of channels in the map (the running one included).
    ///
    /// ```
    /// assert_eq!(sockloop::Loop::new()?.len(), 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the map is empty.
    ///
    /// ```
    /// assert!(sockloop::Loop::new()?.is_empty());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// The dispatcher of `token` if it is (or wraps) a `T`, with its channel. `None` for the
    /// running channel itself (its handler has it) and for closed tokens. The loop re-asks the
    /// channel's `readable()`/`writable()` at the end of the pass.
    ///
    /// ```
    /// struct Counter(u32);
    /// impl sockloop::Dispatcher for Counter {}
    /// let mut lp = sockloop::Loop::new()?;
    /// let t = lp.add(sockloop::Channel::tcp_listener("127.0.0.1:0".parse().unwrap(), 1)?, Counter(7))?;
    /// let (counter, channel) = lp.get_mut::<Counter>(t).unwrap();
    /// assert_eq!(counter.0, 7);
    /// assert!(channel.accepting());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn get_mut<T: Dispatcher>(&mut self, token: Token) -> Option<(&mut T, &mut Channel)> {
        self.map.get_mut::<T>(token)
    }

    /// The channel of `token`, whatever its dispatcher (`None` for the running one).
    ///
    /// ```
    /// let mut lp = sockloop::Loop::new()?;
    /// let t = lp.add(sockloop::Channel::tcp_listener("127.0.0.1:0".parse().unwrap(), 1)?, sockloop::Ignore)?;
    /// assert!(lp.channel_mut(t).unwrap().accepting());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn channel_mut(&mut self, token: Token) -> Option<&mut Channel> {
        self.map.channel_mut(token)
    }

    /// Calls `f` with every channel whose dispatcher is (or wraps) a `T` (but the running one):
    /// a broadcast or a sweep.
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
        self.map.for_each_mut(f)
    }

    /// Closes another channel at once (asyncore `close()` from outside it): it leaves the map
    /// and gets no further events. Returns whether it was there. (The running channel closes
    /// with `cx.channel.close()`.)
    ///
    /// ```
    /// let mut lp = sockloop::Loop::new()?;
    /// let t = lp.add(sockloop::Channel::tcp_listener("127.0.0.1:0".parse().unwrap(), 1)?, sockloop::Ignore)?;
    /// assert!(lp.close_channel(t));
    /// assert!(lp.is_empty());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn close_channel(&mut self, token: Token) -> bool {
        let Some(mut body) = self.map.lend(token) else { return false };
        body.channel.close();
        self.put_back(token, body);
        true
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
        for t in self.map.tokens() {
            self.close_channel(t);
        }
    }

    /// asyncore's `ExitNow`: [`Loop::run`] returns once the running handler or callback does.
    ///
    /// ```
    /// let mut lp = sockloop::Loop::new()?;
    /// lp.call_later(std::time::Duration::ZERO, |lp| lp.stop());
    /// lp.run_with(sockloop::RunOptions::new().until_stopped())?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn stop(&mut self) {
        self.stop = true;
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
        self.catch_panics = catch;
    }

    /// Runs `f` with the loop after `delay` (asyncio's `call_later`).
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
        self.call_at(Instant::now() + delay, f)
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
        self.timers.schedule(deadline, Action::Once(Box::new(f)))
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
        let period = period.max(Duration::from_micros(1));
        self.timers.schedule(Instant::now() + period, Action::Every(Box::new(f), period))
    }

    /// Cancels a timer; returns whether it was still pending. A cancelled timer never fires.
    ///
    /// ```
    /// let mut lp = sockloop::Loop::new()?;
    /// let id = lp.call_later(std::time::Duration::from_secs(1), |_| unreachable!());
    /// assert!(lp.cancel(id));
    /// assert!(!lp.cancel(id));
    /// lp.run()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn cancel(&mut self, id: TimerId) -> bool {
        self.timers.cancel(id)
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
        self.timers.len()
    }

    /// Calls the channel's [`handle_timeout`](Dispatcher::handle_timeout) after `delay`, with
    /// [`Handler::Timeout`](crate::Handler::Timeout) carrying the returned id (unless
    /// cancelled or the channel closed first).
    ///
    /// ```
    /// # use sockloop::{Context, Dispatcher};
    /// struct Greeter;
    /// impl Dispatcher for Greeter {
    ///     fn handle_connect(&mut self, cx: &mut Context<'_>) -> std::io::Result<()> {
    ///         cx.lp.set_timeout(cx.token(), std::time::Duration::from_secs(5)); // no greeting: give up
    ///         Ok(())
    ///     }
    /// }
    /// ```
    pub fn set_timeout(&mut self, token: Token, delay: Duration) -> TimerId {
        self.timers.schedule(Instant::now() + delay, Action::Timeout(token))
    }

    /// Sets (or with `None` clears) a channel's idle timeout: when it sees no event for
    /// `timeout`, its `handle_timeout` runs with [`Handler::Idle`](crate::Handler::Idle)
    /// (default: close). Costs one clock read per event and one timer, re-armed only when it
    /// expires. Returns whether the channel is in the map.
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
        let Some(timing) = self.map.timing(token) else { return false };
        if let Some(old) = timing.idle.take() {
            self.timers.cancel(old.timer);
        }
        if let Some(timeout) = timeout {
            let now = Instant::now();
            let timer = self.timers.schedule(now + timeout, Action::Idle(token));
            if let Some(timing) = self.map.timing(token) {
                timing.idle = Some(super::map::Idle { timeout, last: now, timer });
            }
        }
        true
    }

    /// Stops reading from a channel for `delay` (the default `handle_accept` does this on
    /// EMFILE so the loop rests instead of spinning). A second pause within the first one
    /// replaces it: reading resumes `delay` after the latest call. Returns whether the channel
    /// is in the map.
    ///
    /// ```
    /// # use sockloop::Context;
    /// fn rest(cx: &mut Context<'_>) { cx.lp.pause_reading(cx.token(), std::time::Duration::from_millis(250)); }
    /// ```
    pub fn pause_reading(&mut self, token: Token, delay: Duration) -> bool {
        let Some(timing) = self.map.timing(token) else { return false };
        let old = timing.paused.take();
        if let Some(old) = old {
            self.timers.cancel(old);
        }
        let timer = self.timers.schedule(Instant::now() + delay, Action::Resume(token));
        if let Some(timing) = self.map.timing(token) {
            timing.paused = Some(timer);
        }
        self.map.mark_dirty(token);
        true
    }

    /// A [`Waker`] for this loop, to hand to other threads.
    ///
    /// ```
    /// let mut lp = sockloop::Loop::new()?;
    /// let waker = lp.waker()?;
    /// std::thread::spawn(move || waker.call_soon(|lp| lp.stop())).join().unwrap()?;
    /// lp.run_with(sockloop::RunOptions::new().until_stopped())?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn waker(&mut self) -> io::Result<Waker> {
        let wake = self.map.selector().waker()?;
        let jobs = self.jobs.get_or_insert_with(|| Arc::new(Jobs::default())).clone();
        Ok(Waker::new(wake, jobs))
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
        if self.signals.is_none() {
            let signals = Signals::new()?;
            self.map.selector().set_interest(signals.fd(), SIGNAL_TOKEN, Interest::READ)?;
            self.signals = Some(signals);
        }
        self.signals.as_mut().expect("created above").add(signal, Box::new(f))
    }

    /// Whether [`Loop::shutdown`] was called.
    ///
    /// ```
    /// assert!(!sockloop::Loop::new()?.is_shutting_down());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_shutting_down(&self) -> bool {
        self.shutdown_deadline.is_some()
    }

    /// Puts a lent channel back in the map (see `Map::restore`) and cancels the timers of a
    /// channel that left it.
    pub(super) fn put_back(&mut self, token: Token, body: super::map::Body) {
        #[cfg(feature = "tls")]
        let mut body = body;
        // A STARTTLS upgrade in a handler starts its handshake clock here.
        #[cfg(feature = "tls")]
        let handshake = body.channel.tls_take_timer();
        match self.map.restore(token, body) {
            Restored::Dropped(Some(timing)) => self.cancel_timing(&timing),
            Restored::Dropped(None) => {}
            Restored::Kept =>
            {
                #[cfg(feature = "tls")]
                if let Some(d) = handshake {
                    self.arm_handshake(token, d);
                }
            }
        }
    }

    /// Forgets a lent channel that will not come back (a handler's panic is propagating): the
    /// selector forgets its descriptor before the channel closes it.
    pub(super) fn forget(&mut self, token: Token, channel: &mut Channel) {
        if let Some(timing) = self.map.remove(token, channel) {
            self.cancel_timing(&timing);
        }
        channel.close();
    }

    fn cancel_timing(&mut self, timing: &Timing) {
        for id in timing.idle.as_ref().map(|i| i.timer).into_iter().chain(timing.paused) {
            self.timers.cancel(id);
        }
        #[cfg(feature = "tls")]
        if let Some(id) = timing.handshake {
            self.timers.cancel(id);
        }
    }

    /// Starts a TLS handshake's clock (kept with the channel's timers, so it goes with it).
    #[cfg(feature = "tls")]
    fn arm_handshake(&mut self, token: Token, timeout: Duration) {
        let id = self.timers.schedule(Instant::now() + timeout, Action::TlsHandshake(token));
        match self.map.timing(token) {
            Some(t) => t.handshake = Some(id),
            None => {
                self.timers.cancel(id);
            }
        }
    }

    /// The handshake is over (done or failed): its clock stops.
    #[cfg(feature = "tls")]
    pub(super) fn disarm_handshake(&mut self, token: Token) {
        if let Some(id) = self.map.timing_if_any(token).and_then(|t| t.handshake.take()) {
            self.timers.cancel(id);
        }
    }

    /// How long the next wait may last: the run timeout, shortened by the next timer.
    pub(super) fn wait_time(&mut self, timeout: Option<Duration>) -> Option<Duration> {
        match self.timers.next_deadline() {
            None => timeout,
            Some(d) => {
                let until = d.saturating_duration_since(Instant::now());
                Some(timeout.map_or(until, |t| t.min(until)))
            }
        }
    }
}

impl Drop for LoopHandle {
    fn drop(&mut self) {
        // Forget every descriptor before the channels close them.
        self.close_all();
        // io_uring: output the ring owes the closed channels goes out before it is dropped.
        let _ = self.map.selector().flush_sends();
    }
}
