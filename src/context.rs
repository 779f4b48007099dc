//! [`Context`]: what a handler runs with: its channel, the loop's receive buffer, the loop's
//! services, and which handler this is.

use crate::event_loop::{LoopHandle, Token};
use crate::{Channel, Handler};

/// The view of the loop a handler runs with: four borrowed parts, each a public field or a
/// getter, so they can be used together (`cx.channel.recv(cx.scratch)`,
/// `cx.lp.set_timeout(cx.token(), d)`).
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
    /// The loop's map and services (add, find, close, timers, waker, stop ...).
    pub lp: &'a mut LoopHandle,
    token: Token,
    handler: Handler,
    failed: Option<Handler>,
}

impl<'a> Context<'a> {
    pub(crate) fn new(
        channel: &'a mut Channel,
        scratch: &'a mut [u8],
        lp: &'a mut LoopHandle,
        token: Token,
        handler: Handler,
    ) -> Context<'a> {
        Context { channel, scratch, lp, token, handler, failed: None }
    }

    /// The same context for `handle_error`, after `failed` returned an error.
    pub(crate) fn for_error(mut self, failed: Handler) -> Context<'a> {
        self.failed = Some(failed);
        self.handler = Handler::Error;
        self
    }

    /// The token of the running channel, for the services that take one.
    ///
    /// ```
    /// # use sockloop::{Context, Dispatcher};
    /// struct Me;
    /// impl Dispatcher for Me {
    ///     fn handle_read(&mut self, cx: &mut Context<'_>) -> std::io::Result<()> {
    ///         assert!(cx.lp.contains(cx.token()));
    ///         Ok(())
    ///     }
    /// }
    /// ```
    pub fn token(&self) -> Token {
        self.token
    }

    /// The handler that is running ([`Handler::Timeout`] says which timer fired).
    ///
    /// ```
    /// # use sockloop::{Context, Dispatcher, Handler};
    /// struct Session;
    /// impl Dispatcher for Session {
    ///     fn handle_timeout(&mut self, cx: &mut Context<'_>) -> std::io::Result<()> {
    ///         if cx.handler() == Handler::Idle {
    ///             cx.channel.send_all(b"421 idle too long\r\n")?;
    ///         }
    ///         cx.channel.close_when_done();
    ///         Ok(())
    ///     }
    /// }
    /// ```
    pub fn handler(&self) -> Handler {
        self.handler
    }

    /// While `handle_error` runs, the handler whose failure it reports; otherwise the running
    /// handler.
    ///
    /// ```
    /// # use sockloop::{Context, Dispatcher};
    /// struct Me;
    /// impl Dispatcher for Me {
    ///     fn handle_error(&mut self, err: std::io::Error, cx: &mut Context<'_>) {
    ///         eprintln!("{} failed: {err}", cx.failed_handler());
    ///         cx.channel.close();
    ///     }
    /// }
    /// ```
    pub fn failed_handler(&self) -> Handler {
        self.failed.unwrap_or(self.handler)
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
