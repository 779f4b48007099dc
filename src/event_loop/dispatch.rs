//! Turning raw readiness into asyncore's handler calls, and firing timers and wake-ups.
//!
//! The rules (asyncore's `readwrite`, `handle_read_event`, `handle_write_event`,
//! `handle_expt_event`):
//! - a connecting channel first reads `SO_ERROR`: set means `handle_error` with that error
//!   (a refused connect reports OUT, ERR and HUP at once), clear means `handle_connect`;
//! - read-ready calls `handle_accept` on a listening channel, `handle_read` otherwise;
//! - write-ready flushes queued output, then calls `handle_write` if `writable()`;
//! - urgent data calls `handle_expt` (or `handle_close` if the socket has an error);
//! - hang-up, error or invalid-descriptor without read-ready calls `handle_close`; with
//!   read-ready the read runs first and sees the end of stream itself, so no data is lost;
//! - after any handler, an end of stream or disconnect it saw leads to one `handle_close`.

use super::map::Body;
use super::signals::SIGNAL_TOKEN;
use super::timers::Action;
use super::waker::WAKER_TOKEN;
use super::{Loop, Token};
use crate::errors::{compact_report, is_disconnect, panic_error};
use crate::poller::Event;
use crate::{Context, Dispatcher};
use std::io;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::time::Instant;

type Handler<'f> = &'f mut dyn FnMut(&mut dyn Dispatcher, &mut Context<'_>) -> io::Result<()>;

impl Loop {
    pub(super) fn dispatch(&mut self, ev: Event) {
        if ev.token == WAKER_TOKEN {
            self.run_waker();
            return;
        }
        if ev.token == SIGNAL_TOKEN {
            self.run_signals();
            return;
        }
        let token = Token(ev.token);
        let Some(mut body) = self.core.lend(token) else { return };
        if let Some(idle) = body.channel.idle.as_mut() {
            idle.last = Instant::now();
        }
        self.dispatch_event(token, &mut body, ev);
        self.core.settle(token, body);
    }

    fn dispatch_event(&mut self, token: Token, body: &mut Body, ev: Event) {
        if body.channel.connecting() {
            if let Some(err) = body.channel.take_error() {
                body.channel.mark_connect_failed();
                self.report(token, body, "handle_connect", err);
                return;
            }
            body.channel.set_connected();
            self.call(token, body, "handle_connect", &mut |h, cx| h.handle_connect(cx));
        }
        if ev.readable && open(body) {
            if body.channel.accepting() {
                self.call(token, body, "handle_accept", &mut |h, cx| h.handle_accept(cx));
            } else {
                self.call(token, body, "handle_read", &mut |h, cx| h.handle_read(cx));
            }
        }
        if ev.writable && open(body) && !body.channel.accepting() {
            match body.channel.flush() {
                Err(e) => self.report(token, body, "handle_write", e),
                Ok(()) => self.after(token, body),
            }
            if open(body) && body.handler.writable() {
                self.call(token, body, "handle_write", &mut |h, cx| h.handle_write(cx));
            }
        }
        if ev.priority && open(body) {
            if body.channel.take_error().is_some() {
                self.call(token, body, "handle_close", &mut |h, cx| h.handle_close(cx));
            } else {
                self.call(token, body, "handle_expt", &mut |h, cx| h.handle_expt(cx));
            }
        }
        if (ev.hangup || ev.error || ev.invalid) && !ev.readable && open(body) {
            body.channel.close_reported = true;
            self.call(token, body, "handle_close", &mut |h, cx| h.handle_close(cx));
        }
    }

    /// Runs one handler, routes its failure, then delivers a due `handle_close`.
    pub(crate) fn call(&mut self, token: Token, body: &mut Body, name: &'static str, f: Handler<'_>) {
        if let Err(e) = self.invoke(token, body, name, f) {
            self.report(token, body, name, e);
        }
        self.after(token, body);
    }

    fn invoke(
        &mut self,
        token: Token,
        body: &mut Body,
        name: &'static str,
        f: Handler<'_>,
    ) -> io::Result<()> {
        let Body { channel, handler } = body;
        let mut cx = Context::new(channel, &mut self.scratch, &mut self.core, token, name);
        let payload = match catch_unwind(AssertUnwindSafe(|| f(&mut **handler, &mut cx))) {
            Ok(result) => return result,
            Err(payload) => payload,
        };
        if self.core.catch_panics {
            return Err(panic_error(payload));
        }
        // The panic goes on to the caller and drops the lent channel on its way: take its
        // entry out of the map and the poller first, so no stale entry (select: EBADF on every
        // wait; poll: POLLNVAL forever) is left behind.
        self.core.forget(token, channel);
        resume_unwind(payload)
    }

    /// asyncore `readwrite`'s except clauses: would-block is nothing, a disconnect means
    /// `handle_close`, anything else `handle_error`.
    fn report(&mut self, token: Token, body: &mut Body, name: &'static str, err: io::Error) {
        if matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) {
            return;
        }
        if body.channel.closed {
            log::debug!("sockloop: {name} failed on a closed channel: {err}");
            return;
        }
        if is_disconnect(&err) {
            body.channel.mark_broken();
            return;
        }
        if name == "handle_error" || name == "handle_close" {
            self.give_up(body, name, &err);
            return;
        }
        let mut err = Some(err);
        let res = self.invoke(token, body, name, &mut |h, cx| {
            cx.failed = cx.handler;
            cx.handler = "handle_error";
            if let Some(e) = err.take() {
                h.handle_error(e, cx);
            }
            Ok(())
        });
        if let Err(e) = res {
            self.give_up(body, "handle_error", &e);
        }
    }

    /// The last resort when `handle_error` or `handle_close` itself fails: log and close.
    fn give_up(&mut self, body: &mut Body, name: &str, err: &io::Error) {
        let ty = crate::dispatcher::short_type_name(std::any::type_name_of_val(&*body.handler));
        log::error!("{}", compact_report(ty, name, &format!("{:?}", body.channel), err));
        body.channel.close();
    }

    /// Delivers `handle_close` to channels that saw their end outside their own handlers.
    pub(super) fn deliver_due_closes(&mut self) {
        while let Some(token) = self.core.due_close.pop() {
            if let Some(mut body) = self.core.lend(token) {
                self.after(token, &mut body);
                self.core.settle(token, body);
            }
        }
    }

    fn after(&mut self, token: Token, body: &mut Body) {
        if body.channel.close_due() {
            body.channel.close_reported = true;
            self.call(token, body, "handle_close", &mut |h, cx| h.handle_close(cx));
        }
    }

    pub(super) fn fire_timers(&mut self) {
        let now = Instant::now();
        let mark = self.core.timers.mark();
        while !self.core.stop {
            let Some((id, action)) = self.core.timers.pop_due(now, mark) else { break };
            match action {
                Action::Once(f) => {
                    self.guard("a call_later callback", |lp| f(lp));
                }
                Action::Every(mut f, period) => {
                    if self.guard("a call_every callback", |lp| f(lp)) {
                        self.core.timers.restore(id, Action::Every(f, period), period, now);
                    }
                }
                Action::Timeout(token) => self.channel_timeout(token, false),
                Action::Idle(token) => self.channel_timeout(token, true),
                Action::Resume(token) => {
                    if let Some(mut body) = self.core.lend(token) {
                        body.channel.paused = false;
                        self.core.settle(token, body);
                    }
                }
            }
        }
    }

    /// Runs a loop-level callback; a panic is logged (or propagated) and reported as `false`.
    fn guard(&mut self, what: &str, f: impl FnOnce(&mut Loop)) -> bool {
        if !self.core.catch_panics {
            f(self);
            return true;
        }
        match catch_unwind(AssertUnwindSafe(|| f(self))) {
            Ok(()) => true,
            Err(p) => {
                log::error!("sockloop: {what} failed: {}", panic_error(p));
                false
            }
        }
    }

    fn channel_timeout(&mut self, token: Token, idle: bool) {
        let Some(mut body) = self.core.lend(token) else { return };
        if idle {
            let Some(state) = body.channel.idle.as_mut() else {
                self.core.settle(token, body);
                return;
            };
            let due = state.last + state.timeout;
            if due > Instant::now() {
                state.timer = self.core.timers.schedule(due, Action::Idle(token));
                self.core.settle(token, body);
                return;
            }
            let timeout = state.timeout;
            body.channel.idle = None;
            self.call(token, &mut body, "handle_timeout", &mut |h, cx| h.handle_timeout(cx));
            // Still open and nobody changed the timeout: keep watching.
            if !body.channel.closed && body.channel.idle.is_none() {
                let timer = self.core.timers.schedule(Instant::now() + timeout, Action::Idle(token));
                body.channel.idle =
                    Some(Box::new(crate::channel::Idle { timeout, last: Instant::now(), timer }));
            }
        } else {
            self.call(token, &mut body, "handle_timeout", &mut |h, cx| h.handle_timeout(cx));
        }
        self.core.settle(token, body);
    }

    fn run_waker(&mut self) {
        let Some(shared) = self.core.waker.clone() else { return };
        if self.core.waker_needs_drain {
            shared.fd.drain();
        }
        let mut jobs = Vec::new();
        shared.take_jobs(&mut jobs);
        for job in jobs {
            self.guard("a call_soon closure", job);
        }
    }
}

impl Loop {
    fn run_signals(&mut self) {
        let mut fired = Vec::new();
        let Some(signals) = self.core.signals.as_mut() else { return };
        signals.take_fired(&mut fired);
        for i in fired {
            let Some(mut h) = self.core.signals.as_mut().and_then(|s| s.take_handler(i)) else { continue };
            self.guard("a signal handler", |lp| h(lp));
            if let Some(s) = self.core.signals.as_mut() {
                s.put_handler(i, h);
            }
        }
    }
}

fn open(body: &Body) -> bool {
    !body.channel.closed
}
