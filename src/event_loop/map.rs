//! The map itself: a slab of entries keyed by [`Token`], each holding a channel with its
//! dispatcher and the loop's bookkeeping for it, plus the selector that watches them.
//!
//! While a handler runs, its channel and dispatcher (the [`Body`]) are lent out of the entry;
//! the entry itself stays, so the loop's bookkeeping (idle timeout, pause, whether
//! `handle_close` was delivered) can be reached by token even then.

use super::interest::{self, Inputs};
use super::timers::TimerId;
use super::Token;
use crate::dispatcher::downcast_mut;
use crate::poller::{Backend, Interest, Selector};
use crate::{Channel, Dispatcher};
use std::io;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// A channel and its dispatcher: what is lent to a handler while it runs.
pub(crate) struct Body {
    pub channel: Channel,
    pub handler: Box<dyn Dispatcher>,
}

/// A channel's idle timeout: `handle_timeout` runs when no event came for `timeout`.
pub(crate) struct Idle {
    pub timeout: Duration,
    pub last: Instant,
    pub timer: TimerId,
}

/// The timers the loop keeps for one channel; boxed, since most channels have none.
#[derive(Default)]
pub(crate) struct Timing {
    pub idle: Option<Idle>,
    /// The timer that ends a `pause_reading`.
    pub paused: Option<TimerId>,
    /// The deadline of a TLS handshake.
    #[cfg(feature = "tls")]
    pub handshake: Option<TimerId>,
}

struct Entry {
    gen: u32,
    /// What the selector watches now.
    watched: Interest,
    /// `DIRTY`, `CLOSE_REPORTED`, `READY`: bits of one byte, which keeps an entry at 160
    /// bytes (three `bool`s took it past, to 168: a slab slot per channel, so it counts per
    /// idle connection).
    marks: u8,
    timing: Option<Box<Timing>>,
    /// `None` while lent out to a running handler.
    body: Option<Body>,
}

/// Queued on the map's re-ask list (so it is queued once).
const DIRTY: u8 = 1;
/// `handle_close` was delivered for the peer's end (it is delivered once).
const CLOSE_REPORTED: u8 = 1 << 1;
/// A read event is due without a wait (on the map's `ready` list): decided anew each time the
/// channel is put back, so a channel whose `readable()` went false in between is not called
/// again.
const READY: u8 = 1 << 2;

impl Entry {
    fn marked(&self, mark: u8) -> bool {
        self.marks & mark != 0
    }

    fn set_mark(&mut self, mark: u8, on: bool) {
        if on {
            self.marks |= mark;
        } else {
            self.marks &= !mark;
        }
    }

    /// Sets `mark`, saying whether it was newly set.
    fn mark(&mut self, mark: u8) -> bool {
        let new = !self.marked(mark);
        self.marks |= mark;
        new
    }

    fn paused(&self) -> bool {
        self.timing.as_ref().is_some_and(|t| t.paused.is_some())
    }
}

/// What putting a channel back decided.
pub(crate) enum Restored {
    /// Back in the map, watched as its interest says.
    Kept,
    /// Closed (by its handler, by draining, or because it could not be watched) and dropped;
    /// the timers it had are the caller's to cancel.
    Dropped(Option<Box<Timing>>),
}

pub(crate) struct Map {
    selector: Selector,
    entries: slab::Slab<Entry>,
    next_gen: u32,
    /// Channels whose interest must be re-asked (each once: see `Entry::dirty`).
    dirty: Vec<Token>,
    volatile: Vec<Token>,
    /// TLS channels with plaintext already decrypted: read events due without a wait.
    ready: Vec<Token>,
}

impl Map {
    pub fn new(backend: Backend) -> io::Result<Map> {
        Ok(Map {
            selector: Selector::new(backend)?,
            entries: slab::Slab::new(),
            next_gen: 0,
            dirty: Vec::new(),
            volatile: Vec::new(),
            ready: Vec::new(),
        })
    }

    pub fn selector(&mut self) -> &mut Selector {
        &mut self.selector
    }

    pub fn backend(&self) -> Backend {
        self.selector.backend()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    fn entry(&self, token: Token) -> Option<&Entry> {
        self.entries.get(token.index()).filter(|e| e.gen == token.generation())
    }

    fn entry_mut(&mut self, token: Token) -> Option<&mut Entry> {
        self.entries.get_mut(token.index()).filter(|e| e.gen == token.generation())
    }

    pub fn contains(&self, token: Token) -> bool {
        self.entry(token).is_some()
    }

    /// The tokens of every channel in the map.
    pub fn tokens(&self) -> Vec<Token> {
        self.entries.iter().map(|(i, e)| Token::new(i, e.gen)).collect()
    }

    pub fn insert(&mut self, mut channel: Channel, handler: Box<dyn Dispatcher>) -> io::Result<Token> {
        self.next_gen = self.next_gen.wrapping_add(1);
        let gen = self.next_gen;
        let vacant = self.entries.vacant_entry();
        let token = Token::new(vacant.key(), gen);
        let watched = match () {
            #[cfg(feature = "tls")]
            () if channel.is_tls() => channel
                .tls_inputs()
                .map(|e| crate::tls::interest::tls_interest(inputs(&channel, &*handler, false), e).watch)
                .unwrap_or_default(),
            () => interest::interest(inputs(&channel, &*handler, false)),
        };
        self.selector.set_interest(channel.as_fd(), token.to_raw(), watched)?;
        if self.selector.backend() == Backend::Uring
            && channel.ring_eligible(handler.urgent_data())
            && self.selector.set_stream(channel.as_fd())?
        {
            channel.set_ring_mode();
        }
        let volatile = handler.volatile();
        // A channel added after its peer already ended is re-asked at once, which delivers its
        // handle_close.
        let dirty = channel.peer_closed();
        vacant.insert(Entry {
            gen,
            watched,
            marks: if dirty { DIRTY } else { 0 },
            timing: None,
            body: Some(Body { channel, handler }),
        });
        if dirty {
            self.dirty.push(token);
        }
        if volatile {
            self.volatile.push(token);
        }
        Ok(token)
    }

    /// Takes a channel out of its entry for a handler to run. `None` for a stale token (its
    /// channel closed, even if the slot or descriptor was reused) or a channel already lent.
    pub fn lend(&mut self, token: Token) -> Option<Body> {
        self.entry_mut(token)?.body.take()
    }

    /// [`lend`](Map::lend) for an event: the event also counts as activity for the channel's
    /// idle timeout (one lookup for both).
    pub fn lend_for_event(&mut self, token: Token) -> Option<Body> {
        let entry = self.entry_mut(token)?;
        if let Some(idle) = entry.timing.as_mut().and_then(|t| t.idle.as_mut()) {
            idle.last = Instant::now();
        }
        entry.body.take()
    }

    /// Puts a lent channel back: closes it if it is done draining, drops it if closed, and
    /// otherwise tells the selector what it now wants.
    pub fn restore(&mut self, token: Token, mut body: Body) -> Restored {
        // What the handler sent goes to the ring before anything looks at what is owed (and
        // before a close, so what `send` accepted is still sent).
        self.hand_output(&mut body.channel);
        let Some(entry) = self.entry(token) else { return Restored::Dropped(None) };
        #[cfg_attr(not(feature = "tls"), allow(unused_mut))]
        let mut now = inputs(&body.channel, &*body.handler, entry.paused());
        if interest::drained(now) {
            // A TLS channel sends its close_notify before it closes.
            #[cfg(feature = "tls")]
            if body.channel.tls_close_notify() {
                now.queued = body.channel.queued_output() > 0;
            }
            if interest::drained(now) {
                body.channel.close();
            }
        }
        if body.channel.is_closed() {
            return Restored::Dropped(self.remove(token, &body.channel));
        }
        if body.channel.ring_leave_due() {
            // A TLS engine was attached (STARTTLS): from now on the engine reads the socket, so
            // the ring stops receiving, and what it took already is handed to the channel first;
            // the output the ring owes is sent before the engine writes the socket.
            self.hand_output(&mut body.channel);
            match self.selector.leave_stream(body.channel.as_fd()) {
                Ok((bytes, end, error)) => {
                    body.channel.ring_leave(bytes, end, error);
                    body.channel.ring_out_release();
                }
                Err(e) => {
                    crate::errors::emit(&format!(
                        "cannot leave io_uring stream mode for {:?}: {e}; closing it",
                        body.channel
                    ));
                    body.channel.close();
                    return Restored::Dropped(self.remove(token, &body.channel));
                }
            }
        }
        let (want, ready) = self.want(&body.channel, now);
        let Some(entry) = self.entries.get_mut(token.index()) else { return Restored::Dropped(None) };
        if ready && !entry.marked(READY) {
            self.ready.push(token);
        }
        entry.set_mark(READY, ready);
        if want != entry.watched {
            if let Err(e) = self.selector.set_interest(body.channel.as_fd(), token.to_raw(), want) {
                crate::errors::emit(&format!("cannot watch {:?}: {e}; closing it", body.channel));
                body.channel.close();
                return Restored::Dropped(self.remove(token, &body.channel));
            }
            entry.watched = want;
        }
        entry.set_mark(DIRTY, false);
        entry.body = Some(body);
        Restored::Kept
    }

    /// io_uring stream mode: hands the output a channel staged to the ring, and takes back
    /// what the ring still owes and a send's error.
    pub fn hand_output(&mut self, channel: &mut Channel) {
        hand_output(&mut self.selector, channel);
    }

    /// The interest of a channel put back: the TLS rule for a TLS channel (which also queues a
    /// read event due now for decrypted plaintext), the plain rule otherwise.
    /// Also says whether a read event is due without a wait: decrypted plaintext, or input
    /// the ring already received (or, after STARTTLS, ciphertext it received before).
    fn want(&mut self, channel: &Channel, now: Inputs) -> (Interest, bool) {
        #[cfg(feature = "tls")]
        if let Some(engine) = channel.tls_inputs() {
            let t = crate::tls::interest::tls_interest(now, engine);
            let carried = channel.ring_has_input() && (t.watch.read || channel.tls_handshaking());
            return (t.watch, t.ready || carried);
        }
        let want = interest::interest(now);
        (want, want.read && channel.ring_has_input())
    }

    /// Whether read events are due without a wait.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Takes the channels whose read events are due without a wait.
    pub fn take_ready(&mut self, out: &mut Vec<Token>) {
        let entries = &mut self.entries;
        out.extend(self.ready.drain(..).filter(|t| {
            entries.get_mut(t.index()).filter(|e| e.gen == t.generation()).is_some_and(|e| {
                let was = e.marked(READY);
                e.set_mark(READY, false);
                was
            })
        }));
    }

    /// Takes an entry out of the map and the selector. The caller drops the channel, which
    /// closes the descriptor after the selector forgot it. Returns the timers to cancel.
    pub fn remove(&mut self, token: Token, channel: &Channel) -> Option<Box<Timing>> {
        self.entry(token)?;
        let _ = self.selector.remove(channel.as_fd());
        self.entries.remove(token.index()).timing
    }

    /// Marks a channel for re-asking its interest at the end of the pass.
    pub fn mark_dirty(&mut self, token: Token) {
        if let Some(entry) = self.entry_mut(token) {
            if entry.mark(DIRTY) {
                self.dirty.push(token);
            }
        }
    }

    /// The channels to re-ask now: the dirty ones, and with `volatile` every volatile one
    /// (asked once a pass, before the wait).
    pub fn take_reask(&mut self, out: &mut Vec<Token>, volatile: bool) {
        out.append(&mut self.dirty);
        if volatile {
            let entries = &self.entries;
            self.volatile.retain(|t| entries.get(t.index()).is_some_and(|e| e.gen == t.generation()));
            out.extend_from_slice(&self.volatile);
        }
    }

    /// Whether `handle_close` is owed to `channel` now (and marks it delivered).
    pub fn take_close_due(&mut self, token: Token, channel: &Channel) -> bool {
        // The channel's own state first: after almost every handler the peer is still there,
        // and then the entry need not be looked up.
        if !channel.peer_closed() || channel.is_closed() {
            return false;
        }
        let Some(entry) = self.entry_mut(token) else { return false };
        if entry.mark(CLOSE_REPORTED) {
            return true;
        }
        false
    }

    /// The channel's timers, created if it had none.
    pub fn timing(&mut self, token: Token) -> Option<&mut Timing> {
        let entry = self.entry_mut(token)?;
        Some(entry.timing.get_or_insert_with(Box::default))
    }

    /// The channel's timers if it has any, without creating them.
    pub fn timing_if_any(&mut self, token: Token) -> Option<&mut Timing> {
        self.entry_mut(token)?.timing.as_deref_mut()
    }

    /// A dispatcher in the map that is (or wraps) a `T`, with its channel; marks it dirty.
    pub fn get_mut<T: Dispatcher>(&mut self, token: Token) -> Option<(&mut T, &mut Channel)> {
        let idx = token.index();
        let found = {
            let entry = self.entries.get_mut(idx).filter(|e| e.gen == token.generation())?;
            let body = entry.body.as_mut()?;
            downcast_mut::<T>(&mut *body.handler).is_some()
        };
        if !found {
            return None;
        }
        self.mark_dirty(token);
        let body = self.entries[idx].body.as_mut()?;
        // What the ring sent since is no longer pending (io_uring stream mode).
        hand_output(&mut self.selector, &mut body.channel);
        Some((downcast_mut::<T>(&mut *body.handler)?, &mut body.channel))
    }

    pub fn channel_mut(&mut self, token: Token) -> Option<&mut Channel> {
        self.entry(token)?.body.as_ref()?;
        self.mark_dirty(token);
        let channel = &mut self.entries[token.index()].body.as_mut()?.channel;
        hand_output(&mut self.selector, channel);
        Some(channel)
    }

    pub fn for_each_mut<T: Dispatcher>(&mut self, mut f: impl FnMut(Token, &mut T, &mut Channel)) {
        for (i, entry) in self.entries.iter_mut() {
            let Some(body) = entry.body.as_mut() else { continue };
            let Some(h) = downcast_mut::<T>(&mut *body.handler) else { continue };
            let token = Token::new(i, entry.gen);
            hand_output(&mut self.selector, &mut body.channel);
            f(token, h, &mut body.channel);
            if entry.mark(DIRTY) {
                self.dirty.push(token);
            }
        }
    }
}

/// [`Map::hand_output`], for callers that hold the map's fields apart.
fn hand_output(selector: &mut Selector, channel: &mut Channel) {
    channel.ring_hand_over(|fd, staged, shut| selector.stage_send(fd, staged, shut));
}

/// The inputs of the interest rule for one channel.
fn inputs(channel: &Channel, handler: &dyn Dispatcher, paused: bool) -> Inputs {
    Inputs {
        state: channel.state(),
        // Output the ring accepted is not the channel's to wait for (a close still sends it).
        queued: channel.queued_output() > 0,
        over_soft_limit: channel.over_soft_limit(),
        paused,
        readable: handler.readable(),
        writable: handler.writable(),
        holds_output: handler.holds_output(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_entry_stays_at_160_bytes() {
        // One per channel in the map's slab: it is part of what an idle connection costs.
        let size = std::mem::size_of::<super::Entry>();
        assert!(size <= 160, "Entry is {size} B");
    }
}
