//! [`Context`]: what a handler gets: its channel, the loop's receive buffer, and the rest of the
//! loop.

use crate::event_loop::{Action, Core, TimerId, Token};
use crate::{Channel, Dispatcher, Loop, Waker};
use std::io;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

/// The view of the loop a handler runs with.
///
/// It dereferences to the handler's own [`Channel`] (`cx.recv`, `cx.send_all`, `cx.close` ...)
/// and reaches the rest of the map (`add`, `get_mut`, `for_each_mut`, `close_channel`) and the
/// loop's services (timers, `stop`, the waker). The two public fields allow borrowing the
/// channel and the shared receive buffer at once:
///
/// ```
/// use sockloop::{Context, Dispatcher};
/// struct Echo;
/// impl Dispatcher for Echo {
///     fn handle_read(&mut self, cx: &mut Context<'_>) -> std::io::Result<()> {
///         // One 64 KiB buffer owned by the loop serves every channel.
///         let n = cx.channel.recv(cx.scratch)?;
///         cx.channel.send_all(&cx.scratch[..n])
///     }
/// }
/// ```
pub struct Context<'a> {
    /// The channel whose handler is running.
    pub channel: &'a mut Channel,
    /// A receive buffer of [`SCRATCH_SIZE`](crate::event_loop::SCRATCH_SIZE) bytes owned by the
    /// loop and lent to each handler in turn: read into it, use the bytes, keep nothing.
    pub scratch: &'a mut [u8],
    core: &'a mut Core,
    token: Token,
    pub(crate) handler: &'static str,
    pub(crate) failed: &'static str,
}

impl<'a> Context<'a> {
    pub(crate) fn new(
        channel: &'a mut Channel,
        scratch: &'a mut [u8],
        core: &'a mut Core,
        token: Token,
        handler: &'static str,
    ) -> Context<'a> {
        Context { channel, scratch, core, token, handler, failed: handler }
    }

    /// The token of the running channel.
    ///
    /// ```
    /// # use sockloop::{Context, Dispatcher};
    /// struct Me;
    /// impl Dispatcher for Me {
    ///     fn handle_read(&mut self, cx: &mut Context<'_>) -> std::io::Result<()> {
    ///         let _me = cx.token();
    ///         Ok(())
    ///     }
    /// }
    /// ```
    pub fn token(&self) -> Token {
        self.token
    }

    /// The handler that failed, while `handle_error` runs (for reports); otherwise the running
    /// handler's name.
    ///
    /// ```
    /// # use sockloop::{Context, Dispatcher};
    /// struct Me;
    /// impl Dispatcher for Me {
    ///     fn handle_error(&mut self, err: std::io::Error, cx: &mut Context<'_>) {
    ///         eprintln!("{} failed: {err}", cx.failed_handler());
    ///         cx.close();
    ///     }
    /// }
    /// ```
    pub fn failed_handler(&self) -> &'static str {
        self.failed
    }

    /// asyncore `add_channel` from inside a handler: the new channel is serviced from the next
    /// pass.
    ///
    /// ```
    /// # use sockloop::{Channel, Context, Dispatcher, WithSend};
    /// struct Server;
    /// struct Client;
    /// impl Dispatcher for Client {}
    /// impl Dispatcher for Server {
    ///     fn handle_accepted(&mut self, s: socket2::Socket, _: socket2::SockAddr, cx: &mut Context<'_>) -> std::io::Result<()> {
    ///         cx.add(Channel::from(s), WithSend::new(Client))?;
    ///         Ok(())
    ///     }
    /// }
    /// ```
    pub fn add(&mut self, channel: Channel, handler: impl Dispatcher) -> io::Result<Token> {
        self.core.insert(channel, Box::new(handler))
    }

    /// Another channel's dispatcher, if it is (or wraps) a `T`, with its channel. `None` for the
    /// running channel itself (it is `self`) and for closed tokens.
    ///
    /// ```
    /// # use sockloop::{Context, Dispatcher, Token};
    /// struct Peer { inbox: Vec<String> }
    /// impl Dispatcher for Peer {}
    /// fn tell(cx: &mut Context<'_>, to: Token, msg: &str) {
    ///     if let Some((peer, channel)) = cx.get_mut::<Peer>(to) {
    ///         peer.inbox.push(msg.to_string());
    ///         let _ = channel.send_all(msg.as_bytes());
    ///     }
    /// }
    /// ```
    pub fn get_mut<T: Dispatcher>(&mut self, token: Token) -> Option<(&mut T, &mut Channel)> {
        self.core.get_mut::<T>(token)
    }

    /// Calls `f` with every other channel whose dispatcher is (or wraps) a `T`: a broadcast.
    ///
    /// ```
    /// # use sockloop::{Context, Dispatcher};
    /// struct Member;
    /// impl Dispatcher for Member {
    ///     fn handle_read(&mut self, cx: &mut Context<'_>) -> std::io::Result<()> {
    ///         let n = cx.channel.recv(cx.scratch)?;
    ///         let line = cx.scratch[..n].to_vec();
    ///         cx.for_each_mut::<Member>(|_, _, ch| { let _ = ch.send_all(&line); });
    ///         Ok(())
    ///     }
    /// }
    /// ```
    pub fn for_each_mut<T: Dispatcher>(&mut self, f: impl FnMut(Token, &mut T, &mut Channel)) {
        self.core.for_each_mut(f)
    }

    /// Closes another channel at once; it gets no further events. Returns whether it was open.
    /// (To close the running channel, call [`close`](Channel::close).)
    ///
    /// ```
    /// # use sockloop::{Context, Token};
    /// fn kick(cx: &mut Context<'_>, who: Token) -> bool { cx.close_channel(who) }
    /// ```
    pub fn close_channel(&mut self, token: Token) -> bool {
        self.core.close_token(token)
    }

    /// The number of channels in the map, this one included.
    ///
    /// ```
    /// # use sockloop::Context;
    /// fn crowded(cx: &Context<'_>) -> bool { cx.map_len() > 10_000 }
    /// ```
    pub fn map_len(&self) -> usize {
        self.core.len() // the running entry stays counted in the slab while lent
    }

    /// asyncore's `ExitNow`: [`Loop::run`] returns once this handler does.
    ///
    /// ```
    /// # use sockloop::{Context, Dispatcher};
    /// struct Quit;
    /// impl Dispatcher for Quit {
    ///     fn handle_read(&mut self, cx: &mut Context<'_>) -> std::io::Result<()> { cx.stop(); Ok(()) }
    /// }
    /// ```
    pub fn stop(&mut self) {
        self.core.stop = true;
    }

    /// Runs `f` with the loop after `delay`.
    ///
    /// ```
    /// # use sockloop::{Context, Dispatcher};
    /// struct Later;
    /// impl Dispatcher for Later {
    ///     fn handle_connect(&mut self, cx: &mut Context<'_>) -> std::io::Result<()> {
    ///         cx.call_later(std::time::Duration::from_secs(1), |lp| lp.stop());
    ///         Ok(())
    ///     }
    /// }
    /// ```
    pub fn call_later(&mut self, delay: Duration, f: impl FnOnce(&mut Loop) + 'static) -> TimerId {
        self.core.call_later(delay, f)
    }

    /// Runs `f` with the loop every `period` until cancelled.
    ///
    /// ```
    /// # use sockloop::Context;
    /// fn tick(cx: &mut Context<'_>) -> sockloop::TimerId {
    ///     cx.call_every(std::time::Duration::from_secs(1), |_| println!("tick"))
    /// }
    /// ```
    pub fn call_every(&mut self, period: Duration, f: impl FnMut(&mut Loop) + 'static) -> TimerId {
        self.core.call_every(period, f)
    }

    /// Cancels a timer; returns whether it was pending.
    ///
    /// ```
    /// # use sockloop::{Context, TimerId};
    /// fn calm(cx: &mut Context<'_>, t: TimerId) -> bool { cx.cancel(t) }
    /// ```
    pub fn cancel(&mut self, id: TimerId) -> bool {
        self.core.timers.cancel(id)
    }

    /// Calls this channel's [`handle_timeout`](Dispatcher::handle_timeout) after `delay`
    /// (unless cancelled or the channel closed first).
    ///
    /// ```
    /// # use sockloop::{Context, Dispatcher};
    /// struct Greeter;
    /// impl Dispatcher for Greeter {
    ///     fn handle_connect(&mut self, cx: &mut Context<'_>) -> std::io::Result<()> {
    ///         cx.set_timeout(std::time::Duration::from_secs(5)); // give up if no greeting
    ///         Ok(())
    ///     }
    /// }
    /// ```
    pub fn set_timeout(&mut self, delay: Duration) -> TimerId {
        self.core.timers.schedule(Instant::now() + delay, Action::Timeout(self.token))
    }

    /// Sets (or with `None` clears) this channel's idle timeout: when no event arrives for
    /// `timeout`, [`handle_timeout`](Dispatcher::handle_timeout) runs (default: close). Costs one
    /// clock read per event on this channel and one timer, re-armed only when it expires.
    ///
    /// ```
    /// # use sockloop::{Context, Dispatcher};
    /// struct Session;
    /// impl Dispatcher for Session {
    ///     fn handle_connect(&mut self, cx: &mut Context<'_>) -> std::io::Result<()> {
    ///         cx.set_idle_timeout(Some(std::time::Duration::from_secs(300)));
    ///         Ok(())
    ///     }
    /// }
    /// ```
    pub fn set_idle_timeout(&mut self, timeout: Option<Duration>) {
        self.core.set_idle(self.token, self.channel, timeout);
    }

    /// Sets (or clears) the idle timeout of another channel, such as one just added. Returns
    /// whether the channel is in the map.
    ///
    /// ```
    /// # use sockloop::{Channel, Context, Dispatcher};
    /// struct Server;
    /// struct Client;
    /// impl Dispatcher for Client {}
    /// impl Dispatcher for Server {
    ///     fn handle_accepted(&mut self, s: socket2::Socket, _: socket2::SockAddr, cx: &mut Context<'_>) -> std::io::Result<()> {
    ///         let t = cx.add(Channel::from(s), Client)?;
    ///         cx.set_idle_timeout_of(t, Some(std::time::Duration::from_secs(60)));
    ///         Ok(())
    ///     }
    /// }
    /// ```
    pub fn set_idle_timeout_of(&mut self, token: Token, timeout: Option<Duration>) -> bool {
        self.core.set_idle_of(token, timeout)
    }

    /// Stops reading from this channel for `delay` (the default `handle_accept` does this on
    /// EMFILE so the loop rests instead of spinning).
    ///
    /// ```
    /// # use sockloop::Context;
    /// fn rest(cx: &mut Context<'_>) { cx.pause_reading(std::time::Duration::from_millis(250)) }
    /// ```
    pub fn pause_reading(&mut self, delay: Duration) {
        self.channel.paused = true;
        self.core.timers.schedule(Instant::now() + delay, Action::Resume(self.token));
    }

    /// A [`Waker`] for this loop, to hand to other threads.
    ///
    /// ```
    /// # use sockloop::Context;
    /// fn share(cx: &mut Context<'_>) -> std::io::Result<sockloop::Waker> { cx.waker() }
    /// ```
    pub fn waker(&mut self) -> io::Result<Waker> {
        self.core.waker()
    }

    /// asyncore `log_info(message, type)`: logs through the `log` crate, naming the channel.
    ///
    /// ```
    /// # use sockloop::Context;
    /// fn note(cx: &Context<'_>) { cx.log_info("client said hello", log::Level::Info) }
    /// ```
    pub fn log_info(&self, message: &str, level: log::Level) {
        log::log!(target: "sockloop", level, "{message} ({:?})", self.channel);
    }
}

impl Deref for Context<'_> {
    type Target = Channel;
    fn deref(&self) -> &Channel {
        self.channel
    }
}

impl DerefMut for Context<'_> {
    fn deref_mut(&mut self) -> &mut Channel {
        self.channel
    }
}
