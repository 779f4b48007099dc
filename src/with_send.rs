//! [`WithSend`]: asyncore's `dispatcher_with_send`.

use crate::{Context, Dispatcher};
use socket2::{SockAddr, Socket};
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
    fn handle_read(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        self.inner.handle_read(cx)
    }
    fn handle_write(&mut self, _cx: &mut Context<'_>) -> io::Result<()> {
        Ok(())
    }
    fn handle_expt(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        self.inner.handle_expt(cx)
    }
    fn handle_connect(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        self.inner.handle_connect(cx)
    }
    fn handle_accept(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        self.inner.handle_accept(cx)
    }
    fn handle_accepted(&mut self, sock: Socket, addr: SockAddr, cx: &mut Context<'_>) -> io::Result<()> {
        self.inner.handle_accepted(sock, addr, cx)
    }
    fn handle_close(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        self.inner.handle_close(cx)
    }
    fn handle_error(&mut self, err: io::Error, cx: &mut Context<'_>) {
        self.inner.handle_error(err, cx)
    }
    fn handle_timeout(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        self.inner.handle_timeout(cx)
    }
    fn handle_shutdown(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        self.inner.handle_shutdown(cx)
    }
    fn inner_mut(&mut self) -> Option<&mut dyn Dispatcher> {
        Some(&mut self.inner)
    }
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
