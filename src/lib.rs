//! # sockloop: Python's asyncore and asynchat, done right in Rust
//!
//! One thread runs a [`Loop`] over a map of channels. Each channel is a non-blocking socket (a
//! [`Channel`]) paired with a [`Dispatcher`]: your state and its `handle_*` methods. The loop
//! waits on the OS (select, poll or epoll: [`Backend`]), turns raw readiness into asyncore's
//! higher-level events and calls the handlers:
//!
//! | raw event | channel state | handler |
//! |---|---|---|
//! | read-ready | listening | `handle_accept` (default: accept, then `handle_accepted(sock, addr)`) |
//! | read- or write-ready | connecting | `handle_connect`, or `handle_error` if the connect failed |
//! | read-ready, recv gives 0 bytes or a disconnect | connected | `handle_close` |
//! | read-ready | connected | `handle_read` |
//! | write-ready | connected | queued output is sent, then `handle_write` if `writable()` |
//! | urgent data | any | `handle_expt` |
//! | hang-up, error, invalid descriptor | any | `handle_close` |
//! | a handler returned `Err` or panicked | any | `handle_error` (default: log a report, close) |
//!
//! ## The seed's echo server
//!
//! ```no_run
//! use sockloop::{Channel, Context, Dispatcher, Loop, WithSend};
//! use std::io;
//!
//! struct EchoHandler;
//! impl Dispatcher for EchoHandler {
//!     fn handle_read(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
//!         let mut buf = [0u8; 8192];
//!         let n = cx.channel.recv(&mut buf)?; // 0: the peer closed; handle_close follows
//!         cx.channel.send_all(&buf[..n])      // buffered, like dispatcher_with_send
//!     }
//! }
//!
//! struct EchoServer;
//! impl Dispatcher for EchoServer {
//!     fn handle_accepted(&mut self, sock: sockloop::Socket, addr: sockloop::SockAddr, cx: &mut Context<'_>) -> io::Result<()> {
//!         println!("Incoming connection from {:?}", addr.as_socket());
//!         cx.lp.add(Channel::from(sock), WithSend::new(EchoHandler))?;
//!         Ok(())
//!     }
//! }
//!
//! fn main() -> io::Result<()> {
//!     let mut lp = Loop::new()?; // epoll on Linux; Loop::with_backend(Backend::Select) ...
//!     lp.add(Channel::tcp_listener("127.0.0.1:8080".parse().unwrap(), 1024)?, EchoServer)?;
//!     lp.run() // until the map is empty
//! }
//! ```
//!
//! ## asyncore names
//!
//! | asyncore | sockloop |
//! |---|---|
//! | `asyncore.loop(timeout, use_poll, map, count)` | [`Loop::run_with`]`(`[`RunOptions`]`)`, backend from [`Loop::with_backend`] |
//! | `asyncore.poll(timeout, map)` | [`Loop::poll`] |
//! | `socket_map`, the global map | [`Loop`] (explicit), [`default_map`] (per thread) |
//! | `close_all(map)` | [`LoopHandle::close_all`], [`default_map::close_all`] |
//! | `dispatcher` | [`Dispatcher`] (handlers) + [`Channel`] (socket) |
//! | `dispatcher.create_socket/bind/listen/connect/accept/send/recv/close` | the [`Channel`] methods of the same names |
//! | `dispatcher.set_reuse_addr()` | [`Channel::set_reuse_addr`] |
//! | `dispatcher.readable()/writable()` | [`Dispatcher::readable`], [`Dispatcher::writable`] |
//! | `dispatcher.handle_*` | the [`Dispatcher`] methods of the same names |
//! | `dispatcher.connected/accepting/connecting/addr` | [`Channel::connected`] ... [`Channel::addr`] |
//! | `dispatcher.log_info(msg, type)` | [`Context::log_info`] |
//! | `dispatcher_with_send` | [`WithSend`] over [`Channel::send_all`] |
//! | `file_wrapper`, `file_dispatcher` | [`FileWrapper`], [`file_dispatcher`] |
//! | `ExitNow` | [`LoopHandle::stop`] (`cx.lp.stop()`, `lp.stop()`) |
//! | `compact_traceback()` | [`compact_report`] (logged by the default `handle_error`) |
//! | `_strerror` | [`strerror`] |
//!
//! Beyond asyncore: timers ([`LoopHandle::call_later`], [`LoopHandle::set_idle_timeout`]), a
//! cross-thread [`Waker`], signals ([`LoopHandle::on_signal`]), graceful shutdown
//! ([`Loop::shutdown`]), backpressure through output limits
//! ([`Channel::set_output_limits`]), and many cores: a loop per thread serving one address
//! ([`group::LoopGroup`], [`group::SharedListener`]), the loops talking through
//! [`group::GroupHandle`].
//!
//! ## Where things are
//!
//! A handler gets a [`Context`]: `cx.channel` (its [`Channel`]), `cx.scratch` (the loop's
//! receive buffer), `cx.lp` (the [`LoopHandle`]: every service of the loop, the same one a
//! [`Loop`] dereferences to) and `cx.token()`. A [`chat::ChatHandler`] gets a
//! [`chat::ChatContext`] with the same `channel` and `lp` fields and the chat's own methods.
//!
//! ## Errors and logging
//!
//! A handler that fails or panics reaches its `handle_error`; the default one reports one line,
//! `uncaptured error in Type::handle_x on <Channel ...>: error` ([`compact_report`]), and closes
//! the channel. The line goes through the [`log`](https://docs.rs/log) facade (target
//! `sockloop`) when a logger is installed and takes error records, and to stderr when none is,
//! so a program that never set up logging still sees what happened. To route reports through
//! `log`, install any logger before running the loop (its max level at `Error` or above).
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod channel;
pub mod chat;
mod context;
mod dispatcher;
mod errors;
pub mod event_loop;
mod file;
pub mod group;
pub mod poller;
mod sys;
mod with_send;

pub use channel::Channel;
pub use context::Context;
pub use dispatcher::{Dispatcher, Handler};
pub use errors::{compact_report, is_disconnect, strerror, HandlerPanic, OutputLimit};
pub use event_loop::{default_map, Loop, LoopHandle, RunOptions, TimerId, Token, Waker};
pub use file::{file_dispatcher, FileWrapper};
pub use poller::Backend;
pub use socket2::{Domain, Protocol, SockAddr, Socket, Type};
pub use with_send::{Ignore, WithSend};
