//! [`Channel`]: the socket half of an asyncore `dispatcher`.
//!
//! A channel owns a non-blocking descriptor (a socket, or a pipe or file for
//! [`file_dispatcher`](crate::file_dispatcher)), its [`State`] (what asyncore kept as the
//! dispatcher's `accepting`, `connected` and `connecting` flags), and the output that could not
//! be sent yet. Its `send`/`recv`/`accept`/`connect` follow asyncore's rules: a call that would
//! block is not an error, and a disconnect schedules `handle_close` instead of failing.
//!
//! A channel knows nothing of the loop: what the loop watches it for is decided from its state
//! in `event_loop/interest.rs`.

mod output;
mod ring;
mod state;
#[cfg(feature = "tls")]
mod tls;

pub use state::{Peer, State};

use crate::errors::{is_disconnect, OutputLimit};
use crate::poller::STREAM_SEND_CAP;
use crate::sys::as_uninit;
use output::OutBuf;
use ring::{RingIn, RingOut};
use socket2::{Domain, SockAddr, Socket, Type};
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;

/// Default soft limit on unsent output: past it the loop stops reading from the channel.
///
/// ```
/// assert_eq!(sockloop::channel::DEFAULT_SOFT_LIMIT, 1 << 20);
/// ```
pub const DEFAULT_SOFT_LIMIT: usize = 1 << 20;
/// Default hard limit on unsent output: past it `send_all` fails and the channel is closed.
///
/// ```
/// assert_eq!(sockloop::channel::DEFAULT_HARD_LIMIT, 64 << 20);
/// ```
pub const DEFAULT_HARD_LIMIT: usize = 64 << 20;

/// asyncore's `addr`, stored compactly: an IP address in 32 bytes instead of a 136-byte
/// `sockaddr_storage` (most channels are TCP), anything else (Unix paths) boxed. It is
/// captured exactly when asyncore captures it; [`Channel::addr`] builds the `SockAddr` view
/// from it on first use and keeps it.
#[derive(Clone, Debug, Default)]
enum Addr {
    #[default]
    None,
    Ip(std::net::SocketAddr),
    Other(Box<SockAddr>),
}

impl Addr {
    fn of(addr: &SockAddr) -> Addr {
        match addr.as_socket() {
            // A round trip through SocketAddr keeps family, address, port, flow info and scope.
            Some(a) if SockAddr::from(a) == *addr => Addr::Ip(a),
            _ => Addr::Other(Box::new(addr.clone())),
        }
    }
}

/// What the channel reads and writes through.
enum Io {
    Socket(Socket),
    File(File),
}

impl Io {
    /// One write of `data`, retried on EINTR; sockets never raise SIGPIPE (`MSG_NOSIGNAL`).
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        loop {
            let r = match self {
                Io::Socket(s) => s.send_with_flags(data, libc::MSG_NOSIGNAL),
                Io::File(f) => f.write(data),
            };
            match r {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }
}

/// The socket half of an asyncore `dispatcher`: a non-blocking descriptor, its state flags and
/// its unsent output.
///
/// Build one with a constructor ([`Channel::tcp_listener`], [`Channel::tcp_connect`],
/// [`Channel::create_socket`] then [`bind`](Channel::bind)/[`listen`](Channel::listen)/
/// [`connect`](Channel::connect)), or from an existing std or socket2 socket with `From`, then hand
/// it to [`Loop::add`](crate::LoopHandle::add) with the [`Dispatcher`](crate::Dispatcher) that handles
/// its events.
///
/// ```
/// use sockloop::Channel;
/// let ch = Channel::tcp_listener("127.0.0.1:0".parse().unwrap(), 1024)?;
/// assert!(ch.accepting() && !ch.connected());
/// assert!(ch.local_addr()?.as_socket().unwrap().port() != 0);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Channel {
    io: Io,
    state: State,
    /// asyncore's `addr`: the address connected or bound to.
    addr: Addr,
    /// `addr` as a `SockAddr`, built by [`Channel::addr`] when first asked for.
    addr_view: std::cell::OnceCell<Box<SockAddr>>,
    out: OutBuf,
    soft_limit: usize,
    hard_limit: usize,
    /// The TLS session, once [`tls_server`](Channel::tls_server), [`tls_client`](Channel::tls_client)
    /// or a STARTTLS upgrade attached one: `recv`/`send` then carry plaintext, `out` TLS records.
    #[cfg(feature = "tls")]
    tls: Option<Box<crate::tls::Engine>>,
    /// io_uring stream mode (issue 15, see `ring.rs`): input the ring received and `recv`
    /// has not handed out (only while there is some) ...
    ring_in: Option<Box<RingIn>>,
    /// ... output `send` accepted and not yet handed to the ring, or a send's error (only
    /// while there is either) ...
    ring_out: Option<Box<RingOut>>,
    /// ... what the ring owed at the last hand-over (an upper bound: completions only lower
    /// it) ...
    ring_owed: u32,
    /// ... and the mode's bits (`ring::STREAM`, ...; a `Cell`, since `shutdown` takes `&self`).
    ring_bits: std::cell::Cell<u8>,
}

impl Channel {
    fn with_io(io: Io) -> Channel {
        Channel {
            io,
            state: State::Fresh,
            addr: Addr::None,
            addr_view: std::cell::OnceCell::new(),
            out: OutBuf::default(),
            soft_limit: DEFAULT_SOFT_LIMIT,
            hard_limit: DEFAULT_HARD_LIMIT,
            #[cfg(feature = "tls")]
            tls: None,
            ring_in: None,
            ring_out: None,
            ring_owed: 0,
            ring_bits: std::cell::Cell::new(0),
        }
    }

    /// asyncore `create_socket(family, type)`: a new non-blocking, close-on-exec socket.
    ///
    /// ```
    /// use sockloop::{Channel, Domain, Type};
    /// let ch = Channel::create_socket(Domain::IPV6, Type::STREAM)?;
    /// assert!(!ch.connected() && !ch.accepting());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn create_socket(domain: Domain, ty: Type) -> io::Result<Channel> {
        let sock = Socket::new(domain, ty, None)?;
        sock.set_nonblocking(true)?;
        Ok(Channel::with_io(Io::Socket(sock)))
    }

    /// A TCP listener: `create_socket`, `set_reuse_addr`, `bind` and `listen(backlog)` in one
    /// call, the usual opening of an asyncore server.
    ///
    /// ```
    /// let ch = sockloop::Channel::tcp_listener("[::1]:0".parse().unwrap(), 128)?;
    /// assert!(ch.accepting());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn tcp_listener(addr: SocketAddr, backlog: i32) -> io::Result<Channel> {
        let mut ch = Channel::create_socket(Domain::for_address(addr), Type::STREAM)?;
        ch.set_reuse_addr()?;
        ch.bind(&addr.into())?;
        ch.listen(backlog)?;
        Ok(ch)
    }

    /// A TCP client whose non-blocking connect has started; `handle_connect` (or `handle_error`
    /// with the OS error) reports how it ended.
    ///
    /// ```
    /// let server = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let ch = sockloop::Channel::tcp_connect(server.local_addr()?)?;
    /// assert!(ch.connecting());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn tcp_connect(addr: SocketAddr) -> io::Result<Channel> {
        let mut ch = Channel::create_socket(Domain::for_address(addr), Type::STREAM)?;
        ch.connect(&addr.into())?;
        Ok(ch)
    }

    /// A Unix stream listener on `path` (which must not exist yet).
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("sockloop-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("listener.sock");
    /// let _ = std::fs::remove_file(&path);
    /// let ch = sockloop::Channel::unix_listener(&path, 16)?;
    /// assert!(ch.accepting());
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn unix_listener(path: impl AsRef<Path>, backlog: i32) -> io::Result<Channel> {
        let mut ch = Channel::create_socket(Domain::UNIX, Type::STREAM)?;
        ch.bind(&SockAddr::unix(path)?)?;
        ch.listen(backlog)?;
        Ok(ch)
    }

    /// A Unix stream client connecting to `path`.
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("sockloop-doc2-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("s.sock");
    /// let _ = std::fs::remove_file(&path);
    /// let _server = std::os::unix::net::UnixListener::bind(&path)?;
    /// let ch = sockloop::Channel::unix_connect(&path)?;
    /// assert!(ch.connecting());
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn unix_connect(path: impl AsRef<Path>) -> io::Result<Channel> {
        let mut ch = Channel::create_socket(Domain::UNIX, Type::STREAM)?;
        ch.connect(&SockAddr::unix(path)?)?;
        Ok(ch)
    }

    /// A channel over any descriptor (a pipe, a tty, a file): asyncore's `file_dispatcher`
    /// socket half. The descriptor is made non-blocking; reads and writes use `read`/`write`.
    /// Since `write` to a pipe whose reader left raises SIGPIPE, the first such channel makes
    /// SIGPIPE ignored if it is still at its default action (which kills the process).
    ///
    /// ```
    /// use std::os::fd::OwnedFd;
    /// let (reader, _writer) = std::io::pipe()?;
    /// let ch = sockloop::Channel::from_fd(OwnedFd::from(reader))?;
    /// assert!(ch.connected());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn from_fd(fd: OwnedFd) -> io::Result<Channel> {
        crate::sys::set_nonblocking(fd.as_fd(), true)?;
        crate::sys::ignore_default_sigpipe();
        let mut ch = Channel::with_io(Io::File(File::from(fd)));
        ch.state = State::Connected(Peer::Open);
        Ok(ch)
    }

    /// asyncore `set_reuse_addr()`: sets `SO_REUSEADDR`.
    ///
    /// ```
    /// let mut ch = sockloop::Channel::create_socket(sockloop::Domain::IPV4, sockloop::Type::STREAM)?;
    /// ch.set_reuse_addr()?;
    /// assert!(ch.socket().unwrap().reuse_address()?);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn set_reuse_addr(&mut self) -> io::Result<()> {
        self.sock()?.set_reuse_address(true)
    }

    /// asyncore `bind(address)`. An address in use fails with the OS error (`AddrInUse`).
    ///
    /// ```
    /// let mut ch = sockloop::Channel::create_socket(sockloop::Domain::IPV4, sockloop::Type::STREAM)?;
    /// ch.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into())?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn bind(&mut self, addr: &SockAddr) -> io::Result<()> {
        self.sock()?.bind(addr)?;
        self.set_addr(Some(addr));
        Ok(())
    }

    /// asyncore `listen(backlog)`: the channel becomes `accepting`.
    ///
    /// ```
    /// let mut ch = sockloop::Channel::create_socket(sockloop::Domain::IPV4, sockloop::Type::STREAM)?;
    /// ch.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into())?;
    /// ch.listen(5)?;
    /// assert!(ch.accepting());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn listen(&mut self, backlog: i32) -> io::Result<()> {
        self.sock()?.listen(backlog)?;
        self.state = State::Listening;
        Ok(())
    }

    /// asyncore `connect(address)`: starts a non-blocking connect. The channel is `connecting`
    /// until the loop sees it complete and calls `handle_connect`, or `handle_error` with the
    /// OS error (connection refused, unreachable, ...). A connect that fails at once (a Unix
    /// socket path with no listener) returns that error here.
    ///
    /// ```
    /// let server = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let mut ch = sockloop::Channel::create_socket(sockloop::Domain::IPV4, sockloop::Type::STREAM)?;
    /// ch.connect(&server.local_addr()?.into())?;
    /// assert!(ch.connecting() && !ch.connected());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn connect(&mut self, addr: &SockAddr) -> io::Result<()> {
        match self.sock()?.connect(addr) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        // Even an immediate success is reported through handle_connect on the first event.
        self.state = State::Connecting;
        self.set_addr(Some(addr));
        Ok(())
    }

    /// asyncore `accept()`: the next pending connection as a non-blocking socket and its
    /// address, or `None` when there was none after all (EWOULDBLOCK, ECONNABORTED). Other
    /// errors (such as EMFILE when out of descriptors) are returned.
    ///
    /// ```
    /// let mut ch = sockloop::Channel::tcp_listener("127.0.0.1:0".parse().unwrap(), 8)?;
    /// assert!(ch.accept()?.is_none());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn accept(&mut self) -> io::Result<Option<(Socket, SockAddr)>> {
        loop {
            match self.sock()?.accept() {
                Ok((sock, addr)) => {
                    sock.set_nonblocking(true)?;
                    return Ok(Some((sock, addr)));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::ConnectionAborted =>
                {
                    return Ok(None)
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// asyncore `send(data)`: sends what the kernel takes now and returns how much.
    /// `Ok(0)` when it would block; a disconnect (reset, broken pipe) returns `Ok(0)` and
    /// schedules `handle_close`. Never raises SIGPIPE. On the io_uring backend a connected
    /// stream channel's bytes are copied for the ring to send at the end of the pass (up to
    /// 64 KiB owed); a send on the ring that fails is this call's error the next time.
    ///
    /// ```
    /// let (a, mut b) = std::os::unix::net::UnixStream::pair()?;
    /// let mut ch = sockloop::Channel::from(a);
    /// assert_eq!(ch.send(b"hi")?, 2);
    /// let mut got = [0u8; 2];
    /// std::io::Read::read_exact(&mut b, &mut got)?;
    /// assert_eq!(&got, b"hi");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn send(&mut self, data: &[u8]) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            return self.tls_send(data);
        }
        self.send_raw(data)
    }

    /// `send` on the descriptor itself.
    fn send_raw(&mut self, data: &[u8]) -> io::Result<usize> {
        let res = self.write_out(data);
        self.sent(res)
    }

    /// asyncore's rules for the result of a send: would-block is 0 bytes, a disconnect is 0
    /// bytes and marks the peer gone (so `handle_close` follows), anything else is returned.
    fn sent(&mut self, res: io::Result<usize>) -> io::Result<usize> {
        match res {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) if is_disconnect(&e) => {
                self.mark_broken();
                Ok(0)
            }
            Err(e) => Err(e),
        }
    }

    /// Sends up to `count` bytes of `file` from `*offset` straight from the page cache
    /// (`sendfile(2)`, no copy through user space) and advances `*offset`; returns how many
    /// went. Like [`send`](Channel::send): `Ok(0)` when it would block or the peer is gone (a
    /// disconnect schedules `handle_close`). `Ok(0)` is also what the end of the file gives, so
    /// a caller that knows the length tells a shrunken file by `file`'s size. Output queued by
    /// [`send_all`](Channel::send_all) goes first: call this only when
    /// [`pending_output`](Channel::pending_output) is 0. Not in asyncore (medusa read files
    /// into producers); no SIGPIPE is raised (it is ignored the first time, as for pipes). On a
    /// TLS channel it fails with `EOPNOTSUPP` (the bytes must be encrypted), which
    /// [`FileProducer`](crate::chat::FileProducer) takes as "read and send instead".
    ///
    /// ```
    /// use std::io::Read;
    /// let dir = std::env::temp_dir().join(format!("sockloop-sendfile-doc-{}", std::process::id()));
    /// std::fs::write(&dir, b"hello, page cache")?;
    /// let file = std::fs::File::open(&dir)?;
    /// let (a, mut b) = std::os::unix::net::UnixStream::pair()?;
    /// let mut ch = sockloop::Channel::from(a);
    /// let mut offset = 7;
    /// assert_eq!(ch.send_file(&file, &mut offset, 100)?, 10);
    /// assert_eq!(offset, 17);
    /// let mut got = [0u8; 10];
    /// b.read_exact(&mut got)?;
    /// assert_eq!(&got, b"page cache");
    /// std::fs::remove_file(&dir)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn send_file(&mut self, file: &File, offset: &mut u64, count: usize) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            // The file's bytes would bypass the encryption: refuse as sendfile refuses a pair
            // it cannot serve, so a FileProducer reads and sends (through TLS) instead.
            return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
        }
        if !self.can_send() || count == 0 {
            return Ok(0);
        }
        if let Some(errno) = self.ring_error() {
            return self.sent(Err(io::Error::from_raw_os_error(errno)));
        }
        if self.ring_pending() > 0 {
            // The ring still owes output that goes first: as a full socket, until it is sent
            // (the write event that follows its completion resumes the caller).
            return Ok(0);
        }
        crate::sys::ignore_default_sigpipe();
        let res = loop {
            match rustix::fs::sendfile(self.as_fd(), file, Some(&mut *offset), count) {
                Err(rustix::io::Errno::INTR) => continue,
                other => break other.map_err(io::Error::from),
            }
        };
        self.sent(res)
    }

    /// asyncore `recv(buffer_size)`: reads into `buf`. `Ok(0)` means the peer closed (or
    /// disconnected) and `handle_close` is scheduled; `Err(WouldBlock)` after a spurious
    /// readiness is not an error: returned from a handler with `?`, the loop ignores it.
    ///
    /// ```
    /// let (a, mut b) = std::os::unix::net::UnixStream::pair()?;
    /// let mut ch = sockloop::Channel::from(a);
    /// std::io::Write::write_all(&mut b, b"ping")?;
    /// let mut buf = [0u8; 16];
    /// assert_eq!(ch.recv(&mut buf)?, 4);
    /// drop(b);
    /// assert_eq!(ch.recv(&mut buf)?, 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            return self.tls_recv(buf);
        }
        let res = match self.ring_take(buf) {
            Some(res) => res,
            None => self.read_io(buf),
        };
        match res {
            Ok(0) if !buf.is_empty() => {
                self.state = self.state.peer_ended();
                Ok(0)
            }
            Ok(n) => Ok(n),
            Err(e) if is_disconnect(&e) => {
                self.mark_broken();
                Ok(0)
            }
            Err(e) => Err(e),
        }
    }

    /// One read from the descriptor, retried on EINTR.
    fn read_io(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let r = match &mut self.io {
                Io::Socket(s) => s.read(buf),
                Io::File(f) => f.read(buf),
            };
            match r {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    /// asyncore's datagram `sendto`: `Ok(0)` when it would block.
    ///
    /// ```
    /// use sockloop::{Channel, Domain, Type};
    /// let peer = std::net::UdpSocket::bind("127.0.0.1:0")?;
    /// let mut ch = Channel::create_socket(Domain::IPV4, Type::DGRAM)?;
    /// assert_eq!(ch.send_to(b"x", &peer.local_addr()?.into())?, 1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn send_to(&mut self, data: &[u8], addr: &SockAddr) -> io::Result<usize> {
        match self.sock()?.send_to_with_flags(data, addr, libc::MSG_NOSIGNAL) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            other => other,
        }
    }

    /// asyncore's datagram `recvfrom`: one datagram and its sender.
    ///
    /// ```
    /// use sockloop::{Channel, Domain, Type};
    /// let mut ch = Channel::create_socket(Domain::IPV4, Type::DGRAM)?;
    /// ch.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into())?;
    /// let me = ch.local_addr()?.as_socket().unwrap();
    /// std::net::UdpSocket::bind("127.0.0.1:0")?.send_to(b"dgram", me)?;
    /// let mut buf = [0u8; 64];
    /// let (n, _from) = loop {
    ///     match ch.recv_from(&mut buf) {
    ///         Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
    ///         other => break other?,
    ///     }
    /// };
    /// assert_eq!(&buf[..n], b"dgram");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn recv_from(&mut self, buf: &mut [u8]) -> io::Result<(usize, SockAddr)> {
        self.sock()?.recv_from(as_uninit(buf))
    }

    /// Sends one byte of urgent (out-of-band) data, which the peer's loop reports to
    /// `handle_expt`.
    ///
    /// ```
    /// let (a, b) = std::net::TcpListener::bind("127.0.0.1:0").map(|l| {
    ///     let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    ///     (c, l.accept().unwrap().0)
    /// })?;
    /// let mut ch = sockloop::Channel::from(a);
    /// assert_eq!(ch.send_oob(b"!")?, 1);
    /// # drop(b);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn send_oob(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.ring_pending() > 0 {
            return Ok(0); // would pass output the ring still owes: as a full socket
        }
        self.sock()?.send_out_of_band(data)
    }

    /// Reads urgent (out-of-band) data, typically from `handle_expt`.
    ///
    /// ```
    /// let (a, _b) = std::os::unix::net::UnixStream::pair()?;
    /// let mut ch = sockloop::Channel::from(a);
    /// let mut byte = [0u8; 1];
    /// assert!(ch.recv_oob(&mut byte).is_err()); // no urgent data on a Unix socket
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn recv_oob(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock()?.recv_out_of_band(as_uninit(buf))
    }

    /// Queues `data` behind any unsent output and sends what the kernel takes now:
    /// asyncore's `dispatcher_with_send.send`. The loop sends the rest when the socket is
    /// writable. Fails with an [`OutputLimit`] error (kind
    /// [`ErrorKind::OutOfMemory`](io::ErrorKind::OutOfMemory)) when the unsent output would pass
    /// the hard limit; returned from a handler, it reaches `handle_error`, which by default
    /// closes the channel.
    ///
    /// ```
    /// let (a, mut b) = std::os::unix::net::UnixStream::pair()?;
    /// let mut ch = sockloop::Channel::from(a);
    /// ch.send_all(b"hello")?;
    /// assert_eq!(ch.pending_output(), 0);
    /// let mut got = [0u8; 5];
    /// std::io::Read::read_exact(&mut b, &mut got)?;
    /// assert_eq!(&got, b"hello");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn send_all(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() || !self.can_send() {
            return Ok(());
        }
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            return self.tls_send_all(data);
        }
        let mut rest = data;
        if self.out.len() == 0 && self.state != State::Connecting {
            let n = self.send(rest)?;
            rest = &rest[n..];
        }
        if rest.is_empty() || !self.can_send() {
            return Ok(());
        }
        if self.out.len() + rest.len() > self.hard_limit {
            return Err(OutputLimit::error(self.out.len() + rest.len(), self.hard_limit));
        }
        self.out.push(rest);
        Ok(())
    }

    /// Sends queued output until it is empty or the kernel takes no more. The loop calls this
    /// when the socket is writable; call it yourself to push output early. (Closing a draining
    /// channel once it is flushed is the loop's decision, which also asks the dispatcher.)
    ///
    /// ```
    /// let (a, _b) = std::os::unix::net::UnixStream::pair()?;
    /// let mut ch = sockloop::Channel::from(a);
    /// ch.flush()?; // nothing queued: nothing to do
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn flush(&mut self) -> io::Result<()> {
        #[cfg(feature = "tls")]
        self.tls_seal()?;
        if let Some(errno) = self.ring_error() {
            // A send on the ring failed: the write event hears it, as from a direct send.
            return self.sent(Err(io::Error::from_raw_os_error(errno))).map(drop);
        }
        while self.out.len() > 0 && self.can_send() {
            let ring = self.ring_sends();
            let (owed, shut) = self.ring_owed();
            let Channel { io, out, ring_out, .. } = self;
            let res = match ring {
                true => ring_out.get_or_insert_with(Box::default).accept(out.pending(), owed, shut),
                false => io.write(out.pending()),
            };
            let n = self.sent(res)?;
            if n == 0 {
                break;
            }
            self.out.consume(n);
        }
        Ok(())
    }

    /// Drops output queued by [`send_all`](Channel::send_all) that was not sent yet. On a TLS
    /// channel only the plaintext not sealed yet is dropped: the queue's encrypted records, part
    /// of which may be on the wire already, are kept (dropping them would break the stream).
    ///
    /// ```
    /// let (a, _b) = std::os::unix::net::UnixStream::pair()?;
    /// let mut ch = sockloop::Channel::from(a);
    /// ch.discard_output();
    /// assert_eq!(ch.pending_output(), 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn discard_output(&mut self) {
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            return self.tls_discard_plain();
        }
        self.drop_output();
    }

    /// Drops the queued output, whatever it holds.
    fn drop_output(&mut self) {
        self.out = OutBuf::default();
    }

    /// Bytes accepted by [`send_all`](Channel::send_all) that the kernel has not taken yet
    /// (asyncore's `len(out_buffer)`). On a TLS channel: the queued records plus the plaintext
    /// not sealed yet (sent during the handshake, or in the running handler: the loop seals
    /// and writes a handler's output once it returns). On the io_uring backend it also counts
    /// what `send` accepted for the ring and the kernel has not taken yet.
    ///
    /// ```
    /// let (a, _b) = std::os::unix::net::UnixStream::pair()?;
    /// assert_eq!(sockloop::Channel::from(a).pending_output(), 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn pending_output(&self) -> usize {
        self.queued_output() + self.ring_pending()
    }

    /// Output the channel itself holds (its queue, and a TLS channel's plaintext not sealed
    /// yet), without what the io_uring backend accepted to send: that is in the kernel's hands,
    /// as a socket buffer's bytes are, and is sent (then the FIN) even if the channel closes.
    pub(crate) fn queued_output(&self) -> usize {
        #[cfg(feature = "tls")]
        return self.out.len() + self.tls_pending_plain();
        #[cfg(not(feature = "tls"))]
        self.out.len()
    }

    /// The unsent output itself (asyncore's `dispatcher_with_send.out_buffer`). On a TLS
    /// channel: the sealed records only, not the plaintext still waiting to be sealed.
    ///
    /// ```
    /// let (a, _b) = std::os::unix::net::UnixStream::pair()?;
    /// assert!(sockloop::Channel::from(a).out_buffer().is_empty());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn out_buffer(&self) -> &[u8] {
        self.out.pending()
    }

    /// Sets the soft and hard limits on unsent output (defaults [`DEFAULT_SOFT_LIMIT`] and
    /// [`DEFAULT_HARD_LIMIT`]). Over the soft limit the loop stops reading from this channel
    /// (backpressure); past the hard limit `send_all` fails and the channel is closed.
    ///
    /// ```
    /// let (a, _b) = std::os::unix::net::UnixStream::pair()?;
    /// let mut ch = sockloop::Channel::from(a);
    /// ch.set_output_limits(64 * 1024, 1 << 20);
    /// assert_eq!(ch.output_limits(), (64 * 1024, 1 << 20));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn set_output_limits(&mut self, soft: usize, hard: usize) {
        self.soft_limit = soft;
        self.hard_limit = hard.max(soft);
    }

    /// The `(soft, hard)` limits on unsent output.
    ///
    /// ```
    /// let (a, _b) = std::os::unix::net::UnixStream::pair()?;
    /// let ch = sockloop::Channel::from(a);
    /// assert_eq!(ch.output_limits(), (sockloop::channel::DEFAULT_SOFT_LIMIT, sockloop::channel::DEFAULT_HARD_LIMIT));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn output_limits(&self) -> (usize, usize) {
        (self.soft_limit, self.hard_limit)
    }

    /// Whether unsent output is past the soft limit (the loop then stops reading).
    ///
    /// ```
    /// let (a, _b) = std::os::unix::net::UnixStream::pair()?;
    /// assert!(!sockloop::Channel::from(a).over_soft_limit());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn over_soft_limit(&self) -> bool {
        self.pending_output() > self.soft_limit
    }

    /// asyncore `close()`: the loop removes the channel from its map and closes the descriptor
    /// as soon as the running handler returns; it receives no further events.
    ///
    /// ```
    /// let (a, _b) = std::os::unix::net::UnixStream::pair()?;
    /// let mut ch = sockloop::Channel::from(a);
    /// ch.close();
    /// assert!(ch.is_closed() && !ch.connected());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn close(&mut self) {
        #[cfg(feature = "tls")]
        self.tls_close();
        self.state = State::Closed;
    }

    /// asynchat's `close_when_done()`: stop reading, send everything owed, then close. What is
    /// owed is the channel's own queued output and whatever its dispatcher still holds
    /// ([`Dispatcher::holds_output`](crate::Dispatcher::holds_output): asynchat's producers), so
    /// nothing queued is lost wherever this is called from (a handler, a timer, a sweep over
    /// the map). The loop closes the channel once all of it is sent, or at once if the peer is
    /// gone.
    ///
    /// ```
    /// let (a, _b) = std::os::unix::net::UnixStream::pair()?;
    /// let mut ch = sockloop::Channel::from(a);
    /// ch.close_when_done();
    /// assert!(ch.is_closing() && !ch.is_closed()); // the loop closes it once flushed
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn close_when_done(&mut self) {
        self.state = self.state.draining(self.pending_output() > 0);
    }

    /// Where the channel is in its life (asyncore's flags as one value).
    ///
    /// ```
    /// let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let ch = sockloop::Channel::tcp_connect(l.local_addr()?)?;
    /// assert_eq!(ch.state(), sockloop::channel::State::Connecting);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether `close()` was called.
    ///
    /// ```
    /// let (a, _b) = std::os::unix::net::UnixStream::pair()?;
    /// assert!(!sockloop::Channel::from(a).is_closed());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether the channel is draining its output before closing (`close_when_done`).
    ///
    /// ```
    /// let (a, _b) = std::os::unix::net::UnixStream::pair()?;
    /// assert!(!sockloop::Channel::from(a).is_closing());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_closing(&self) -> bool {
        matches!(self.state, State::Draining(_))
    }

    /// Whether the peer closed or disconnected (`handle_close` is due or done).
    ///
    /// ```
    /// let (a, _b) = std::os::unix::net::UnixStream::pair()?;
    /// assert!(!sockloop::Channel::from(a).peer_closed());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn peer_closed(&self) -> bool {
        self.state.peer().is_some_and(|p| p != Peer::Open)
    }

    /// asyncore's `accepting` flag: the channel is a listening socket.
    ///
    /// ```
    /// assert!(sockloop::Channel::tcp_listener("127.0.0.1:0".parse().unwrap(), 1)?.accepting());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn accepting(&self) -> bool {
        self.state == State::Listening
    }

    /// asyncore's `connected` flag.
    ///
    /// ```
    /// let (a, _b) = std::os::unix::net::UnixStream::pair()?;
    /// assert!(sockloop::Channel::from(a).connected());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn connected(&self) -> bool {
        self.state.peer().is_some()
    }

    /// asyncore's `connecting` flag: a non-blocking connect is in progress.
    ///
    /// ```
    /// let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// assert!(sockloop::Channel::tcp_connect(l.local_addr()?)?.connecting());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn connecting(&self) -> bool {
        self.state == State::Connecting
    }

    /// asyncore's `addr`: the address last bound or connected to, or the peer of an accepted
    /// socket.
    ///
    /// ```
    /// let ch = sockloop::Channel::tcp_listener("127.0.0.1:0".parse().unwrap(), 1)?;
    /// assert!(ch.addr().is_some());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn addr(&self) -> Option<&SockAddr> {
        match &self.addr {
            Addr::None => None,
            Addr::Other(a) => Some(a),
            Addr::Ip(a) => Some(self.addr_view.get_or_init(|| Box::new(SockAddr::from(*a)))),
        }
    }

    fn set_addr(&mut self, addr: Option<&SockAddr>) {
        self.addr = addr.map(Addr::of).unwrap_or_default();
        self.addr_view = std::cell::OnceCell::new();
    }

    /// The local address of the socket (`getsockname`).
    ///
    /// ```
    /// let ch = sockloop::Channel::tcp_listener("127.0.0.1:0".parse().unwrap(), 1)?;
    /// assert_eq!(ch.local_addr()?.as_socket().unwrap().ip().to_string(), "127.0.0.1");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn local_addr(&self) -> io::Result<SockAddr> {
        self.sock_ref()?.local_addr()
    }

    /// The peer address (`getpeername`).
    ///
    /// ```
    /// let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let c = std::net::TcpStream::connect(l.local_addr()?)?;
    /// let ch = sockloop::Channel::from(c);
    /// assert_eq!(ch.peer_addr()?.as_socket(), Some(l.local_addr()?));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn peer_addr(&self) -> io::Result<SockAddr> {
        self.sock_ref()?.peer_addr()
    }

    /// asyncore `fileno()`: the descriptor number.
    ///
    /// ```
    /// let ch = sockloop::Channel::tcp_listener("127.0.0.1:0".parse().unwrap(), 1)?;
    /// assert!(ch.fileno() >= 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn fileno(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }

    /// The socket, for options sockloop does not wrap (`None` for a file channel).
    ///
    /// ```
    /// let ch = sockloop::Channel::tcp_listener("127.0.0.1:0".parse().unwrap(), 1)?;
    /// assert!(ch.socket().unwrap().reuse_address()?);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn socket(&self) -> Option<&Socket> {
        match &self.io {
            Io::Socket(s) => Some(s),
            Io::File(_) => None,
        }
    }

    /// Shuts down one or both directions of the connection (`shutdown(2)`).
    ///
    /// ```
    /// let (a, _b) = std::os::unix::net::UnixStream::pair()?;
    /// sockloop::Channel::from(a).shutdown(std::net::Shutdown::Write)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        use std::net::Shutdown;
        let sock = self.sock_ref()?;
        // The ring still owes output: the FIN goes after it (the ring half-closes once it is
        // sent), so nothing accepted is cut off.
        if how != Shutdown::Read && self.ring_shutdown_after_output() {
            if how == Shutdown::Both {
                sock.shutdown(Shutdown::Read)?;
            }
            return Ok(());
        }
        sock.shutdown(how)
    }

    /// Reads and clears the pending socket error (`SO_ERROR`).
    pub(crate) fn take_error(&self) -> Option<io::Error> {
        match &self.io {
            Io::Socket(s) => s.take_error().ok().flatten(),
            Io::File(_) => None,
        }
    }

    /// Marks a pending connect as done.
    pub(crate) fn set_connected(&mut self) {
        if self.state == State::Connecting {
            self.state = State::Connected(Peer::Open);
        }
    }

    /// A pending connect failed: the socket is back to unconnected.
    pub(crate) fn mark_connect_failed(&mut self) {
        if self.state == State::Connecting {
            self.state = State::Fresh;
        }
    }

    /// Closes without writing anything more (a TLS handshake that timed out).
    #[cfg(feature = "tls")]
    pub(crate) fn close_silently(&mut self) {
        self.drop_output();
        self.state = State::Closed;
    }

    /// A disconnect error: no more I/O, `handle_close` is due.
    pub(crate) fn mark_broken(&mut self) {
        self.state = self.state.peer_gone();
    }

    /// Whether output can still reach the peer.
    fn can_send(&self) -> bool {
        !matches!(self.state, State::Closed | State::Connected(Peer::Gone) | State::Draining(Peer::Gone))
    }

    fn sock(&mut self) -> io::Result<&mut Socket> {
        match &mut self.io {
            Io::Socket(s) => Ok(s),
            Io::File(_) => Err(not_a_socket()),
        }
    }

    fn sock_ref(&self) -> io::Result<&Socket> {
        self.socket().ok_or_else(not_a_socket)
    }
}

fn not_a_socket() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "this channel wraps a file, not a socket")
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.io {
            Io::Socket(s) => s.as_fd(),
            Io::File(f) => f.as_fd(),
        }
    }
}

/// Wraps an existing socket, made non-blocking. A listening socket becomes `accepting`, a
/// socket with a peer `connected`.
///
/// ```
/// let l = sockloop::Socket::from(std::net::TcpListener::bind("127.0.0.1:0")?);
/// assert!(sockloop::Channel::from(l).accepting());
/// # Ok::<(), std::io::Error>(())
/// ```
impl From<Socket> for Channel {
    fn from(sock: Socket) -> Channel {
        // A failure here leaves the socket blocking; the first would-block then shows up as a
        // stall, so say it loudly rather than lose it.
        if let Err(e) = sock.set_nonblocking(true) {
            log::error!("sockloop: cannot make descriptor {} non-blocking: {e}", sock.as_raw_fd());
        }
        let accepting = is_listener(&sock);
        let peer = if accepting { None } else { sock.peer_addr().ok() };
        let mut ch = Channel::with_io(Io::Socket(sock));
        ch.state = match (accepting, &peer) {
            (true, _) => State::Listening,
            (false, Some(_)) => State::Connected(Peer::Open),
            (false, None) => State::Fresh,
        };
        ch.set_addr(peer.as_ref());
        ch
    }
}

fn is_listener(sock: &Socket) -> bool {
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd", target_os = "fuchsia"))]
    {
        sock.is_listener().unwrap_or(false)
    }
    #[cfg(not(any(
        target_os = "linux",
        target_os = "android",
        target_os = "freebsd",
        target_os = "fuchsia"
    )))]
    {
        sock.peer_addr().is_err()
            && sock.local_addr().is_ok_and(|a| a.as_socket().is_some_and(|s| s.port() != 0))
    }
}

macro_rules! from_std {
    ($($ty:ty),*) => {$(
        /// Wraps an existing std socket (see `From<sockloop::Socket>`).
        impl From<$ty> for Channel {
            fn from(sock: $ty) -> Channel {
                Channel::from(Socket::from(sock))
            }
        }
    )*};
}
from_std!(
    std::net::TcpStream,
    std::net::TcpListener,
    std::net::UdpSocket,
    std::os::unix::net::UnixStream,
    std::os::unix::net::UnixListener,
    std::os::unix::net::UnixDatagram
);

impl fmt::Debug for Channel {
    /// Like asyncore's `repr`: the kind, state flags, descriptor and address.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.io {
            Io::Socket(_) => "socket",
            Io::File(_) => "file",
        };
        write!(f, "<Channel {kind} fd={}", self.fileno())?;
        f.write_str(match self.state {
            State::Fresh => "",
            State::Listening => " listening",
            State::Connecting => " connecting",
            State::Connected(_) | State::Draining(_) => " connected",
            State::Closed => " closed",
        })?;
        match &self.addr {
            Addr::None => {}
            Addr::Ip(a) => write!(f, " {a}")?,
            Addr::Other(addr) => match (addr.as_socket(), addr.as_pathname()) {
                (Some(a), _) => write!(f, " {a}")?,
                (None, Some(p)) => write!(f, " {}", p.display())?,
                (None, None) => f.write_str(" (unnamed)")?,
            },
        }
        f.write_str(">")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{SocketAddr, SocketAddrV6};

    #[test]
    fn addr_is_kept_exactly_in_its_compact_form() {
        let v6 = SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 8080, 7, 3));
        for a in [SockAddr::from("127.0.0.1:9".parse::<SocketAddr>().unwrap()), SockAddr::from(v6)] {
            let mut ch = Channel::create_socket(Domain::IPV4, Type::STREAM).unwrap();
            ch.set_addr(Some(&a));
            assert!(matches!(ch.addr, Addr::Ip(_)));
            assert_eq!(ch.addr(), Some(&a));
            assert_eq!(ch.addr().and_then(|x| x.as_socket()), a.as_socket());
            ch.set_addr(None);
            assert!(ch.addr().is_none());
        }
        let unix = SockAddr::unix("/tmp/sockloop-addr-test.sock").unwrap();
        let mut ch = Channel::create_socket(Domain::UNIX, Type::STREAM).unwrap();
        ch.set_addr(Some(&unix));
        assert!(matches!(ch.addr, Addr::Other(_)));
        assert_eq!(ch.addr(), Some(&unix));
        assert!(format!("{ch:?}").contains("/tmp/sockloop-addr-test.sock"));
    }

    #[test]
    fn accepted_channel_knows_its_peer() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        let ch = Channel::from(Socket::from(s));
        assert_eq!(ch.addr().and_then(|a| a.as_socket()), Some(c.local_addr().unwrap()));
        assert!(format!("{ch:?}").contains(&c.local_addr().unwrap().to_string()));
    }
}
