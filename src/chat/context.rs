//! [`ChatContext`]: what a [`ChatHandler`](super::ChatHandler) method runs with.

use super::producer::Producer;
use super::{ChatState, Terminator};
use crate::{Channel, Context, Handler, LoopHandle, Token};
use std::io;

/// What [`ChatHandler`](super::ChatHandler) methods get: the chat's own controls (output, terminator, record
/// limit) as methods, and the channel and the loop's services as fields, named as in
/// [`Context`] (`chat.channel`, `chat.lp`, `chat.token()`). Nothing here shadows a channel
/// method: closing is `chat.channel.close()` or `chat.channel.close_when_done()`.
///
/// ```
/// use sockloop::chat::{ChatContext, ChatHandler};
/// struct Quit;
/// impl ChatHandler for Quit {
///     fn collect_incoming_data(&mut self, _: &[u8]) {}
///     fn found_terminator(&mut self, chat: &mut ChatContext<'_>) -> std::io::Result<()> {
///         chat.push(b"221 bye\r\n")?;
///         chat.channel.close_when_done(); // sends what is queued, producers included, then closes
///         Ok(())
///     }
/// }
/// ```
pub struct ChatContext<'s> {
    state: &'s mut ChatState,
    /// The channel.
    pub channel: &'s mut Channel,
    /// The loop's map and services.
    pub lp: &'s mut LoopHandle,
    token: Token,
    handler: Handler,
    failed: Handler,
}

impl ChatContext<'_> {
    /// The token of this channel, for the services that take one.
    ///
    /// ```
    /// # use sockloop::chat::ChatContext;
    /// fn later(chat: &mut ChatContext<'_>) { chat.lp.set_timeout(chat.token(), std::time::Duration::from_secs(1)); }
    /// ```
    pub fn token(&self) -> Token {
        self.token
    }

    /// The dispatcher handler that is running (`handle_read` for `found_terminator`).
    ///
    /// ```
    /// # use sockloop::chat::ChatContext;
    /// fn idle(chat: &ChatContext<'_>) -> bool { chat.handler() == sockloop::Handler::Idle }
    /// ```
    pub fn handler(&self) -> Handler {
        self.handler
    }

    /// While `handle_error` runs, the handler whose failure it reports.
    ///
    /// ```
    /// # use sockloop::chat::ChatContext;
    /// fn what(chat: &ChatContext<'_>) -> &'static str { chat.failed_handler().name() }
    /// ```
    pub fn failed_handler(&self) -> Handler {
        self.failed
    }

    /// asynchat `push(data)`: queues bytes for sending, in order with producers.
    ///
    /// ```
    /// # use sockloop::chat::ChatContext;
    /// fn greet(chat: &mut ChatContext<'_>) -> std::io::Result<()> { chat.push(b"hello\r\n") }
    /// ```
    pub fn push(&mut self, data: &[u8]) -> io::Result<()> {
        self.state.push(self.channel, data)
    }

    /// asynchat `push_with_producer(producer)`.
    ///
    /// ```
    /// # use sockloop::chat::{ChatContext, SimpleProducer};
    /// fn body(chat: &mut ChatContext<'_>, data: Vec<u8>) -> std::io::Result<()> {
    ///     chat.push_with_producer(SimpleProducer::with_buffer_size(data, 8))
    /// }
    /// ```
    pub fn push_with_producer(&mut self, p: impl Producer) -> io::Result<()> {
        self.state.push_with_producer(self.channel, Box::new(p))
    }

    /// asynchat `set_terminator(term)`; applies at once to bytes already received.
    ///
    /// ```
    /// # use sockloop::chat::ChatContext;
    /// fn expect_body(chat: &mut ChatContext<'_>, len: usize) { chat.set_terminator(len) }
    /// ```
    pub fn set_terminator(&mut self, t: impl Into<Terminator>) {
        self.state.set_terminator(t.into());
    }

    /// asynchat `get_terminator()`.
    ///
    /// ```
    /// # use sockloop::chat::ChatContext;
    /// fn in_body(chat: &ChatContext<'_>) -> bool { matches!(chat.get_terminator(), sockloop::chat::Terminator::Count(_)) }
    /// ```
    pub fn get_terminator(&self) -> &Terminator {
        &self.state.terminator
    }

    /// Sets the record limit for string terminators (see [`AsyncChat::set_max_record`](super::AsyncChat::set_max_record));
    /// protocols set it per phase (command lines small, message bodies large).
    ///
    /// ```
    /// # use sockloop::chat::ChatContext;
    /// fn command_phase(chat: &mut ChatContext<'_>) { chat.set_max_record(4096) }
    /// ```
    pub fn set_max_record(&mut self, limit: usize) {
        self.state.max_record = limit;
    }

    /// asynchat `discard_buffers()`: drops unprocessed input and all queued output.
    ///
    /// ```
    /// # use sockloop::chat::ChatContext;
    /// fn reset(chat: &mut ChatContext<'_>) { chat.discard_buffers() }
    /// ```
    pub fn discard_buffers(&mut self) {
        self.state.discard(self.channel);
    }
}

/// The parts of a [`Context`] a chat handler gets (everything but the receive buffer, which
/// holds the bytes being scanned).
pub(super) struct ChatIo<'s> {
    pub channel: &'s mut Channel,
    pub lp: &'s mut LoopHandle,
    pub token: Token,
    pub handler: Handler,
    pub failed: Handler,
}

impl<'s> ChatIo<'s> {
    pub fn of(cx: &'s mut Context<'_>) -> ChatIo<'s> {
        let (token, handler, failed) = (cx.token(), cx.handler(), cx.failed_handler());
        ChatIo { channel: &mut *cx.channel, lp: &mut *cx.lp, token, handler, failed }
    }

    pub fn chat<'c>(&'c mut self, state: &'c mut ChatState) -> ChatContext<'c> {
        ChatContext {
            state,
            channel: &mut *self.channel,
            lp: &mut *self.lp,
            token: self.token,
            handler: self.handler,
            failed: self.failed,
        }
    }
}
