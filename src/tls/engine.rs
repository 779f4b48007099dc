//! [`Engine`]: one channel's TLS state machine (a rustls connection) and the few facts the loop
//! needs from it. It does no I/O of its own: the channel hands it ciphertext read from the
//! descriptor and takes the records it produces into its own output (or straight to the
//! socket), so queued TLS bytes are the channel's queued output (flushed, limited and watched
//! exactly like plain output).
//!
//! Plaintext the application sends is not sealed at once: it collects in [`Engine::plain`]
//! until the end of the handler (the loop commits it once a handler returns), until a full
//! record's worth is there, or until the handshake is done, so several `send`s in one handler
//! become as few records and one write. It counts as the channel's pending output meanwhile.

use std::io::{self, Read, Write};
use std::time::Duration;

/// The most plaintext one TLS record carries (RFC 8446 5.1): collected plaintext is sealed as
/// soon as it reaches this, so large output streams record by record.
pub(crate) const RECORD_PLAINTEXT: usize = 16 * 1024;

/// rustls refuses to read more ciphertext once this much decrypted plaintext waits for the
/// application (its fixed received-plaintext limit), so one `recv` decrypts up to this much.
const PLAINTEXT_READ_LIMIT: usize = 16 * 1024;

/// A capacity the plaintext queue gives back once it is empty (a burst's buffer is not kept).
const PLAIN_KEEP: usize = 64 * 1024;

/// Reads ciphertext for rustls and says whether the last read filled what rustls offered (so
/// more may be waiting in the socket).
pub(crate) trait Ciphertext: Read {
    fn filled(&self) -> bool;
}

/// One channel's TLS session.
pub(crate) struct Engine {
    conn: rustls::Connection,
    /// Call `handle_connect` once the handshake is done (a client made by `tls_client`; a
    /// client upgraded in place already had its `handle_connect`).
    pub announce_connect: bool,
    /// The handshake timeout, taken by the loop when it arms the timer.
    pub timer: Option<Duration>,
    /// Plaintext (or the peer's `close_notify`) is waiting for the application to read.
    pub buffered: bool,
    /// The peer's `close_notify` was seen.
    peer_closed: bool,
    /// `recv` returned the end of stream for it.
    eof_delivered: bool,
    /// Our `close_notify` is queued.
    pub close_sent: bool,
    /// A TLS error happened: nothing more is sent, not even `close_notify`.
    pub failed: bool,
    /// Ciphertext reached its end of stream.
    tcp_eof: bool,
    /// Plaintext sent by the application and not sealed yet (see the module's comment).
    plain: Vec<u8>,
}

impl Engine {
    pub fn new(mut conn: rustls::Connection, timeout: Duration, announce_connect: bool) -> Engine {
        // Plaintext written before the handshake ends waits in rustls; the channel's own limits
        // bound what is queued after it.
        conn.set_buffer_limit(None);
        Engine {
            conn,
            announce_connect,
            timer: Some(timeout),
            buffered: false,
            peer_closed: false,
            eof_delivered: false,
            close_sent: false,
            failed: false,
            tcp_eof: false,
            plain: Vec::new(),
        }
    }

    pub fn handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    pub fn wants_read(&self) -> bool {
        self.conn.wants_read()
    }

    pub fn is_client(&self) -> bool {
        matches!(self.conn, rustls::Connection::Client(_))
    }

    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    pub fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        self.conn.protocol_version()
    }

    pub fn server_name(&self) -> Option<&str> {
        match &self.conn {
            rustls::Connection::Server(s) => s.server_name(),
            rustls::Connection::Client(_) => None,
        }
    }

    /// Moves every record rustls has ready into `out`.
    pub fn drain(&mut self, out: &mut impl Write) -> io::Result<()> {
        while self.conn.wants_write() {
            if self.conn.write_tls(out)? == 0 {
                break;
            }
        }
        Ok(())
    }

    /// Feeds ciphertext from `src`: `Ok(true)` if some arrived or the stream ended, `Ok(false)`
    /// when none was there (would block). A TLS error leaves its alert queued for `drain`.
    ///
    /// Once the handshake is done it reads on while the socket fills what rustls offers and
    /// less than `want` bytes (at most rustls' received-plaintext limit) are decrypted, so one
    /// call takes several records; a handshake step reads once.
    pub fn feed(&mut self, src: &mut impl Ciphertext, want: usize) -> io::Result<bool> {
        let want = want.clamp(1, PLAINTEXT_READ_LIMIT);
        let mut fed = false;
        loop {
            let n = match self.conn.read_tls(src) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(fed),
                // What was read already is processed; the error comes back on the next read.
                Err(_) if fed => return Ok(true),
                Err(e) => return Err(e),
            };
            fed = true;
            if n == 0 {
                self.tcp_eof = true;
            }
            let plaintext = self.process(n)?;
            if n == 0 || self.peer_closed || self.conn.is_handshaking() || !src.filled() || plaintext >= want
            {
                return Ok(true);
            }
        }
    }

    /// Processes what `read_tls` just took (`n` bytes); returns the plaintext now waiting.
    fn process(&mut self, n: usize) -> io::Result<usize> {
        match self.conn.process_new_packets() {
            Ok(state) => {
                self.peer_closed |= state.peer_has_closed();
                let plaintext = state.plaintext_bytes_to_read();
                self.buffered = plaintext > 0 || (self.peer_closed && !self.eof_delivered);
                if n == 0 && self.conn.is_handshaking() {
                    self.failed = true;
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "TLS handshake failed: the peer closed the connection",
                    ));
                }
                if n == 0 && !self.peer_closed {
                    // Reported by `read_plain` once the plaintext before it is read.
                    self.buffered = true;
                }
                Ok(plaintext)
            }
            Err(e) => {
                self.failed = true;
                let what = if self.conn.is_handshaking() { "TLS handshake failed" } else { "TLS error" };
                Err(io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {e}")))
            }
        }
    }

    /// Reads decrypted plaintext: `Ok(0)` is the peer's `close_notify` (an ordinary end),
    /// `WouldBlock` means more ciphertext is needed, and a TCP end without `close_notify` is a
    /// truncation error.
    pub fn read_plain(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.conn.is_handshaking() || self.failed {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        match self.conn.reader().read(buf) {
            Ok(0) if !buf.is_empty() => {
                self.eof_delivered = true;
                self.buffered = false;
                Ok(0)
            }
            Ok(n) => {
                self.buffered = n == buf.len() || (self.peer_closed && !self.eof_delivered) || self.tcp_eof;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                self.buffered = false;
                self.failed = true;
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "TLS truncation: the peer closed the connection without close_notify",
                ))
            }
            Err(e) => {
                if e.kind() == io::ErrorKind::WouldBlock {
                    self.buffered = self.tcp_eof;
                }
                Err(e)
            }
        }
    }

    /// Queues plaintext to be sealed later ([`seal`](Engine::seal)).
    pub fn queue_plain(&mut self, data: &[u8]) {
        self.plain.extend_from_slice(data);
    }

    /// Plaintext queued and not sealed yet (none once it can never be sent: after a failure
    /// or `close_notify`).
    pub fn pending_plain(&self) -> usize {
        if self.failed || self.close_sent {
            return 0;
        }
        self.plain.len()
    }

    /// Drops the plaintext not sealed yet (none of it is on the wire).
    pub fn discard_plain(&mut self) {
        self.plain = Vec::new();
    }

    /// Seals the queued plaintext into records (as few as fit: one per 16 KiB), for `drain`.
    /// Nothing happens during the handshake (the plaintext waits, still counted as pending);
    /// after a failure or after `close_notify` it is dropped.
    pub fn seal(&mut self) -> io::Result<()> {
        if self.failed || self.close_sent {
            self.plain = Vec::new(); // it can never be sent
            return Ok(());
        }
        if self.plain.is_empty() || self.conn.is_handshaking() {
            return Ok(());
        }
        self.conn.writer().write_all(&self.plain)?;
        self.plain.clear();
        if self.plain.capacity() > PLAIN_KEEP {
            self.plain = Vec::new();
        }
        Ok(())
    }

    /// Queues `close_notify` once; false if it was already queued or cannot be sent.
    pub fn close_notify(&mut self) -> bool {
        if self.close_sent || self.failed || self.conn.is_handshaking() {
            return false;
        }
        // Whatever the application sent goes before the alert.
        if self.seal().is_err() {
            return false;
        }
        self.close_sent = true;
        self.conn.send_close_notify();
        true
    }
}
