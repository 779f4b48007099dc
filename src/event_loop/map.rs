//! The map itself: the slab of channels, their registered interest, and the bookkeeping that
//! keeps what the OS watches equal to what `readable()`/`writable()` last said.

use super::signals::{Signals, SIGNAL_TOKEN};
use super::timers::{Action, Timers};
use super::waker::{Waker, WakerShared, WAKER_TOKEN};
use super::Token;
use crate::dispatcher::downcast_mut;
use crate::poller::{Backend, Interest, Poller};
use crate::{Channel, Dispatcher, Loop};
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A channel and its dispatcher: what is lent to a handler while it runs.
pub(crate) struct Body {
    pub channel: Channel,
    pub handler: Box<dyn Dispatcher>,
}

struct Entry {
    gen: u32,
    fd: RawFd,
    /// What the poller watches now.
    interest: Interest,
    /// `None` while lent out to a running handler.
    body: Option<Body>,
}

pub(crate) struct Core {
    pub poller: Box<dyn Poller>,
    pub backend: Backend,
    entries: slab::Slab<Entry>,
    next_gen: u32,
    /// Channels whose interest must be re-asked every pass.
    volatile: Vec<Token>,
    /// Channels lent through `get_mut`/`channel_mut`: re-ask their interest after the pass.
    dirty: Vec<Token>,
    /// Channels that saw an end of stream or disconnect outside their own handlers (before
    /// they were added, or while lent to another channel): their `handle_close` is due.
    pub due_close: Vec<Token>,
    pub timers: Timers,
    pub stop: bool,
    pub catch_panics: bool,
    pub waker: Option<Arc<WakerShared>>,
    pub waker_needs_drain: bool,
    pub signals: Option<Signals>,
    pub shutdown_deadline: Option<Instant>,
}

impl Core {
    pub fn new(poller: Box<dyn Poller>, backend: Backend) -> Core {
        Core {
            poller,
            backend,
            entries: slab::Slab::new(),
            next_gen: 0,
            volatile: Vec::new(),
            dirty: Vec::new(),
            due_close: Vec::new(),
            timers: Timers::default(),
            stop: false,
            catch_panics: true,
            waker: None,
            waker_needs_drain: false,
            signals: None,
            shutdown_deadline: None,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn contains(&self, token: Token) -> bool {
        self.entry(token).is_some()
    }

    fn entry(&self, token: Token) -> Option<&Entry> {
        self.entries.get(token.index()).filter(|e| e.gen == token.gen())
    }

    fn entry_mut(&mut self, token: Token) -> Option<&mut Entry> {
        self.entries.get_mut(token.index()).filter(|e| e.gen == token.gen())
    }

    pub fn insert(&mut self, channel: Channel, handler: Box<dyn Dispatcher>) -> io::Result<Token> {
        let fd = channel.fileno();
        let interest = channel.interest(handler.readable(), handler.writable());
        let volatile = handler.volatile();
        self.next_gen = self.next_gen.wrapping_add(1);
        let gen = self.next_gen;
        let vacant = self.entries.vacant_entry();
        let token = Token::new(vacant.key(), gen);
        self.poller.register(fd, token.raw(), interest)?;
        if channel.close_due() {
            self.due_close.push(token);
        }
        vacant.insert(Entry { gen, fd, interest, body: Some(Body { channel, handler }) });
        if volatile {
            self.volatile.push(token);
        }
        Ok(token)
    }

    /// Takes a channel out of the map for its handler to run. `None` for a stale token (its
    /// channel closed, even if the slot or descriptor was reused) or a channel already lent out.
    pub fn lend(&mut self, token: Token) -> Option<Body> {
        self.entry_mut(token)?.body.take()
    }

    /// Puts a lent channel back, or drops it if it was closed, and tells the poller what it
    /// now wants.
    pub fn settle(&mut self, token: Token, body: Body) {
        if body.channel.closed {
            self.remove(token, body);
            return;
        }
        let want = body.channel.interest(body.handler.readable(), body.handler.writable());
        if body.channel.close_due() {
            self.due_close.push(token);
        }
        let Some(entry) = self.entries.get_mut(token.index()) else { return };
        if want != entry.interest {
            if let Err(e) = self.poller.reregister(entry.fd, token.raw(), want) {
                log::error!("sockloop: cannot watch {:?}: {e}; closing it", body.channel);
                self.remove(token, body);
                return;
            }
            entry.interest = want;
        }
        entry.body = Some(body);
    }

    fn remove(&mut self, token: Token, mut body: Body) {
        if let Some(entry) = self.entries.get(token.index()) {
            let _ = self.poller.deregister(entry.fd);
            self.entries.remove(token.index());
        }
        if let Some(id) = body.channel.idle.take().map(|i| i.timer) {
            self.timers.cancel(id);
        }
        body.channel.close();
        // Dropping the body closes the descriptor, after the poller forgot it.
    }

    /// Drops the entry of a channel that is lent out and will not come back (a handler's panic
    /// is propagating): the poller forgets its descriptor before the channel closes it.
    pub fn forget(&mut self, token: Token, channel: &mut Channel) {
        if let Some(fd) = self.entry(token).map(|e| e.fd) {
            let _ = self.poller.deregister(fd);
            self.entries.remove(token.index());
        }
        if let Some(id) = channel.idle.take().map(|i| i.timer) {
            self.timers.cancel(id);
        }
        channel.close();
    }

    pub fn close_token(&mut self, token: Token) -> bool {
        match self.lend(token) {
            Some(mut body) => {
                body.channel.close();
                self.remove(token, body);
                true
            }
            None => false,
        }
    }

    pub fn close_all(&mut self) {
        for t in self.tokens() {
            self.close_token(t);
        }
    }

    pub fn get_mut<T: Dispatcher>(&mut self, token: Token) -> Option<(&mut T, &mut Channel)> {
        let entry = self.entries.get_mut(token.index()).filter(|e| e.gen == token.gen())?;
        let body = entry.body.as_mut()?;
        let found = downcast_mut::<T>(&mut *body.handler)?;
        self.dirty.push(token);
        Some((found, &mut body.channel))
    }

    pub fn channel_mut(&mut self, token: Token) -> Option<&mut Channel> {
        let body = self.entries.get_mut(token.index()).filter(|e| e.gen == token.gen())?.body.as_mut()?;
        self.dirty.push(token);
        Some(&mut body.channel)
    }

    pub fn for_each_mut<T: Dispatcher>(&mut self, mut f: impl FnMut(Token, &mut T, &mut Channel)) {
        for (i, entry) in self.entries.iter_mut() {
            let Some(body) = entry.body.as_mut() else { continue };
            let Some(h) = downcast_mut::<T>(&mut *body.handler) else { continue };
            let token = Token::new(i, entry.gen);
            f(token, h, &mut body.channel);
            self.dirty.push(token);
        }
    }

    /// Re-asks the interest of one channel that is in the map (not lent out).
    fn reask(&mut self, token: Token) {
        if let Some(body) = self.lend(token) {
            self.settle(token, body);
        }
    }

    pub fn refresh_volatile(&mut self) {
        let mut i = 0;
        while i < self.volatile.len() {
            let t = self.volatile[i];
            if self.contains(t) {
                self.reask(t);
                i += 1;
            } else {
                self.volatile.swap_remove(i);
            }
        }
    }

    pub fn refresh_dirty(&mut self) {
        while let Some(t) = self.dirty.pop() {
            self.reask(t);
        }
    }

    /// How long the next wait may last: the run timeout, shortened by the next timer, zero
    /// when a `handle_close` is due.
    pub fn wait_time(&mut self, timeout: Option<Duration>) -> Option<Duration> {
        if !self.due_close.is_empty() {
            return Some(Duration::ZERO);
        }
        match self.timers.next_deadline() {
            None => timeout,
            Some(d) => {
                let until = d.saturating_duration_since(Instant::now());
                Some(timeout.map_or(until, |t| t.min(until)))
            }
        }
    }

    pub fn call_later(&mut self, delay: Duration, f: impl FnOnce(&mut Loop) + 'static) -> super::TimerId {
        self.timers.schedule(Instant::now() + delay, Action::Once(Box::new(f)))
    }

    pub fn call_every(&mut self, period: Duration, f: impl FnMut(&mut Loop) + 'static) -> super::TimerId {
        let period = period.max(Duration::from_micros(1));
        self.timers.schedule(Instant::now() + period, Action::Every(Box::new(f), period))
    }

    pub fn waker(&mut self) -> io::Result<Waker> {
        if self.waker.is_none() {
            let shared = Arc::new(WakerShared::new()?);
            self.waker_needs_drain = self.poller.register_waker(shared.fd.fd(), WAKER_TOKEN)?;
            self.waker = Some(shared);
        }
        Ok(Waker::from_shared(self.waker.clone().expect("created above")))
    }
}

impl Core {
    pub fn on_signal(&mut self, signal: i32, f: Box<dyn FnMut(&mut Loop)>) -> io::Result<()> {
        if self.signals.is_none() {
            let signals = Signals::new()?;
            self.poller.register(signals.fd(), SIGNAL_TOKEN, Interest { read: true, write: false })?;
            self.signals = Some(signals);
        }
        self.signals.as_mut().expect("created above").add(signal, f)
    }

    /// Sets or clears a channel's idle timeout (the channel may be lent out: pass it).
    pub fn set_idle(&mut self, token: Token, channel: &mut Channel, timeout: Option<Duration>) {
        if let Some(old) = channel.idle.take() {
            self.timers.cancel(old.timer);
        }
        if let Some(timeout) = timeout {
            let now = Instant::now();
            let timer = self.timers.schedule(now + timeout, Action::Idle(token));
            channel.idle = Some(Box::new(crate::channel::Idle { timeout, last: now, timer }));
        }
    }

    /// Sets the idle timeout of a channel in the map; false if it is not there.
    pub fn set_idle_of(&mut self, token: Token, timeout: Option<Duration>) -> bool {
        let Some(mut body) = self.lend(token) else { return false };
        self.set_idle(token, &mut body.channel, timeout);
        self.settle(token, body);
        true
    }

    /// The tokens of every channel in the map.
    pub fn tokens(&self) -> Vec<Token> {
        self.entries.iter().map(|(i, e)| Token::new(i, e.gen)).collect()
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        // Forget every descriptor before the channels close them.
        self.close_all();
    }
}
