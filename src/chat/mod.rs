//! asynchat in Rust: [`AsyncChat`] splits a byte stream into records at a [`Terminator`] and
//! hands them to a [`ChatHandler`], and queues output as bytes or [`Producer`]s.
//!
//! A line echo server:
//!
//! ```no_run
//! use sockloop::chat::{AsyncChat, ChatContext, ChatHandler};
//! use sockloop::{Channel, Context, Dispatcher, Loop};
//! use std::io;
//!
//! #[derive(Default)]
//! struct Lines { line: Vec<u8> }
//! impl ChatHandler for Lines {
//!     fn collect_incoming_data(&mut self, data: &[u8]) { self.line.extend_from_slice(data) }
//!     fn found_terminator(&mut self, chat: &mut ChatContext<'_>) -> io::Result<()> {
//!         let line = std::mem::take(&mut self.line);
//!         chat.push(&line)?;
//!         chat.push(b"\r\n")
//!     }
//! }
//!
//! struct Server;
//! impl Dispatcher for Server {
//!     fn handle_accepted(&mut self, s: sockloop::Socket, _: sockloop::SockAddr, cx: &mut Context<'_>) -> io::Result<()> {
//!         let mut chat = AsyncChat::new(Lines::default());
//!         chat.set_terminator("\r\n");
//!         cx.lp.add(Channel::from(s), chat)?;
//!         Ok(())
//!     }
//! }
//!
//! let mut lp = Loop::new()?;
//! lp.add(Channel::tcp_listener("127.0.0.1:7000".parse().unwrap(), 1024)?, Server)?;
//! lp.run()
//! # ;Ok::<(), io::Error>(())
//! ```

mod context;
mod file_producer;
mod producer;
mod terminator;

pub use context::ChatContext;

pub use file_producer::FileProducer;
pub use producer::{Producer, SharedProducer, SimpleProducer};
pub use terminator::{find_prefix_at_end, Terminator};

use crate::{Channel, Context, Dispatcher};
use context::ChatIo;
use producer::Fifo;
use std::io;

/// asynchat's `ac_in_buffer_size` and `ac_out_buffer_size` default.
///
/// ```
/// assert_eq!(sockloop::chat::DEFAULT_BUFFER_SIZE, 65536);
/// ```
pub const DEFAULT_BUFFER_SIZE: usize = 65536;

/// Default bound on the bytes collected while a string terminator is awaited (1 MiB).
///
/// ```
/// assert_eq!(sockloop::chat::DEFAULT_MAX_RECORD, 1 << 20);
/// ```
pub const DEFAULT_MAX_RECORD: usize = 1 << 20;

/// The error a channel fails with when more than its record limit arrives without the
/// terminator (a line that never ends). `handle_error` receives it as
/// [`ErrorKind::InvalidData`](io::ErrorKind::InvalidData); [`InputLimit::is`] tells it apart.
///
/// ```
/// use sockloop::chat::InputLimit;
/// let e = InputLimit::error(4096);
/// assert!(InputLimit::is(&e));
/// assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
/// ```
#[derive(Debug)]
pub struct InputLimit {
    /// The limit that was passed.
    pub limit: usize,
}

impl InputLimit {
    /// The `io::Error` carrying an `InputLimit`.
    ///
    /// ```
    /// assert!(sockloop::chat::InputLimit::error(1).to_string().contains("terminator"));
    /// ```
    pub fn error(limit: usize) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, InputLimit { limit })
    }

    /// Whether `err` is an input-limit error.
    ///
    /// ```
    /// assert!(!sockloop::chat::InputLimit::is(&std::io::Error::other("x")));
    /// ```
    pub fn is(err: &io::Error) -> bool {
        err.get_ref().is_some_and(|e| e.is::<InputLimit>())
    }
}

impl std::fmt::Display for InputLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "more than {} bytes arrived without the terminator", self.limit)
    }
}

impl std::error::Error for InputLimit {}

/// What a conversational protocol implements: asynchat's `collect_incoming_data` and
/// `found_terminator`, plus the dispatcher handlers it may want. Everything but the first two
/// has a default.
///
/// ```
/// use sockloop::chat::{ChatContext, ChatHandler};
/// struct Records(Vec<Vec<u8>>, Vec<u8>);
/// impl ChatHandler for Records {
///     fn collect_incoming_data(&mut self, data: &[u8]) { self.1.extend_from_slice(data) }
///     fn found_terminator(&mut self, _chat: &mut ChatContext<'_>) -> std::io::Result<()> {
///         self.0.push(std::mem::take(&mut self.1));
///         Ok(())
///     }
/// }
/// ```
pub trait ChatHandler: 'static {
    /// asynchat `collect_incoming_data(data)`: bytes of the current record (or of the stream,
    /// with no terminator). Buffer them.
    ///
    /// ```
    /// # use sockloop::chat::{ChatContext, ChatHandler};
    /// struct Line(Vec<u8>);
    /// impl ChatHandler for Line {
    ///     fn collect_incoming_data(&mut self, data: &[u8]) { self.0.extend_from_slice(data) }
    ///     fn found_terminator(&mut self, _: &mut ChatContext<'_>) -> std::io::Result<()> { self.0.clear(); Ok(()) }
    /// }
    /// ```
    fn collect_incoming_data(&mut self, data: &[u8]);

    /// asynchat `found_terminator()`: the current record is complete. May push output, set a
    /// new terminator (it applies at once to bytes already received), or close.
    ///
    /// ```
    /// # use sockloop::chat::{ChatContext, ChatHandler};
    /// struct Upper(Vec<u8>);
    /// impl ChatHandler for Upper {
    ///     fn collect_incoming_data(&mut self, data: &[u8]) { self.0.extend_from_slice(data) }
    ///     fn found_terminator(&mut self, chat: &mut ChatContext<'_>) -> std::io::Result<()> {
    ///         let line = std::mem::take(&mut self.0).to_ascii_uppercase();
    ///         chat.push(&line)?;
    ///         chat.push(b"\n")
    ///     }
    /// }
    /// ```
    fn found_terminator(&mut self, chat: &mut ChatContext<'_>) -> io::Result<()>;

    /// Called after each read, once its bytes went to `collect_incoming_data` and
    /// `found_terminator`: for what those cannot do without the context, such as arming a timer
    /// once a record has begun (a slowloris guard). Not in asynchat. Default: nothing.
    ///
    /// ```
    /// # use sockloop::chat::{ChatContext, ChatHandler};
    /// # use std::time::Duration;
    /// struct Lines { partial: bool, timer: Option<sockloop::TimerId> }
    /// impl ChatHandler for Lines {
    ///     fn collect_incoming_data(&mut self, _: &[u8]) { self.partial = true }
    ///     fn found_terminator(&mut self, chat: &mut ChatContext<'_>) -> std::io::Result<()> {
    ///         self.partial = false;
    ///         if let Some(t) = self.timer.take() { chat.lp.cancel(t); }
    ///         Ok(())
    ///     }
    ///     fn after_input(&mut self, chat: &mut ChatContext<'_>) -> std::io::Result<()> {
    ///         if self.partial && self.timer.is_none() {
    ///             self.timer = Some(chat.lp.set_timeout(chat.token(), Duration::from_secs(20)));
    ///         }
    ///         Ok(())
    ///     }
    /// }
    /// ```
    fn after_input(&mut self, chat: &mut ChatContext<'_>) -> io::Result<()> {
        let _ = chat;
        Ok(())
    }

    /// Whether to read from the peer (asyncore `readable()`). Default `true`.
    ///
    /// ```
    /// # use sockloop::chat::{ChatContext, ChatHandler};
    /// struct Gate { open: bool }
    /// impl ChatHandler for Gate {
    ///     fn collect_incoming_data(&mut self, _: &[u8]) {}
    ///     fn found_terminator(&mut self, _: &mut ChatContext<'_>) -> std::io::Result<()> { Ok(()) }
    ///     fn readable(&self) -> bool { self.open }
    /// }
    /// ```
    fn readable(&self) -> bool {
        true
    }

    /// asyncore `handle_connect()` for a chat client whose connect completed.
    ///
    /// ```
    /// # use sockloop::chat::{ChatContext, ChatHandler};
    /// struct Client;
    /// impl ChatHandler for Client {
    ///     fn collect_incoming_data(&mut self, _: &[u8]) {}
    ///     fn found_terminator(&mut self, _: &mut ChatContext<'_>) -> std::io::Result<()> { Ok(()) }
    ///     fn handle_connect(&mut self, chat: &mut ChatContext<'_>) -> std::io::Result<()> {
    ///         chat.push(b"EHLO client\r\n")
    ///     }
    /// }
    /// ```
    fn handle_connect(&mut self, chat: &mut ChatContext<'_>) -> io::Result<()> {
        let _ = chat;
        Ok(())
    }

    /// asyncore `handle_close()`: the peer closed. Default: close.
    ///
    /// ```
    /// # use sockloop::chat::{ChatContext, ChatHandler};
    /// struct Member { nick: String }
    /// impl ChatHandler for Member {
    ///     fn collect_incoming_data(&mut self, _: &[u8]) {}
    ///     fn found_terminator(&mut self, _: &mut ChatContext<'_>) -> std::io::Result<()> { Ok(()) }
    ///     fn handle_close(&mut self, chat: &mut ChatContext<'_>) -> std::io::Result<()> {
    ///         eprintln!("{} left", self.nick);
    ///         chat.channel.close();
    ///         Ok(())
    ///     }
    /// }
    /// ```
    fn handle_close(&mut self, chat: &mut ChatContext<'_>) -> io::Result<()> {
        chat.channel.close();
        Ok(())
    }

    /// asyncore `handle_error()`. Default: log a condensed report and close.
    ///
    /// ```
    /// # use sockloop::chat::{ChatContext, ChatHandler, InputLimit};
    /// struct Smtp;
    /// impl ChatHandler for Smtp {
    ///     fn collect_incoming_data(&mut self, _: &[u8]) {}
    ///     fn found_terminator(&mut self, _: &mut ChatContext<'_>) -> std::io::Result<()> { Ok(()) }
    ///     fn handle_error(&mut self, err: std::io::Error, chat: &mut ChatContext<'_>) {
    ///         if InputLimit::is(&err) {
    ///             let _ = chat.push(b"500 line too long\r\n");
    ///         }
    ///         chat.channel.close_when_done();
    ///     }
    /// }
    /// ```
    fn handle_error(&mut self, err: io::Error, chat: &mut ChatContext<'_>) {
        crate::dispatcher::report_and_close(
            std::any::type_name_of_val(self),
            &err,
            chat.failed_handler(),
            chat.channel,
        );
    }

    /// A timer or idle timeout of the channel expired. Default: close.
    ///
    /// ```
    /// # use sockloop::chat::{ChatContext, ChatHandler};
    /// struct Idle;
    /// impl ChatHandler for Idle {
    ///     fn collect_incoming_data(&mut self, _: &[u8]) {}
    ///     fn found_terminator(&mut self, _: &mut ChatContext<'_>) -> std::io::Result<()> { Ok(()) }
    ///     fn handle_timeout(&mut self, chat: &mut ChatContext<'_>) -> std::io::Result<()> {
    ///         chat.push(b"421 timeout\r\n")?;
    ///         chat.channel.close_when_done();
    ///         Ok(())
    ///     }
    /// }
    /// ```
    fn handle_timeout(&mut self, chat: &mut ChatContext<'_>) -> io::Result<()> {
        chat.channel.close();
        Ok(())
    }

    /// The loop is shutting down ([`Loop::shutdown`](crate::Loop::shutdown)). Default:
    /// [`close_when_done`](Channel::close_when_done), so everything queued, producers
    /// included, is sent before the channel closes. A protocol may push a goodbye first.
    ///
    /// ```
    /// use sockloop::chat::{ChatContext, ChatHandler};
    /// struct Smtp;
    /// impl ChatHandler for Smtp {
    ///     fn collect_incoming_data(&mut self, _: &[u8]) {}
    ///     fn found_terminator(&mut self, _: &mut ChatContext<'_>) -> std::io::Result<()> { Ok(()) }
    ///     fn handle_shutdown(&mut self, chat: &mut ChatContext<'_>) -> std::io::Result<()> {
    ///         chat.push(b"421 service shutting down\r\n")?;
    ///         chat.channel.close_when_done();
    ///         Ok(())
    ///     }
    /// }
    /// ```
    fn handle_shutdown(&mut self, chat: &mut ChatContext<'_>) -> io::Result<()> {
        chat.channel.close_when_done();
        Ok(())
    }
}

/// The chat state asynchat kept on the channel: terminator, input remainder, producer fifo.
struct ChatState {
    terminator: Terminator,
    /// Trailing bytes that may begin a split terminator.
    pending: Vec<u8>,
    fifo: Fifo,
    in_buffer_size: usize,
    out_buffer_size: usize,
    max_record: usize,
    /// Bytes collected since the last terminator (for `max_record`).
    collected: usize,
}

impl Default for ChatState {
    fn default() -> Self {
        ChatState {
            terminator: Terminator::None,
            pending: Vec::new(),
            fifo: Fifo::default(),
            in_buffer_size: DEFAULT_BUFFER_SIZE,
            out_buffer_size: DEFAULT_BUFFER_SIZE,
            max_record: DEFAULT_MAX_RECORD,
            collected: 0,
        }
    }
}

impl ChatState {
    fn set_terminator(&mut self, t: Terminator) {
        self.terminator = t;
        self.collected = 0;
    }

    /// asynchat `push(data)`: behind queued producers if any, else straight to the channel.
    fn push(&mut self, channel: &mut Channel, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        if self.fifo.is_empty() {
            channel.send_all(data)
        } else {
            self.fifo.push(Box::new(data.to_vec()));
            Ok(())
        }
    }

    fn push_with_producer(&mut self, channel: &mut Channel, p: Box<dyn Producer>) -> io::Result<()> {
        self.fifo.push(p);
        self.refill(channel)
    }

    /// asynchat `initiate_send`: moves producer output to the channel while it has room.
    /// (A draining channel closes once this has emptied the fifo and the channel flushed it:
    /// the loop sees both through `holds_output`.)
    ///
    /// A producer that [sends directly](Producer::sends_directly) (a file by `sendfile`) goes
    /// once the channel's queued bytes are out; after a send that leaves it unfinished the
    /// socket is taken to be full (a short send), and the next write readiness resumes it.
    fn refill(&mut self, channel: &mut Channel) -> io::Result<()> {
        while channel.pending_output() < self.out_buffer_size && !channel.is_closed() {
            if self.fifo.front_sends_directly() {
                if channel.pending_output() > 0 || self.fifo.send_front(channel)? == 0 {
                    break;
                }
                if self.fifo.front_sends_directly() {
                    break;
                }
                continue;
            }
            match self.fifo.next_chunk()? {
                Some(chunk) => channel.send_all(&chunk)?,
                None if self.fifo.front_sends_directly() => continue,
                None => break,
            }
        }
        Ok(())
    }

    fn discard(&mut self, channel: &mut Channel) {
        self.pending.clear();
        self.fifo.clear();
        self.collected = 0;
        channel.discard_output();
    }
}

/// asynchat's `async_chat`: a [`Dispatcher`] that reads records delimited by a [`Terminator`]
/// into a [`ChatHandler`] and sends queued output, bytes or producers, in order.
///
/// Reads take up to `ac_in_buffer_size` bytes into the loop's shared buffer and are scanned
/// there (a terminator split across reads is found; several records in one read are delivered in
/// order; a terminator changed in `found_terminator` applies to the rest at once). Only the few
/// trailing bytes that may begin a split terminator are kept between reads. Writable only while
/// producers are queued; queued bytes are the channel's ([`Channel::send_all`]).
///
/// ```
/// use sockloop::chat::{AsyncChat, ChatContext, ChatHandler, Terminator};
/// struct Nop;
/// impl ChatHandler for Nop {
///     fn collect_incoming_data(&mut self, _: &[u8]) {}
///     fn found_terminator(&mut self, _: &mut ChatContext<'_>) -> std::io::Result<()> { Ok(()) }
/// }
/// let mut chat = AsyncChat::new(Nop);
/// chat.set_terminator(b"\r\n.\r\n");
/// assert_eq!(chat.get_terminator(), &Terminator::Bytes(b"\r\n.\r\n".to_vec()));
/// ```
pub struct AsyncChat<H> {
    /// The protocol handler.
    pub handler: H,
    state: ChatState,
}

impl<H: ChatHandler> AsyncChat<H> {
    /// Wraps `handler`, with no terminator set (like asynchat, set one before data arrives).
    ///
    /// ```
    /// # use sockloop::chat::{AsyncChat, ChatContext, ChatHandler, Terminator};
    /// # struct Nop;
    /// # impl ChatHandler for Nop {
    /// #     fn collect_incoming_data(&mut self, _: &[u8]) {}
    /// #     fn found_terminator(&mut self, _: &mut ChatContext<'_>) -> std::io::Result<()> { Ok(()) }
    /// # }
    /// assert_eq!(AsyncChat::new(Nop).get_terminator(), &Terminator::None);
    /// ```
    pub fn new(handler: H) -> AsyncChat<H> {
        AsyncChat { handler, state: ChatState::default() }
    }

    /// asynchat `set_terminator(term)`: a byte string, a count or `Terminator::None`.
    ///
    /// ```
    /// # use sockloop::chat::{AsyncChat, ChatContext, ChatHandler, Terminator};
    /// # struct Nop;
    /// # impl ChatHandler for Nop {
    /// #     fn collect_incoming_data(&mut self, _: &[u8]) {}
    /// #     fn found_terminator(&mut self, _: &mut ChatContext<'_>) -> std::io::Result<()> { Ok(()) }
    /// # }
    /// let mut chat = AsyncChat::new(Nop);
    /// chat.set_terminator(512usize);
    /// assert_eq!(chat.get_terminator(), &Terminator::Count(512));
    /// ```
    pub fn set_terminator(&mut self, t: impl Into<Terminator>) {
        self.state.set_terminator(t.into());
    }

    /// asynchat `get_terminator()`; a count shows what is left of it.
    ///
    /// ```
    /// # use sockloop::chat::{AsyncChat, ChatContext, ChatHandler, Terminator};
    /// # struct Nop;
    /// # impl ChatHandler for Nop {
    /// #     fn collect_incoming_data(&mut self, _: &[u8]) {}
    /// #     fn found_terminator(&mut self, _: &mut ChatContext<'_>) -> std::io::Result<()> { Ok(()) }
    /// # }
    /// assert!(!AsyncChat::new(Nop).get_terminator().is_active());
    /// ```
    pub fn get_terminator(&self) -> &Terminator {
        &self.state.terminator
    }

    /// Sets `ac_in_buffer_size` (bytes per read) and `ac_out_buffer_size` (how much producer
    /// output is moved to the channel at a time). Both default to 65536.
    ///
    /// ```
    /// # use sockloop::chat::{AsyncChat, ChatContext, ChatHandler};
    /// # struct Nop;
    /// # impl ChatHandler for Nop {
    /// #     fn collect_incoming_data(&mut self, _: &[u8]) {}
    /// #     fn found_terminator(&mut self, _: &mut ChatContext<'_>) -> std::io::Result<()> { Ok(()) }
    /// # }
    /// let mut chat = AsyncChat::new(Nop);
    /// chat.set_buffer_sizes(4096, 4096);
    /// assert_eq!(chat.buffer_sizes(), (4096, 4096));
    /// ```
    pub fn set_buffer_sizes(&mut self, in_size: usize, out_size: usize) {
        self.state.in_buffer_size = in_size.max(1);
        self.state.out_buffer_size = out_size.max(1);
    }

    /// `(ac_in_buffer_size, ac_out_buffer_size)`.
    ///
    /// ```
    /// # use sockloop::chat::{AsyncChat, ChatContext, ChatHandler};
    /// # struct Nop;
    /// # impl ChatHandler for Nop {
    /// #     fn collect_incoming_data(&mut self, _: &[u8]) {}
    /// #     fn found_terminator(&mut self, _: &mut ChatContext<'_>) -> std::io::Result<()> { Ok(()) }
    /// # }
    /// assert_eq!(AsyncChat::new(Nop).buffer_sizes(), (65536, 65536));
    /// ```
    pub fn buffer_sizes(&self) -> (usize, usize) {
        (self.state.in_buffer_size, self.state.out_buffer_size)
    }

    /// Sets the most bytes collected while a string terminator is awaited (default
    /// [`DEFAULT_MAX_RECORD`]); more fails the channel with [`InputLimit`]. Counts and
    /// `Terminator::None` are not limited: the protocol chose their size.
    ///
    /// Before the failure reaches `handle_error`, `collect_incoming_data` receives the
    /// record's bytes up to exactly the limit (never more), so the handler can tell what was
    /// too long: an HTTP server answers 414 when the request line itself did not end within
    /// the limit and 431 when the headers after it did not.
    ///
    /// ```
    /// use sockloop::chat::{AsyncChat, ChatContext, ChatHandler, InputLimit};
    /// use sockloop::{Channel, Loop};
    /// use std::io::Write;
    ///
    /// struct Head { got: Vec<u8>, verdict: std::rc::Rc<std::cell::Cell<u16>> }
    /// impl ChatHandler for Head {
    ///     fn collect_incoming_data(&mut self, data: &[u8]) { self.got.extend_from_slice(data) }
    ///     fn found_terminator(&mut self, _: &mut ChatContext<'_>) -> std::io::Result<()> { Ok(()) }
    ///     fn handle_error(&mut self, err: std::io::Error, chat: &mut ChatContext<'_>) {
    ///         assert!(InputLimit::is(&err) && self.got.len() == 16); // exactly the limit
    ///         self.verdict.set(if self.got.contains(&b'\n') { 431 } else { 414 });
    ///         chat.channel.close();
    ///     }
    /// }
    ///
    /// let (mut peer, ours) = std::os::unix::net::UnixStream::pair()?;
    /// peer.write_all(b"GET /a HTTP/1.1\r\nX-Long: aaaaaaaaaaaaaaaa")?; // no blank line within 16
    /// let verdict = std::rc::Rc::new(std::cell::Cell::new(0));
    /// let mut chat = AsyncChat::new(Head { got: Vec::new(), verdict: verdict.clone() });
    /// chat.set_terminator(b"\r\n\r\n");
    /// chat.set_max_record(16);
    /// let mut lp = Loop::new()?;
    /// lp.add(Channel::from(ours), chat)?;
    /// lp.run()?; // the channel closes itself
    /// assert_eq!(verdict.get(), 414); // the request line did not end within 16 bytes
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// ```
    /// # use sockloop::chat::{AsyncChat, ChatContext, ChatHandler};
    /// # struct Nop;
    /// # impl ChatHandler for Nop {
    /// #     fn collect_incoming_data(&mut self, _: &[u8]) {}
    /// #     fn found_terminator(&mut self, _: &mut ChatContext<'_>) -> std::io::Result<()> { Ok(()) }
    /// # }
    /// let mut chat = AsyncChat::new(Nop);
    /// chat.set_max_record(4096);
    /// assert_eq!(chat.max_record(), 4096);
    /// ```
    pub fn set_max_record(&mut self, limit: usize) {
        self.state.max_record = limit;
    }

    /// The current record limit.
    ///
    /// ```
    /// # use sockloop::chat::{AsyncChat, ChatContext, ChatHandler};
    /// # struct Nop;
    /// # impl ChatHandler for Nop {
    /// #     fn collect_incoming_data(&mut self, _: &[u8]) {}
    /// #     fn found_terminator(&mut self, _: &mut ChatContext<'_>) -> std::io::Result<()> { Ok(()) }
    /// # }
    /// assert_eq!(AsyncChat::new(Nop).max_record(), sockloop::chat::DEFAULT_MAX_RECORD);
    /// ```
    pub fn max_record(&self) -> usize {
        self.state.max_record
    }

    /// asynchat `push(data)` from outside the channel's handlers (a broadcast reaching it
    /// through [`LoopHandle::get_mut`](crate::LoopHandle::get_mut)): pass the channel `get_mut` returned with it.
    ///
    /// ```no_run
    /// # use sockloop::chat::{AsyncChat, ChatContext, ChatHandler};
    /// # use sockloop::{Context, Token};
    /// # struct Member;
    /// # impl ChatHandler for Member {
    /// #     fn collect_incoming_data(&mut self, _: &[u8]) {}
    /// #     fn found_terminator(&mut self, _: &mut ChatContext<'_>) -> std::io::Result<()> { Ok(()) }
    /// # }
    /// fn tell(cx: &mut Context<'_>, to: Token, line: &[u8]) -> std::io::Result<()> {
    ///     match cx.lp.get_mut::<AsyncChat<Member>>(to) {
    ///         Some((chat, channel)) => chat.push(channel, line),
    ///         None => Ok(()),
    ///     }
    /// }
    /// ```
    pub fn push(&mut self, channel: &mut Channel, data: &[u8]) -> io::Result<()> {
        self.state.push(channel, data)
    }

    /// asynchat `push_with_producer(producer)` from outside the channel's handlers.
    ///
    /// ```no_run
    /// # use sockloop::chat::{AsyncChat, ChatContext, ChatHandler, SimpleProducer};
    /// # struct Nop;
    /// # impl ChatHandler for Nop {
    /// #     fn collect_incoming_data(&mut self, _: &[u8]) {}
    /// #     fn found_terminator(&mut self, _: &mut ChatContext<'_>) -> std::io::Result<()> { Ok(()) }
    /// # }
    /// fn send_file(chat: &mut AsyncChat<Nop>, ch: &mut sockloop::Channel, body: Vec<u8>) -> std::io::Result<()> {
    ///     chat.push_with_producer(ch, SimpleProducer::new(body))
    /// }
    /// ```
    pub fn push_with_producer(&mut self, channel: &mut Channel, p: impl Producer) -> io::Result<()> {
        self.state.push_with_producer(channel, Box::new(p))
    }

    /// asynchat's `handle_read` loop over `data`: records to the handler, the terminator
    /// re-read after each one, a possible split terminator kept for the next read. Stops once
    /// the channel closes or starts draining (the protocol is done with its input).
    fn scan(&mut self, mut data: &[u8], io: &mut ChatIo<'_>) -> io::Result<()> {
        while !data.is_empty() && !io.channel.is_closed() && !io.channel.is_closing() {
            match &mut self.state.terminator {
                Terminator::None | Terminator::Count(0) => {
                    self.handler.collect_incoming_data(data);
                    return Ok(());
                }
                Terminator::Count(n) => {
                    if data.len() < *n {
                        *n -= data.len();
                        self.handler.collect_incoming_data(data);
                        return Ok(());
                    }
                    let (record, rest) = data.split_at(*n);
                    *n = 0;
                    self.handler.collect_incoming_data(record);
                    data = rest;
                }
                Terminator::Bytes(t) => match terminator::find(data, t) {
                    Some(i) => {
                        let after = i + t.len();
                        self.collect_counted(&data[..i])?;
                        data = &data[after..];
                    }
                    None => {
                        let keep = find_prefix_at_end(data, t);
                        let (head, tail) = data.split_at(data.len() - keep);
                        self.collect_counted(head)?;
                        self.state.pending.extend_from_slice(tail);
                        return Ok(());
                    }
                },
            }
            self.state.collected = 0;
            let mut chat = io.chat(&mut self.state);
            self.handler.found_terminator(&mut chat)?;
        }
        Ok(())
    }

    /// Collects part of a string-terminated record, enforcing the record limit: the bytes
    /// that fit under it are delivered, then the channel fails with [`InputLimit`].
    fn collect_counted(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let room = self.state.max_record.saturating_sub(self.state.collected);
        if data.len() > room {
            if room > 0 {
                self.handler.collect_incoming_data(&data[..room]);
            }
            self.state.collected = self.state.max_record.saturating_add(1);
            return Err(InputLimit::error(self.state.max_record));
        }
        self.state.collected += data.len();
        self.handler.collect_incoming_data(data);
        Ok(())
    }

    /// Feeds received bytes, joining them to a kept partial terminator first.
    fn feed(&mut self, data: &[u8], io: &mut ChatIo<'_>) -> io::Result<()> {
        if self.state.pending.is_empty() {
            return self.scan(data, io);
        }
        let mut joined = std::mem::take(&mut self.state.pending);
        joined.extend_from_slice(data);
        self.scan(&joined, io)
    }

    /// Runs a chat handler method with a [`ChatContext`] over `cx`.
    fn with_chat<R>(&mut self, cx: &mut Context<'_>, f: impl FnOnce(&mut H, &mut ChatContext<'_>) -> R) -> R {
        let mut io = ChatIo::of(cx);
        let mut chat = io.chat(&mut self.state);
        f(&mut self.handler, &mut chat)
    }
}

impl<H: ChatHandler> Dispatcher for AsyncChat<H> {
    fn readable(&self) -> bool {
        self.handler.readable()
    }

    /// A chat handler has no `handle_expt` of its own (urgent data only meets the default
    /// warning), so the io_uring backend may receive a chat's input on the ring.
    fn urgent_data(&self) -> bool {
        false
    }

    /// Writable only while producers are queued (queued bytes are the channel's).
    fn writable(&self) -> bool {
        !self.state.fifo.is_empty()
    }

    /// The producers still queued: a draining channel stays open until they are sent.
    fn holds_output(&self) -> bool {
        !self.state.fifo.is_empty()
    }

    fn handle_read(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        // The received bytes are scanned in place in the loop's buffer, while the chat
        // handlers get the rest of the context.
        let limit = self.state.in_buffer_size.min(cx.scratch.len());
        let n = cx.channel.recv(&mut cx.scratch[..limit])?;
        if n > 0 {
            let (token, handler, failed) = (cx.token(), cx.handler(), cx.failed_handler());
            let mut io = ChatIo { channel: &mut *cx.channel, lp: &mut *cx.lp, token, handler, failed };
            self.feed(&cx.scratch[..n], &mut io)?;
        }
        if cx.channel.is_closed() {
            return Ok(());
        }
        self.with_chat(cx, |h, chat| h.after_input(chat))
    }

    fn handle_write(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        self.state.refill(cx.channel)
    }

    fn handle_connect(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        self.with_chat(cx, |h, chat| h.handle_connect(chat))
    }

    fn handle_close(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        self.with_chat(cx, |h, chat| h.handle_close(chat))
    }

    fn handle_error(&mut self, err: io::Error, cx: &mut Context<'_>) {
        self.with_chat(cx, |h, chat| h.handle_error(err, chat))
    }

    fn handle_timeout(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        self.with_chat(cx, |h, chat| h.handle_timeout(chat))
    }

    /// [`ChatHandler::handle_shutdown`]: by default the producers still queued are sent
    /// before the channel closes (a plain channel would close once its own buffer is empty).
    ///
    /// ```
    /// use sockloop::chat::{AsyncChat, ChatContext, ChatHandler, SimpleProducer};
    /// use sockloop::{Channel, Loop};
    /// use std::io::Read;
    ///
    /// struct Quiet;
    /// impl ChatHandler for Quiet {
    ///     fn collect_incoming_data(&mut self, _: &[u8]) {}
    ///     fn found_terminator(&mut self, _: &mut ChatContext<'_>) -> std::io::Result<()> { Ok(()) }
    /// }
    ///
    /// let (mut peer, ours) = std::os::unix::net::UnixStream::pair()?;
    /// let reader = std::thread::spawn(move || {
    ///     let mut got = Vec::new();
    ///     peer.read_to_end(&mut got).map(|_| got.len())
    /// });
    /// let mut lp = Loop::new()?;
    /// lp.add(Channel::from(ours), AsyncChat::new(Quiet))?;
    /// lp.for_each_mut::<AsyncChat<Quiet>>(|_, chat, channel| {
    ///     let data = SimpleProducer::with_buffer_size(vec![7; 4 << 20], 65536);
    ///     chat.push_with_producer(channel, data).unwrap();
    /// });
    /// lp.shutdown(std::time::Duration::from_secs(30));
    /// lp.run()?;
    /// assert_eq!(reader.join().unwrap()?, 4 << 20); // every byte, then the close
    /// # Ok::<(), std::io::Error>(())
    /// ```
    fn handle_shutdown(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        self.with_chat(cx, |h, chat| h.handle_shutdown(chat))
    }
}

#[cfg(test)]
mod tests;
