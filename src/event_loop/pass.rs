//! One pass of the loop, from the wait to the handlers and back: the whole life of an event.
//!
//! 1. Re-ask the channels marked since the last pass (and every volatile one).
//! 2. Wait, capped by the run timeout and the next timer.
//! 3. For each event: the waker and the signal pipe run their callbacks; a channel event whose
//!    token is stale (its channel closed, even if the slot or descriptor was reused) is dropped
//!    here, and only here; otherwise the channel is lent out of the map and the rules below turn
//!    the raw readiness into handler calls.
//! 4. Fire due timers.
//! 5. Re-ask the channels that other handlers or timers touched.
//!
//! The rules (asyncore's `readwrite`, `handle_read_event`, `handle_write_event`,
//! `handle_expt_event`):
//! - a connecting channel first reads `SO_ERROR`: set means `handle_error` with that error
//!   (a refused connect reports OUT, ERR and HUP at once), clear means `handle_connect`;
//! - read-ready calls `handle_accept` on a listening channel, `handle_read` otherwise;
//! - write-ready flushes queued output, then calls `handle_write` if `writable()` (or, while
//!   draining, if the dispatcher still holds output);
//! - urgent data calls `handle_expt` (or `handle_close` if the socket has an error);
//! - hang-up, error or invalid-descriptor without read-ready means the peer is gone; with
//!   read-ready the read runs first and sees the end of stream itself, so no data is lost.
//!
//! A peer's end becomes `handle_close` in exactly one place, [`Loop::finish`]: after every
//! handler and whenever a channel is put back, once per channel.

use super::map::Body;
use super::signals::SIGNAL_TOKEN;
use super::timers::Action;
use super::{interest, Loop, Token};
use crate::errors::{compact_report, emit, is_disconnect, panic_error};
use crate::poller::{Event, Selector};
use crate::{Context, Dispatcher, Handler};
use std::io;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

impl Loop {
    /// asyncore `poll(timeout)`: one pass. Waits up to `timeout` (`None`: until something
    /// happens), dispatches what is ready, fires due timers.
    ///
    /// ```
    /// let mut lp = sockloop::Loop::new()?;
    /// lp.poll(Some(std::time::Duration::ZERO))?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn poll(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.reask_marked(true);
        let mut wait = self.handle.wait_time(timeout);
        if self.handle.map.has_ready() {
            // Decrypted plaintext is waiting: look at the descriptors, but do not sleep.
            wait = Some(Duration::ZERO);
        }
        let mut events = std::mem::take(&mut self.events);
        events.clear();
        let waited = self.handle.map.selector().wait(&mut events, wait);
        if waited.is_ok() {
            for ev in &events {
                if self.handle.stop {
                    break;
                }
                self.dispatch(*ev);
            }
        }
        self.events = events;
        waited?;
        if self.handle.map.has_ready() && !self.handle.stop {
            self.dispatch_ready();
        }
        if !self.handle.stop {
            self.fire_timers();
        }
        self.reask_marked(false);
        // io_uring: what this pass's handlers sent leaves now, not at the next wait, so a
        // caller that stops polling still has its output delivered (one enter, only in a pass
        // that sent something).
        if let Err(e) = self.handle.map.selector().flush_sends() {
            log::debug!(target: "sockloop", "submitting the pass's sends failed (the next wait retries): {e}");
        }
        Ok(())
    }

    /// Re-asks the interest of every channel marked for it (and of the volatile ones).
    fn reask_marked(&mut self, volatile: bool) {
        let mut tokens = std::mem::take(&mut self.reask);
        self.handle.map.take_reask(&mut tokens, volatile);
        for &token in &tokens {
            self.with_body(token, |_, _| {});
        }
        tokens.clear();
        self.reask = tokens;
    }

    /// Lends `token`'s channel out of the map, runs `f` with it, then puts it back: delivers a
    /// due `handle_close`, re-asks its interest, closes it if it is done draining, or drops it
    /// if closed. Returns false for a token that is stale or already lent.
    pub(super) fn with_body(&mut self, token: Token, f: impl FnOnce(&mut Loop, &mut Body)) -> bool {
        let Some(mut body) = self.handle.map.lend(token) else { return false };
        f(self, &mut body);
        self.finish(token, &mut body);
        self.handle.put_back(token, body);
        true
    }

    /// Read events for TLS channels whose plaintext was already decrypted (the descriptor may
    /// never be readable again for bytes already read).
    fn dispatch_ready(&mut self) {
        let mut tokens = std::mem::take(&mut self.ready);
        self.handle.map.take_ready(&mut tokens);
        for &token in &tokens {
            if self.handle.stop {
                break;
            }
            self.dispatch(Event { token: token.to_raw(), readable: true, ..Event::default() });
        }
        tokens.clear();
        self.ready = tokens;
    }

    fn dispatch(&mut self, ev: Event) {
        match ev.token {
            Selector::WAKE_TOKEN => return self.run_waker(),
            SIGNAL_TOKEN => return self.run_signals(),
            _ => {}
        }
        let token = Token::from_raw(ev.token);
        // with_body, inlined for the hot path: one lookup lends the channel and touches its
        // idle clock.
        let Some(mut body) = self.handle.map.lend_for_event(token) else {
            log::trace!(target: "sockloop", "dropped a stale event for {token:?}");
            return;
        };
        // io_uring stream mode: what the ring sent since is room again for the handler (and no
        // longer in its pending output).
        self.handle.map.hand_output(&mut body.channel);
        self.dispatch_event(token, &mut body, ev);
        self.finish(token, &mut body);
        self.handle.put_back(token, body);
    }

    fn dispatch_event(&mut self, token: Token, body: &mut Body, ev: Event) {
        if body.channel.connecting() {
            if let Some(err) = body.channel.take_error() {
                body.channel.mark_connect_failed();
                self.report(token, body, Handler::Connect, err);
                return;
            }
            body.channel.set_connected();
            // A TLS client's handle_connect waits for the handshake.
            if !handshaking(body) {
                self.call(token, body, Handler::Connect);
            }
        }
        #[cfg(feature = "tls")]
        if handshaking(body) && open(body) {
            return self.handshake_event(token, body, ev);
        }
        if ev.readable && open(body) {
            self.move_received(body);
            let which = if body.channel.accepting() { Handler::Accept } else { Handler::Read };
            self.call(token, body, which);
        }
        if ev.writable && open(body) && !body.channel.accepting() {
            match body.channel.flush() {
                Err(e) => self.report(token, body, Handler::Write, e),
                Ok(()) => self.finish(token, body),
            }
            let h = &body.handler;
            if open(body)
                && interest::calls_handle_write(body.channel.state(), h.writable(), h.holds_output())
            {
                self.call(token, body, Handler::Write);
            }
        }
        if ev.priority && open(body) {
            let which = if body.channel.take_error().is_some() { Handler::Close } else { Handler::Expt };
            if which == Handler::Close {
                body.channel.mark_broken();
                self.finish(token, body);
            } else {
                self.call(token, body, which);
            }
        }
        if (ev.hangup || ev.error || ev.invalid) && !ev.readable && open(body) {
            body.channel.mark_broken();
            self.finish(token, body);
        }
    }

    /// Moves what the ring received for a channel in io_uring stream mode into the channel.
    fn move_received(&mut self, body: &mut Body) {
        let selector = self.handle.map.selector();
        body.channel.ring_receive(|fd, into| selector.move_received(fd, into));
    }

    /// Before a channel in io_uring stream mode is told to shut down: what the ring already
    /// took from the socket is input the loop has read (on epoll the handler would have had
    /// it), so it goes to `handle_read` first, while `readable()` says yes and the handler
    /// takes some each time.
    pub(super) fn deliver_received(&mut self, token: Token, body: &mut Body) {
        if !body.channel.ring_mode() {
            return;
        }
        self.move_received(body);
        let mut held = body.channel.ring_held();
        while held > 0 && open(body) && body.handler.readable() && !body.channel.accepting() {
            self.call(token, body, Handler::Read);
            self.finish(token, body);
            self.move_received(body);
            let now = body.channel.ring_held();
            if now >= held {
                break; // the handler took nothing: no progress, no spin
            }
            held = now;
        }
    }

    /// Calls `token`'s [`handle_accepted`](Dispatcher::handle_accepted) with a connection
    /// accepted elsewhere (a [`LoopGroup`](crate::group::LoopGroup) handing sockets between
    /// loops), as if its own `handle_accept` had accepted it: a panic or an error reaches its
    /// `handle_error`. Gives the socket back if `token` is no longer in the map.
    pub(crate) fn deliver_accepted(
        &mut self,
        token: Token,
        sock: socket2::Socket,
        addr: socket2::SockAddr,
    ) -> Result<(), socket2::Socket> {
        let mut conn = Some((sock, addr));
        self.with_body(token, |lp, body| {
            let Some((sock, addr)) = conn.take() else { return };
            let which = Handler::Accept;
            if let Err(e) = lp.invoke(token, body, which, |h, cx| h.handle_accepted(sock, addr, cx)) {
                lp.report(token, body, which, e);
            }
        });
        match conn {
            Some((sock, _)) => Err(sock),
            None => Ok(()),
        }
    }

    #[cfg(feature = "tls")]
    /// An event during a TLS handshake: the engine's turn, not the dispatcher's. A failure
    /// reaches `handle_error` (as a failed connect on a client); when the handshake is done a
    /// client gets its `handle_connect`, and a server's plaintext is delivered as a read.
    fn handshake_event(&mut self, token: Token, body: &mut Body, ev: Event) {
        let which = if body.channel.tls_is_client() { Handler::Connect } else { Handler::Read };
        if ev.writable {
            if let Err(e) = body.channel.flush() {
                return self.report(token, body, which, e);
            }
        }
        if ev.readable || ev.hangup || ev.error || ev.invalid {
            if let Err(e) = body.channel.tls_advance() {
                return self.report(token, body, which, e);
            }
        }
        self.finish(token, body);
        if !body.channel.tls_handshaking() {
            self.handle.disarm_handshake(token);
            if open(body) && body.channel.tls_take_announce() {
                self.call(token, body, Handler::Connect);
            }
        }
    }

    #[cfg(feature = "tls")]
    /// The handshake deadline passed: a channel still handshaking is closed without another
    /// byte written, after `handle_error` hears why.
    fn handshake_timeout(&mut self, token: Token, body: &mut Body) {
        if !body.channel.tls_handshaking() || body.channel.is_closed() {
            return;
        }
        body.channel.tls_abandon();
        let which = if body.channel.tls_is_client() { Handler::Connect } else { Handler::Read };
        let err = io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out");
        self.report(token, body, which, err);
        body.channel.close_silently();
    }

    /// Runs one handler, routes its failure, then delivers a due `handle_close`.
    pub(super) fn call(&mut self, token: Token, body: &mut Body, which: Handler) {
        if let Err(e) = self.invoke(token, body, which, |h, cx| run_handler(h, which, cx)) {
            self.report(token, body, which, e);
        }
        self.finish(token, body);
    }

    /// Calls `f` with the dispatcher and a context; a panic becomes an error (or, with
    /// `set_catch_panics(false)`, goes on once the map has forgotten the channel).
    fn invoke(
        &mut self,
        token: Token,
        body: &mut Body,
        which: Handler,
        f: impl FnOnce(&mut dyn Dispatcher, &mut Context<'_>) -> io::Result<()>,
    ) -> io::Result<()> {
        let Body { channel, handler } = body;
        let mut cx = Context::new(channel, &mut self.scratch, &mut self.handle, token, which);
        let payload = match catch_unwind(AssertUnwindSafe(|| f(&mut **handler, &mut cx))) {
            Ok(result) => return result,
            Err(payload) => payload,
        };
        if self.handle.catch_panics {
            return Err(panic_error(payload));
        }
        // The panic goes on to the caller and drops the lent channel on its way: take its
        // entry out of the map and the selector first, so no stale entry (select: EBADF on
        // every wait; poll: POLLNVAL forever) is left behind.
        self.handle.forget(token, channel);
        resume_unwind(payload)
    }

    /// asyncore `readwrite`'s except clauses: would-block is nothing, a disconnect means
    /// `handle_close`, anything else `handle_error`.
    fn report(&mut self, token: Token, body: &mut Body, failed: Handler, err: io::Error) {
        if matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) {
            return;
        }
        if body.channel.is_closed() {
            log::debug!(target: "sockloop", "{failed} failed on a closed channel: {err}");
            return;
        }
        if is_disconnect(&err) {
            body.channel.mark_broken();
            return;
        }
        if matches!(failed, Handler::Error | Handler::Close) {
            return give_up(body, failed, &err);
        }
        let res = self.invoke(token, body, Handler::Error, |h, cx| {
            let mut cx = Context::new(cx.channel, cx.scratch, cx.lp, cx.token(), failed).for_error(failed);
            h.handle_error(err, &mut cx);
            Ok(())
        });
        if let Err(e) = res {
            give_up(body, Handler::Error, &e);
        }
    }

    /// The one place a peer's end becomes `handle_close`: once per channel, after the handler
    /// that saw it (or when the channel is put back, if it ended while lent elsewhere). Also
    /// where a TLS channel's output from the handler is sealed and written.
    fn finish(&mut self, token: Token, body: &mut Body) {
        // A TLS channel seals and writes what the handler sent, in one go.
        #[cfg(feature = "tls")]
        if let Err(e) = body.channel.tls_commit() {
            self.report(token, body, Handler::Write, e);
        }
        if self.handle.map.take_close_due(token, &body.channel) {
            self.call(token, body, Handler::Close);
        }
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        let mark = self.handle.timers.mark();
        while !self.handle.stop {
            let Some((id, action)) = self.handle.timers.pop_due(now, mark) else { break };
            match action {
                Action::Once(f) => {
                    self.guard("a call_later callback", |lp| f(lp));
                }
                Action::Every(mut f, period) => {
                    if self.guard("a call_every callback", |lp| f(lp)) {
                        self.handle.timers.restore(id, Action::Every(f, period), period, now);
                    }
                }
                Action::Timeout(token) => {
                    self.with_body(token, |lp, body| lp.call(token, body, Handler::Timeout(id)));
                }
                Action::Idle(token) => self.idle_timeout(token, id),
                #[cfg(feature = "tls")]
                Action::TlsHandshake(token) => {
                    if let Some(t) = self.handle.map.timing_if_any(token) {
                        t.handshake = None;
                    }
                    self.with_body(token, |lp, body| lp.handshake_timeout(token, body));
                }
                Action::Resume(token) => {
                    if let Some(t) = self.handle.map.timing_if_any(token).filter(|t| t.paused == Some(id)) {
                        t.paused = None;
                        self.handle.map.mark_dirty(token);
                    }
                }
            }
        }
    }

    /// An idle timer fired: call `handle_timeout` if the channel really saw nothing for the
    /// whole timeout, else re-arm for the time left.
    fn idle_timeout(&mut self, token: Token, id: super::TimerId) {
        let Some(idle) = self.handle.map.timing_if_any(token).and_then(|t| t.idle.as_ref()) else { return };
        if idle.timer != id {
            return;
        }
        let (timeout, due) = (idle.timeout, idle.last + idle.timeout);
        if due > Instant::now() {
            let timer = self.handle.timers.schedule(due, Action::Idle(token));
            if let Some(idle) = self.handle.map.timing_if_any(token).and_then(|t| t.idle.as_mut()) {
                idle.timer = timer;
            }
            return;
        }
        self.with_body(token, |lp, body| {
            lp.call(token, body, Handler::Idle);
            // Still open and nobody changed the timeout: keep watching.
            let unchanged = lp
                .handle
                .map
                .timing_if_any(token)
                .and_then(|t| t.idle.as_ref())
                .is_some_and(|i| i.timer == id);
            if !body.channel.is_closed() && unchanged {
                lp.handle.set_idle_timeout(token, Some(timeout));
            }
        });
    }

    /// Runs a loop-level callback; a panic is reported (or propagated) and returns `false`.
    fn guard(&mut self, what: &str, f: impl FnOnce(&mut Loop)) -> bool {
        if !self.handle.catch_panics {
            f(self);
            return true;
        }
        match catch_unwind(AssertUnwindSafe(|| f(self))) {
            Ok(()) => true,
            Err(p) => {
                emit(&format!("{what} failed: {}", panic_error(p)));
                false
            }
        }
    }

    fn run_waker(&mut self) {
        let Some(jobs) = self.handle.jobs.clone() else { return };
        let mut todo = Vec::new();
        jobs.take(&mut todo);
        for job in todo {
            self.guard("a call_soon closure", job);
        }
    }

    fn run_signals(&mut self) {
        let mut fired = Vec::new();
        let Some(signals) = self.handle.signals.as_mut() else { return };
        signals.take_fired(&mut fired);
        for i in fired {
            let Some(mut h) = self.handle.signals.as_mut().and_then(|s| s.take_handler(i)) else { continue };
            self.guard("a signal handler", |lp| h(lp));
            if let Some(s) = self.handle.signals.as_mut() {
                s.put_handler(i, h);
            }
        }
    }
}

/// The dispatcher method each handler name stands for (`handle_error` takes its error, so the
/// loop calls it itself).
fn run_handler(h: &mut dyn Dispatcher, which: Handler, cx: &mut Context<'_>) -> io::Result<()> {
    match which {
        Handler::Read => h.handle_read(cx),
        Handler::Write => h.handle_write(cx),
        Handler::Expt => h.handle_expt(cx),
        Handler::Connect => h.handle_connect(cx),
        Handler::Accept => h.handle_accept(cx),
        Handler::Close => h.handle_close(cx),
        Handler::Timeout(_) | Handler::Idle => h.handle_timeout(cx),
        Handler::Shutdown => h.handle_shutdown(cx),
        Handler::Error => Ok(()),
    }
}

/// The last resort when `handle_error` or `handle_close` itself fails: report and close.
fn give_up(body: &mut Body, failed: Handler, err: &io::Error) {
    let ty = crate::dispatcher::short_type_name(std::any::type_name_of_val(&*body.handler));
    emit(&compact_report(ty, failed.name(), &format!("{:?}", body.channel), err));
    body.channel.close();
}

/// Whether a TLS handshake is running on the channel (never without the `tls` feature).
fn handshaking(body: &Body) -> bool {
    #[cfg(feature = "tls")]
    return body.channel.tls_handshaking();
    #[cfg(not(feature = "tls"))]
    {
        let _ = body;
        false
    }
}

fn open(body: &Body) -> bool {
    !body.channel.is_closed()
}
