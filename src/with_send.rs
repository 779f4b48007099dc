//! [`WithSend`]: asyncore's `dispatcher_with_send`.

use crate::dispatcher::forward_handlers;
use crate::{Context, Dispatcher};
use std::io;

/// asyncore's `dispatcher_with_send`: wraps a dispatcher so that output goes through the
/// channel's buffer ([`Channel::send_all`](crate::Channel::send_all), `cx.channel.send_all`) and the
/// channel is writable only while that buffer holds something or a connect is pending.
///
/// Every handler but `writable`/`handle_write` is the wrapped dispatcher's; the loop flushes
/// the buffer when the socket can take more, so there is nothing for `handle_write` to do.
/// [`LoopHandle::get_mut`](crate::LoopHandle::get_mut) finds the wrapped type through the wrapper.
///
/// ```
/// use sockloop::{Dispatcher, WithSend};
/// struct Client;
/// impl Dispatcher for Client {}
/// let d = WithSend::new(Client);
/// assert!(!d.writable());
/// ```
#[derive(Debug, Default, Clone)]
pub struct WithSend<D> {
    /// The wrapped dispatcher.
    pub inner: D,
}

impl<D: Dispatcher> WithSend<D> {
    /// Wraps `inner`.
    ///
    /// ```
    /// struct D;
    /// impl sockloop::Dispatcher for D {}
    /// let w = sockloop::WithSend::new(D);
    /// let _inner: &D = &w.inner;
    /// ```
    pub fn new(inner: D) -> WithSend<D> {
        WithSend { inner }
    }
}

impl<D: Dispatcher> Dispatcher for WithSend<D> {
    fn readable(&self) -> bool {
        self.inner.readable()
    }
    fn writable(&self) -> bool {
        false
    }
    fn volatile(&self) -> bool {
        self.inner.volatile()
    }
    fn urgent_data(&self) -> bool {
        self.inner.urgent_data()
    }
    fn holds_output(&self) -> bool {
        self.inner.holds_output()
    }
    fn handle_write(&mut self, _cx: &mut Context<'_>) -> io::Result<()> {
        Ok(())
    }
    forward_handlers!(inner => handle_read, handle_expt, handle_connect, handle_accept, handle_accepted,
        handle_close, handle_error, handle_timeout, handle_shutdown, inner_mut);
}

/// A dispatcher that is neither readable nor writable, so its channel never wakes the loop:
/// a placeholder for channels driven from elsewhere (through [`Loop::channel_mut`](crate::LoopHandle::channel_mut)),
/// and for tests. Queued output is still sent.
///
/// ```
/// use sockloop::Dispatcher;
/// assert!(!sockloop::Ignore.writable());
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct Ignore;

impl Dispatcher for Ignore {
    fn readable(&self) -> bool {
        false
    }
    fn writable(&self) -> bool {
        false
    }
}
