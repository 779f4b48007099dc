//! The TLS half of [`Channel`]: attaching a session (server, client, STARTTLS upgrade in place),
//! plaintext `recv`/`send` through it, and the engine facts the loop asks for.
//!
//! Output: `send`/`send_all` queue plaintext in the engine; it is sealed and written when the
//! handler returns (the loop's commit), when a record's worth (16 KiB) is queued, on `flush`
//! or on `close`, so the sends of one handler become as few records as fit and one write.
//! The records go straight to the socket when nothing is queued before them (one `writev`,
//! no copy), and what the socket does not take joins the channel's output queue, so flushing,
//! output limits and write interest treat them like any other queued bytes. Plaintext not
//! sealed yet (during the handshake, or until the commit) counts as pending output too.
//!
//! Input: one `recv` reads ciphertext while the socket fills what rustls offers, decrypting up
//! to the caller's buffer (at most rustls' 16 KiB received-plaintext limit).

use super::output::OutBuf;
use super::{Channel, Io, State};
use crate::errors::is_disconnect;
use crate::tls::{Ciphertext, Engine, TlsAcceptor, TlsConnector, RECORD_PLAINTEXT};
use std::io::{self, IoSlice, Read, Write};
use std::time::Duration;

/// Reads ciphertext from the channel's descriptor for rustls, retrying `EINTR`, and remembers
/// whether the last read filled the buffer it was given.
struct Source<'a> {
    io: &'a mut Io,
    /// Ciphertext the io_uring backend received before the engine was attached (STARTTLS):
    /// read first; while the ring still receives for the channel, the socket is not read.
    carry: Option<&'a mut super::RingIn>,
    /// The ring still receives for the channel: no byte may be read from the socket.
    receiving: bool,
    filled: bool,
}

impl Read for Source<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(res) = self.carry.as_deref_mut().and_then(|r| r.take(buf)) {
            self.filled = matches!(res, Ok(n) if n == buf.len() && n > 0);
            return res;
        }
        if self.receiving {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        loop {
            let r = match self.io {
                Io::Socket(s) => s.read(buf),
                Io::File(f) => f.read(buf),
            };
            match r {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => {
                    self.filled = matches!(other, Ok(n) if n == buf.len() && n > 0);
                    return other;
                }
            }
        }
    }
}

impl Ciphertext for Source<'_> {
    fn filled(&self) -> bool {
        self.filled
    }
}

/// Where rustls writes its records: straight to the socket while nothing is queued before
/// them (`direct`), into the channel's queue otherwise (and for whatever the socket did not
/// take). It always takes everything, so rustls keeps nothing back.
struct Sink<'a> {
    io: &'a mut Io,
    out: &'a mut OutBuf,
    direct: bool,
    /// The peer is gone (a disconnect on a write): nothing more is kept.
    gone: bool,
    /// A write failed otherwise: reported once the records are taken.
    error: Option<io::Error>,
}

impl Sink<'_> {
    fn try_direct(&mut self, bufs: &[IoSlice<'_>]) -> usize {
        if !self.direct || self.out.len() > 0 {
            return 0;
        }
        loop {
            let r = match self.io {
                Io::Socket(s) => s.send_vectored_with_flags(bufs, libc::MSG_NOSIGNAL),
                Io::File(f) => f.write_vectored(bufs),
            };
            match r {
                Ok(n) => return n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.direct = false;
                    if e.kind() == io::ErrorKind::WouldBlock {
                    } else if is_disconnect(&e) {
                        self.gone = true;
                    } else {
                        self.error = Some(e);
                    }
                    return 0;
                }
            }
        }
    }
}

impl Write for Sink<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(data)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let total = bufs.iter().map(|b| b.len()).sum();
        let mut skip = self.try_direct(bufs);
        if !self.gone {
            for b in bufs {
                let part = &b[skip.min(b.len())..];
                skip = skip.saturating_sub(b.len());
                if !part.is_empty() {
                    self.out.push(part);
                }
            }
        }
        Ok(total)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Channel {
    /// Makes this accepted (or connected) socket the server side of a TLS session: the loop
    /// runs the handshake, then calls the dispatcher's first `handle_read` with plaintext.
    /// Its `recv`/`send`/`send_all` carry plaintext from then on, so an existing dispatcher
    /// (echo, an `AsyncChat` protocol, `WithSend`) runs over TLS unchanged. A handshake that
    /// fails reaches `handle_error` with the TLS alert or certificate error; one not done
    /// within the acceptor's timeout is closed without a byte written.
    ///
    /// ```no_run
    /// # use sockloop::{Channel, Context, Dispatcher, SockAddr, Socket, WithSend, Ignore};
    /// struct Server(sockloop::tls::TlsAcceptor);
    /// impl Dispatcher for Server {
    ///     fn handle_accepted(&mut self, sock: Socket, _addr: SockAddr, cx: &mut Context<'_>) -> std::io::Result<()> {
    ///         cx.lp.add(Channel::from(sock).tls_server(&self.0)?, WithSend::new(Ignore))?;
    ///         Ok(())
    ///     }
    /// }
    /// ```
    pub fn tls_server(mut self, tls: &TlsAcceptor) -> io::Result<Channel> {
        self.start_tls_server(tls)?;
        Ok(self)
    }

    /// Makes this connecting (or connected) socket the client side of a TLS session with
    /// `server_name` (a DNS name, sent as SNI, or an IP literal; either is checked against the
    /// certificate). For a channel still connecting, `handle_connect` comes once the handshake
    /// is done.
    ///
    /// ```
    /// let server = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let tls = sockloop::tls::TlsConnector::new();
    /// let ch = sockloop::Channel::tcp_connect(server.local_addr()?)?.tls_client(&tls, "localhost")?;
    /// assert!(ch.is_tls() && ch.tls_handshaking());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn tls_client(mut self, tls: &TlsConnector, server_name: &str) -> io::Result<Channel> {
        let announce = matches!(self.state, State::Connecting | State::Fresh);
        self.attach(Engine::new(tls.connection(server_name)?, tls.handshake_timeout, announce))?;
        Ok(self)
    }

    /// STARTTLS, server side: upgrades this connected plain channel in place. Output already
    /// queued (the `220 Ready to start TLS` reply) is sent in plain text first; everything
    /// after is TLS. Call it from a handler; the loop then runs the handshake.
    ///
    /// ```no_run
    /// # use sockloop::{Context, Dispatcher};
    /// struct Smtp(sockloop::tls::TlsAcceptor);
    /// impl Dispatcher for Smtp {
    ///     fn handle_read(&mut self, cx: &mut Context<'_>) -> std::io::Result<()> {
    ///         let n = cx.channel.recv(cx.scratch)?;
    ///         if &cx.scratch[..n] == b"STARTTLS\r\n" {
    ///             cx.channel.send_all(b"220 go ahead\r\n")?;
    ///             cx.channel.start_tls_server(&self.0)?;
    ///         }
    ///         Ok(())
    ///     }
    /// }
    /// ```
    pub fn start_tls_server(&mut self, tls: &TlsAcceptor) -> io::Result<()> {
        self.attach(Engine::new(tls.connection()?, tls.handshake_timeout, false))
    }

    /// STARTTLS, client side: upgrades this connected plain channel in place (its
    /// `handle_connect` already ran, so none comes after the handshake).
    ///
    /// ```
    /// let (a, _b) = std::os::unix::net::UnixStream::pair()?;
    /// let mut ch = sockloop::Channel::from(a);
    /// ch.start_tls_client(&sockloop::tls::TlsConnector::new(), "mail.example.com")?;
    /// assert!(ch.tls_handshaking() && ch.pending_output() > 0); // the ClientHello is queued
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn start_tls_client(&mut self, tls: &TlsConnector, server_name: &str) -> io::Result<()> {
        self.attach(Engine::new(tls.connection(server_name)?, tls.handshake_timeout, false))
    }

    fn attach(&mut self, engine: Engine) -> io::Result<()> {
        if self.tls.is_some() {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, "this channel already runs TLS"));
        }
        let mut engine = Box::new(engine);
        engine.drain(&mut self.out)?;
        self.tls = Some(engine);
        Ok(())
    }

    /// Whether a TLS session is attached.
    ///
    /// ```
    /// let (a, _b) = std::os::unix::net::UnixStream::pair()?;
    /// assert!(!sockloop::Channel::from(a).is_tls());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether a TLS handshake is still running (false without TLS).
    ///
    /// ```
    /// let (a, _b) = std::os::unix::net::UnixStream::pair()?;
    /// assert!(!sockloop::Channel::from(a).tls_handshaking());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn tls_handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(|e| e.handshaking())
    }

    /// The ALPN protocol agreed in the handshake.
    ///
    /// ```
    /// let (a, _b) = std::os::unix::net::UnixStream::pair()?;
    /// assert_eq!(sockloop::Channel::from(a).alpn_protocol(), None);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.tls.as_ref()?.alpn_protocol()
    }

    /// The TLS version agreed (`TLSv1_2`, `TLSv1_3`), once the handshake is done.
    ///
    /// ```
    /// let (a, _b) = std::os::unix::net::UnixStream::pair()?;
    /// assert!(sockloop::Channel::from(a).tls_version().is_none());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn tls_version(&self) -> Option<rustls::ProtocolVersion> {
        self.tls.as_ref()?.protocol_version()
    }

    /// The name the client asked for with SNI (server side).
    ///
    /// ```
    /// let (a, _b) = std::os::unix::net::UnixStream::pair()?;
    /// assert!(sockloop::Channel::from(a).tls_server_name().is_none());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn tls_server_name(&self) -> Option<&str> {
        self.tls.as_ref()?.server_name()
    }

    pub(super) fn tls_recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        for fed in [false, true] {
            let engine = self.tls.as_mut().expect("a TLS channel");
            match engine.read_plain(buf) {
                Ok(0) if !buf.is_empty() => {
                    self.state = self.state.peer_ended();
                    return Ok(0);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => return other,
            }
            if fed || engine.handshaking() || engine.failed {
                break;
            }
            match self.tls_feed(buf.len()) {
                Ok(true) => {}
                Ok(false) if self.peer_closed() => return Ok(0),
                Ok(false) => break,
                Err(e) => return Err(e),
            }
            if self.peer_closed() {
                return Ok(0);
            }
        }
        Err(io::ErrorKind::WouldBlock.into())
    }

    /// Reads ciphertext (several records, up to `want` bytes of plaintext, once established),
    /// processes it, queues and flushes what rustls answers (handshake messages, alerts). A
    /// disconnect marks the peer gone.
    fn tls_feed(&mut self, want: usize) -> io::Result<bool> {
        let receiving = self.ring_sends();
        let Channel { io, tls, out, ring_in, .. } = self;
        let engine = tls.as_mut().expect("a TLS channel");
        let fed =
            engine.feed(&mut Source { io, carry: ring_in.as_deref_mut(), receiving, filled: false }, want);
        // Whatever the outcome, send what rustls has to say (an alert on failure).
        let drained = engine.drain(out);
        self.ring_tidy();
        match fed {
            Err(e) if is_disconnect(&e) => {
                self.mark_broken();
                Ok(false)
            }
            Err(e) => {
                let _ = self.tls_flush();
                Err(e)
            }
            Ok(fed) => {
                drained?;
                self.tls_flush()?;
                Ok(fed)
            }
        }
    }

    /// Flushes unless the TCP connect is still pending.
    fn tls_flush(&mut self) -> io::Result<()> {
        if self.state == State::Connecting {
            return Ok(());
        }
        self.flush()
    }

    pub(super) fn tls_send(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() || !self.can_send() || self.over_soft_limit() {
            return Ok(0);
        }
        self.tls_queue(data)?;
        Ok(data.len())
    }

    pub(super) fn tls_send_all(&mut self, data: &[u8]) -> io::Result<()> {
        let queued = self.pending_output() + data.len();
        if queued > self.hard_limit {
            return Err(crate::errors::OutputLimit::error(queued, self.hard_limit));
        }
        self.tls_queue(data)
    }

    /// Queues plaintext; a record's worth is sealed and written at once.
    fn tls_queue(&mut self, data: &[u8]) -> io::Result<()> {
        let engine = self.tls.as_mut().expect("a TLS channel");
        engine.queue_plain(data);
        if engine.pending_plain() >= RECORD_PLAINTEXT && !engine.handshaking() {
            self.tls_flush()?;
        }
        Ok(())
    }

    /// Plaintext queued and not sealed yet (0 without TLS).
    pub(super) fn tls_pending_plain(&self) -> usize {
        self.tls.as_ref().map_or(0, |e| e.pending_plain())
    }

    /// Drops plaintext not sealed yet (`discard_output`): none of it is on the wire.
    pub(super) fn tls_discard_plain(&mut self) {
        if let Some(e) = self.tls.as_mut() {
            e.discard_plain();
        }
    }

    /// Seals the queued plaintext and writes the records: straight to the socket when nothing
    /// is queued before them and the connect is done, into the output queue otherwise. Called
    /// by `flush` before it sends the queue.
    pub(super) fn tls_seal(&mut self) -> io::Result<()> {
        // Output the ring still owes goes first: the records queue behind it then.
        let direct = self.state != State::Connecting && self.can_send() && self.ring_pending() == 0;
        let Channel { io, tls, out, .. } = self;
        let Some(engine) = tls.as_mut() else { return Ok(()) };
        if engine.pending_plain() == 0 {
            return Ok(());
        }
        engine.seal()?;
        let mut sink = Sink { io, out, direct, gone: false, error: None };
        engine.drain(&mut sink)?;
        let (gone, error) = (sink.gone, sink.error);
        if gone {
            self.mark_broken();
        }
        error.map_or(Ok(()), Err)
    }

    /// The loop's commit after a handler: seal and write what it sent (nothing to do when it
    /// sent nothing). Errors are the handler's write errors.
    pub(crate) fn tls_commit(&mut self) -> io::Result<()> {
        if self.tls_pending_plain() == 0 {
            return Ok(());
        }
        self.tls_flush()
    }

    /// `close()`: queue `close_notify` and try to send it now (without blocking).
    pub(super) fn tls_close(&mut self) {
        if self.state == State::Closed || !self.can_send() {
            return;
        }
        if self.tls_close_notify() {
            let _ = self.tls_flush();
        }
    }

    /// Queues `close_notify` (once); true if it was queued now. The loop calls this when a
    /// draining channel is done, and keeps it open until the alert is flushed.
    pub(crate) fn tls_close_notify(&mut self) -> bool {
        let Some(engine) = self.tls.as_mut() else { return false };
        // The plaintext still queued is sealed first (before the alert).
        if !engine.close_notify() {
            return false;
        }
        engine.drain(&mut self.out).is_ok()
    }

    /// During the handshake: read what the peer sent and answer it.
    pub(crate) fn tls_advance(&mut self) -> io::Result<()> {
        self.tls_feed(crate::tls::RECORD_PLAINTEXT).map(|_| ())
    }

    /// The engine's inputs to the interest rule (`None` without TLS).
    pub(crate) fn tls_inputs(&self) -> Option<crate::tls::interest::Engine> {
        let e = self.tls.as_ref()?;
        Some(crate::tls::interest::Engine {
            handshaking: e.handshaking() && !e.failed,
            wants_read: e.wants_read(),
            buffered: e.buffered && !e.failed,
        })
    }

    /// The handshake timeout, once, for the loop to arm its timer.
    pub(crate) fn tls_take_timer(&mut self) -> Option<Duration> {
        self.tls.as_mut()?.timer.take()
    }

    /// Whether the handshake just finished on a client that still owes `handle_connect`.
    pub(crate) fn tls_take_announce(&mut self) -> bool {
        match self.tls.as_mut() {
            Some(e) if !e.handshaking() && e.announce_connect => {
                e.announce_connect = false;
                true
            }
            _ => false,
        }
    }

    /// Whether this is the client side (a failed handshake is then a failed connect).
    pub(crate) fn tls_is_client(&self) -> bool {
        self.tls.as_ref().is_some_and(|e| e.is_client())
    }

    /// The handshake timed out: nothing more is written, not even an alert.
    pub(crate) fn tls_abandon(&mut self) {
        if let Some(e) = self.tls.as_mut() {
            e.failed = true;
        }
        self.drop_output();
    }
}
