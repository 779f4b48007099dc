//! TLS output and input batching (issue 13's performance follow-up): plaintext sent during a
//! handshake counts as pending output (soft and hard limits included) and goes out once the
//! handshake is done; the sends of one handler leave as one TLS record; one `recv` decrypts
//! several records that are already in the socket.

mod support;

use sockloop::tls::{rustls, TlsAcceptor, TlsConnector};
use sockloop::{Backend, Channel, Context, Dispatcher, SockAddr, Socket};
use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use support::certs::{self, Key};
use support::*;

/// Echoes plaintext back.
struct Echo;

impl Dispatcher for Echo {
    fn handle_read(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let n = cx.channel.recv(cx.scratch)?;
        cx.channel.send_all(&cx.scratch[..n])
    }

    fn handle_close(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        cx.channel.close_when_done();
        Ok(())
    }
}

/// Accepts TLS connections, each served by `make()`.
struct Acceptor<F>(TlsAcceptor, F);

impl<D: Dispatcher + 'static, F: FnMut() -> D + 'static> Dispatcher for Acceptor<F> {
    fn handle_accepted(&mut self, sock: Socket, _: SockAddr, cx: &mut Context<'_>) -> io::Result<()> {
        let handler = (self.1)();
        cx.lp.add(Channel::from(sock).tls_server(&self.0)?, handler)?;
        Ok(())
    }
}

fn listen<D: Dispatcher + 'static>(
    lp: &mut sockloop::Loop,
    acceptor: TlsAcceptor,
    make: impl FnMut() -> D + 'static,
) -> SocketAddr {
    let listener = Channel::tcp_listener("127.0.0.1:0".parse().unwrap(), 16).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    lp.add(listener, Acceptor(acceptor, make)).unwrap();
    addr
}

/// A client that collects what comes back and closes once it has `want` bytes.
struct Collect {
    got: Rc<RefCell<Vec<u8>>>,
    want: usize,
    errors: Rc<RefCell<Vec<String>>>,
}

impl Dispatcher for Collect {
    fn writable(&self) -> bool {
        false
    }

    fn handle_read(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let n = cx.channel.recv(cx.scratch)?;
        let mut got = self.got.borrow_mut();
        got.extend_from_slice(&cx.scratch[..n]);
        if got.len() >= self.want {
            cx.channel.close_when_done();
        }
        Ok(())
    }

    fn handle_error(&mut self, err: io::Error, cx: &mut Context<'_>) {
        self.errors.borrow_mut().push(err.to_string());
        cx.channel.close();
    }
}

/// Plaintext sent before the handshake is done is pending output: `pending_output` counts it,
/// the soft limit stops `send` and the hard limit fails `send_all` on it; once the handshake is
/// done it is sent, exactly, before anything else.
fn handshake_plaintext_is_pending_output(backend: Backend) {
    let c = certs::make(Key::Ec);
    let mut lp = new_loop(backend);
    let acceptor = TlsAcceptor::from_pem_files(&c.cert, &c.key).unwrap();
    let addr = listen(&mut lp, acceptor, || Echo);
    let connector = TlsConnector::from_ca_file(&c.ca).unwrap();
    let mut ch = Channel::tcp_connect(addr).unwrap().tls_client(&connector, "localhost").unwrap();
    assert!(ch.tls_handshaking());
    let hello = ch.pending_output();
    assert!(hello > 0, "the ClientHello is queued");
    ch.set_output_limits(hello + 4, hello + 10);
    ch.send_all(b"early").unwrap();
    assert_eq!(ch.pending_output(), hello + 5, "plaintext queued during the handshake is pending");
    assert!(ch.over_soft_limit());
    assert_eq!(ch.send(b"x").unwrap(), 0, "send stops over the soft limit");
    let err = ch.send_all(b"-later").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::OutOfMemory, "past the hard limit: {err}");
    assert_eq!(ch.pending_output(), hello + 5, "a refused send_all queues nothing");
    let (soft, hard) = (sockloop::channel::DEFAULT_SOFT_LIMIT, sockloop::channel::DEFAULT_HARD_LIMIT);
    ch.set_output_limits(soft, hard);
    ch.send_all(b", then more").unwrap();
    let got = Rc::new(RefCell::new(Vec::new()));
    let errors = Rc::new(RefCell::new(Vec::new()));
    let want = b"early, then more".len();
    lp.add(ch, Collect { got: got.clone(), want, errors: errors.clone() }).unwrap();
    drive(&mut lp, "the early plaintext echoed", |_| {
        got.borrow().len() >= want || !errors.borrow().is_empty()
    });
    assert!(errors.borrow().is_empty(), "{:?}", errors.borrow());
    assert_eq!(&got.borrow()[..], b"early, then more");
    drive(&mut lp, "only the listener left", |lp| lp.len() == 1);
}

/// Sends a reply in eleven pieces from one handler, and says what `pending_output` was before
/// the handler returned.
struct Pieces(Rc<RefCell<Vec<usize>>>);

impl Dispatcher for Pieces {
    fn handle_read(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let n = cx.channel.recv(cx.scratch)?;
        if n == 0 {
            return Ok(());
        }
        for i in 0..10u8 {
            cx.channel.send_all(&[b'a' + i; 100])?;
        }
        assert_eq!(cx.channel.send(b"!")?, 1);
        self.0.borrow_mut().push(cx.channel.pending_output());
        Ok(())
    }

    fn handle_close(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        cx.channel.close_when_done();
        Ok(())
    }
}

/// The TLS records in `raw` (type, length), and how many bytes they cover.
fn records(raw: &[u8]) -> (Vec<(u8, usize)>, usize) {
    let (mut out, mut at) = (Vec::new(), 0);
    while raw.len() >= at + 5 {
        let len = u16::from_be_bytes([raw[at + 3], raw[at + 4]]) as usize;
        if raw.len() < at + 5 + len {
            break;
        }
        out.push((raw[at], len));
        at += 5 + len;
    }
    (out, at)
}

/// The server's sends in one handler (ten `send_all` and a `send`) leave as one TLS record; the
/// plaintext is pending output until the handler returns. The client reads the raw bytes and
/// counts the records itself (TLS 1.3 without session tickets, so nothing else follows the
/// handshake).
fn sends_of_one_handler_are_one_record(backend: Backend) {
    let c = certs::make(Key::Ec);
    let mut lp = new_loop(backend);
    let base = TlsAcceptor::from_pem_files(&c.cert, &c.key).unwrap();
    let mut config = (**base.config()).clone();
    config.send_tls13_tickets = 0;
    let acceptor = TlsAcceptor::from_config(Arc::new(config));
    let pending = Rc::new(RefCell::new(Vec::new()));
    let p = pending.clone();
    let addr = listen(&mut lp, acceptor, move || Pieces(p.clone()));
    let client_config = TlsConnector::from_ca_file(&c.ca).unwrap().config().clone();
    let client = std::thread::spawn(move || -> (Vec<(u8, usize)>, Vec<u8>) {
        let mut tcp = TcpStream::connect(addr).unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut conn = rustls::ClientConnection::new(client_config, name).unwrap();
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp).unwrap();
        }
        conn.writer().write_all(b"go").unwrap();
        while conn.wants_write() {
            conn.write_tls(&mut tcp).unwrap();
        }
        let (mut raw, mut plain, mut seen) = (Vec::new(), Vec::new(), Vec::new());
        let mut buf = [0u8; 4096];
        while plain.len() < 1001 {
            let n = tcp.read(&mut buf).unwrap();
            assert!(n > 0, "the server closed early");
            raw.extend_from_slice(&buf[..n]);
            let (found, used) = records(&raw);
            seen.extend(found);
            let mut whole = &raw[..used];
            while !whole.is_empty() {
                conn.read_tls(&mut whole).unwrap();
                conn.process_new_packets().unwrap();
            }
            raw.drain(..used);
            let mut chunk = [0u8; 2048];
            loop {
                match conn.reader().read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => plain.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        conn.send_close_notify();
        let _ = conn.write_tls(&mut tcp);
        (seen, plain)
    });
    let (seen, plain) = drive_join(&mut lp, "the client's reply", client);
    let mut want = Vec::new();
    for i in 0..10u8 {
        want.extend_from_slice(&[b'a' + i; 100]);
    }
    want.push(b'!');
    assert!(plain == want, "the reply, exactly ({} bytes)", plain.len());
    assert_eq!(seen.len(), 1, "one record for one handler's sends: {seen:?}");
    assert_eq!(seen[0].0, 0x17, "application data");
    assert_eq!(&pending.borrow()[..], &[1001], "pending_output counts the plaintext not sealed yet");
    drive(&mut lp, "only the listener left", |lp| lp.len() == 1);
}

/// Reads only once the client has written everything, then records each `recv`'s result.
struct Gated {
    open: Arc<AtomicBool>,
    reads: Rc<RefCell<Vec<io::Result<usize>>>>,
    got: Rc<RefCell<Vec<u8>>>,
    want: usize,
}

impl Dispatcher for Gated {
    fn readable(&self) -> bool {
        self.open.load(Ordering::SeqCst)
    }

    fn volatile(&self) -> bool {
        true
    }

    fn handle_read(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let r = cx.channel.recv(cx.scratch);
        if let Ok(n) = r {
            self.got.borrow_mut().extend_from_slice(&cx.scratch[..n]);
        }
        let kind = r.as_ref().map(|&n| n).map_err(|e| io::Error::from(e.kind()));
        self.reads.borrow_mut().push(kind);
        if self.got.borrow().len() >= self.want {
            cx.channel.close_when_done();
        }
        r.map(|_| ())
    }
}

/// 40 KiB already in the socket (three records of up to 16 KiB from a rustls client): the
/// first `recv` decrypts at least a whole record's 16 KiB instead of waiting for more events
/// (rustls alone reads 4 KiB per call), and every byte arrives exactly.
fn one_recv_takes_several_records(backend: Backend) {
    let c = certs::make(Key::Ec);
    let mut lp = new_loop(backend);
    let acceptor = TlsAcceptor::from_pem_files(&c.cert, &c.key).unwrap();
    let open = Arc::new(AtomicBool::new(false));
    let reads = Rc::new(RefCell::new(Vec::new()));
    let got = Rc::new(RefCell::new(Vec::new()));
    let data = Rng(11).bytes(40 * 1024);
    // A Unix socket pair: a write returns once its bytes are in the peer's receive queue.
    let (server_end, mut peer) = std::os::unix::net::UnixStream::pair().unwrap();
    let gated = Gated { open: open.clone(), reads: reads.clone(), got: got.clone(), want: data.len() };
    lp.add(Channel::from(server_end).tls_server(&acceptor).unwrap(), gated).unwrap();
    let client_config = TlsConnector::from_ca_file(&c.ca).unwrap().config().clone();
    let sent = data.clone();
    let client = std::thread::spawn(move || {
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut conn = rustls::ClientConnection::new(client_config, name).unwrap();
        while conn.is_handshaking() {
            conn.complete_io(&mut peer).unwrap();
        }
        conn.writer().write_all(&sent).unwrap();
        while conn.wants_write() {
            conn.write_tls(&mut peer).unwrap();
        }
        // Every byte is in the server's receive queue now: let it read.
        open.store(true, Ordering::SeqCst);
        // Until the server's close_notify (or its end).
        let mut sink = Vec::new();
        let mut stream = rustls::Stream::new(&mut conn, &mut peer);
        let _ = stream.read_to_end(&mut sink);
    });
    drive_join(&mut lp, "the 40 KiB read", client);
    drive(&mut lp, "the server side closed", |lp| lp.is_empty());
    let reads = reads.borrow();
    assert!(
        got.borrow()[..] == data[..],
        "received {} of {} bytes, or not exactly",
        got.borrow().len(),
        data.len()
    );
    match reads.first() {
        Some(Ok(n)) => assert!(*n >= 16 * 1024, "the first recv took {n} bytes: {reads:?}"),
        other => panic!("the first recv gave {other:?} (all reads: {reads:?})"),
    }
}

backend_tests!(
    handshake_plaintext_is_pending_output,
    sends_of_one_handler_are_one_record,
    one_recv_takes_several_records,
);
