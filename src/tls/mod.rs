//! TLS channels over rustls (the `tls` feature, on by default): asyncore never had them.
//!
//! A [`TlsAcceptor`] (server: certificate chain and key) or [`TlsConnector`] (client: trusted
//! roots) holds the shared settings; [`Channel::tls_server`](crate::Channel::tls_server),
//! [`Channel::tls_client`](crate::Channel::tls_client) and, for STARTTLS, the in-place
//! [`Channel::start_tls_server`](crate::Channel::start_tls_server) /
//! [`start_tls_client`](crate::Channel::start_tls_client) attach a session to one channel.
//! From then on the channel's `recv`, `send` and `send_all` carry plaintext, so a dispatcher
//! written for plain sockets (echo, an `AsyncChat` protocol, [`WithSend`](crate::WithSend))
//! runs over TLS unchanged.
//!
//! What the loop does for a TLS channel:
//! - during the handshake it watches what the engine needs (writable exactly while handshake
//!   bytes are queued, readable while it waits for the peer), not what the dispatcher answers;
//!   the rule is `tls/interest.rs`, documented in `docs/architecture.md`;
//! - `handle_connect` (a client) and the first `handle_read` (a server) come after the
//!   handshake; a failed handshake reaches `handle_error` with the alert or certificate error;
//! - plaintext already decrypted is delivered at once, without waiting for the descriptor;
//! - a handshake not done within the timeout (default [`DEFAULT_HANDSHAKE_TIMEOUT`]) is
//!   closed without writing; a stalled handshake costs nothing between its events;
//! - `close()` sends `close_notify`; `close_when_done()` flushes it with the rest (within the
//!   shutdown grace on [`Loop::shutdown`](crate::Loop::shutdown)); the peer's `close_notify`
//!   is an ordinary end (`handle_close`); a TCP end without it is a truncation error.
//!
//! ```no_run
//! use sockloop::{Channel, Context, Dispatcher, Loop, SockAddr, Socket, WithSend};
//! use sockloop::tls::TlsAcceptor;
//! struct Echo;
//! impl Dispatcher for Echo {
//!     fn handle_read(&mut self, cx: &mut Context<'_>) -> std::io::Result<()> {
//!         let n = cx.channel.recv(cx.scratch)?; // plaintext
//!         cx.channel.send_all(&cx.scratch[..n])
//!     }
//! }
//! struct Server(TlsAcceptor);
//! impl Dispatcher for Server {
//!     fn handle_accepted(&mut self, sock: Socket, _: SockAddr, cx: &mut Context<'_>) -> std::io::Result<()> {
//!         cx.lp.add(Channel::from(sock).tls_server(&self.0)?, Echo)?;
//!         Ok(())
//!     }
//! }
//! fn main() -> std::io::Result<()> {
//!     let tls = TlsAcceptor::from_pem_files("cert.pem", "key.pem")?;
//!     let mut lp = Loop::new()?;
//!     lp.add(Channel::tcp_listener("127.0.0.1:8443".parse().unwrap(), 1024)?, Server(tls))?;
//!     lp.run()
//! }
//! ```

mod config;
mod engine;
pub(crate) mod interest;

pub use config::{load_certs, load_key, TlsAcceptor, TlsConnector, DEFAULT_HANDSHAKE_TIMEOUT};
pub(crate) use engine::{Ciphertext, Engine, RECORD_PLAINTEXT};
/// The rustls crate sockloop's TLS is built on, for configurations built by hand.
pub use rustls;
