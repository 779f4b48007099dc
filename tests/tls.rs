//! TLS (issue 13) over every backend: the library in one loop (client and server channels,
//! handshake errors, close_notify), and the example programs against real clients: Python's
//! `ssl` echo clients (TLS 1.2 and 1.3, RSA and EC keys), `http.client.HTTPSConnection`,
//! `smtplib` STARTTLS, `http_client` against Python's ssl-wrapped `http.server`, and hostile
//! peers (stalled handshakes, random bytes, a corrupted record, connections churned).
//! Certificates are made at test time (`support::certs`).

#![cfg(feature = "tls")]

mod support;

use sockloop::tls::{TlsAcceptor, TlsConnector};
use sockloop::{Backend, Channel, Context, Dispatcher, SockAddr, Socket};
use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};
use support::certs::{self, Key};
use support::process::{py_script, python, Server};
use support::*;

/// Runs `tests/py/tls_clients.py MODE PORT CA ARGS...` and asserts it printed OK.
fn py_clients(mode: &str, port: u16, ca: &std::path::Path, args: &[&str]) {
    let out = Command::new(python())
        .arg(py_script("tls_clients.py"))
        .args([mode, &port.to_string(), ca.to_str().unwrap()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run tls_clients.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("OK"),
        "tls_clients.py {mode} failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn keys() -> Vec<Key> {
    if certs::have_rsa() {
        vec![Key::Ec, Key::Rsa]
    } else {
        eprintln!("openssl not found: RSA keys are not tested here");
        vec![Key::Ec]
    }
}

fn tls_args(c: &certs::Certs, backend: Backend) -> Vec<&str> {
    vec![
        "--backend",
        backend.name(),
        "--tls-cert",
        c.cert.to_str().unwrap(),
        "--tls-key",
        c.key.to_str().unwrap(),
    ]
}

// ---------------------------------------------------------------------------------------------
// The library in one loop

#[derive(Default)]
struct Seen {
    connected: bool,
    echoed: Vec<u8>,
    errors: Vec<String>,
    server_closed: bool,
    server_errors: Vec<String>,
}

struct EchoSide(Rc<RefCell<Seen>>);

impl Dispatcher for EchoSide {
    fn handle_read(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        assert!(!cx.channel.tls_handshaking(), "the first handle_read comes after the handshake");
        assert_eq!(cx.channel.tls_server_name(), Some("localhost"), "the client sent SNI");
        let n = cx.channel.recv(cx.scratch)?;
        cx.channel.send_all(&cx.scratch[..n])
    }

    fn handle_close(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        self.0.borrow_mut().server_closed = true;
        cx.channel.close_when_done();
        Ok(())
    }

    fn handle_error(&mut self, err: io::Error, cx: &mut Context<'_>) {
        self.0.borrow_mut().server_errors.push(err.to_string());
        cx.channel.close();
    }
}

struct Acceptor(TlsAcceptor, Rc<RefCell<Seen>>);

impl Dispatcher for Acceptor {
    fn handle_accepted(&mut self, sock: Socket, _: SockAddr, cx: &mut Context<'_>) -> io::Result<()> {
        cx.lp.add(Channel::from(sock).tls_server(&self.0)?, EchoSide(self.1.clone()))?;
        Ok(())
    }
}

struct Client {
    seen: Rc<RefCell<Seen>>,
    data: Vec<u8>,
}

impl Dispatcher for Client {
    fn writable(&self) -> bool {
        false
    }

    fn handle_connect(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        assert!(!cx.channel.tls_handshaking(), "handle_connect comes after the handshake");
        assert_eq!(cx.channel.alpn_protocol(), Some(&b"x-test"[..]));
        self.seen.borrow_mut().connected = true;
        cx.channel.send_all(&self.data)
    }

    fn handle_read(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let n = cx.channel.recv(cx.scratch)?;
        let mut seen = self.seen.borrow_mut();
        seen.echoed.extend_from_slice(&cx.scratch[..n]);
        if seen.echoed.len() == self.data.len() {
            cx.channel.close_when_done(); // close_notify, then the server's back
        }
        Ok(())
    }

    fn handle_error(&mut self, err: io::Error, cx: &mut Context<'_>) {
        self.seen.borrow_mut().errors.push(err.to_string());
        cx.channel.close();
    }
}

/// A TLS client and server channel in one loop: `handle_connect` after the handshake (with
/// ALPN agreed), 300 KiB echoed exactly, the client's `close_when_done` sends close_notify
/// before it closes, which the server sees as an ordinary end (`handle_close`, no error);
/// nothing left behind.
fn library_client_and_server(backend: Backend) {
    let c = certs::make(Key::Ec);
    let seen = Rc::new(RefCell::new(Seen::default()));
    let mut lp = new_loop(backend);
    let acceptor = TlsAcceptor::from_pem_files(&c.cert, &c.key).unwrap().with_alpn(&[b"x-test"]);
    let listener = Channel::tcp_listener("127.0.0.1:0".parse().unwrap(), 16).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    lp.add(listener, Acceptor(acceptor, seen.clone())).unwrap();
    let connector = TlsConnector::from_ca_file(&c.ca).unwrap().with_alpn(&[b"x-test"]);
    let data = Rng(7).bytes(300 * 1024);
    let ch = Channel::tcp_connect(addr).unwrap().tls_client(&connector, "localhost").unwrap();
    lp.add(ch, Client { seen: seen.clone(), data: data.clone() }).unwrap();
    drive(&mut lp, "the echo and both ends", |_| {
        let s = seen.borrow();
        s.server_closed || !s.errors.is_empty() || !s.server_errors.is_empty()
    });
    let s = seen.borrow();
    assert!(s.errors.is_empty() && s.server_errors.is_empty(), "{:?} {:?}", s.errors, s.server_errors);
    assert!(s.connected);
    assert!(s.echoed == data, "echoed {} of {} bytes, or not exactly", s.echoed.len(), data.len());
    drop(s);
    drive(&mut lp, "only the listener left", |lp| lp.len() == 1);
    assert_quiet(&mut lp);
}

/// A client that does not trust the server's CA gets `handle_error` with the certificate
/// error (no `handle_connect`); the server's dispatcher hears the client's alert.
fn library_bad_certificate(backend: Backend) {
    let c = certs::make(Key::Ec);
    let other = certs::make(Key::Ec);
    let seen = Rc::new(RefCell::new(Seen::default()));
    let mut lp = new_loop(backend);
    let acceptor = TlsAcceptor::from_pem_files(&c.cert, &c.key).unwrap();
    let listener = Channel::tcp_listener("127.0.0.1:0".parse().unwrap(), 16).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    lp.add(listener, Acceptor(acceptor, seen.clone())).unwrap();
    let connector = TlsConnector::from_ca_file(&other.ca).unwrap();
    let ch = Channel::tcp_connect(addr).unwrap().tls_client(&connector, "localhost").unwrap();
    lp.add(ch, Client { seen: seen.clone(), data: vec![1] }).unwrap();
    drive(&mut lp, "both handshake errors", |_| {
        let s = seen.borrow();
        !s.errors.is_empty() && !s.server_errors.is_empty()
    });
    let s = seen.borrow();
    assert!(!s.connected, "no handle_connect after a failed handshake");
    assert!(s.errors[0].contains("invalid peer certificate"), "{:?}", s.errors);
    assert!(s.server_errors[0].contains("TLS handshake failed"), "{:?}", s.server_errors);
    drop(s);
    drive(&mut lp, "only the listener left", |lp| lp.len() == 1);
}

/// `Loop::shutdown` closes a TLS connection with `close_notify`: a blocking rustls client in
/// another thread sees a clean end of stream, not a truncation.
fn library_shutdown_sends_close_notify(backend: Backend) {
    use sockloop::tls::rustls;
    let c = certs::make(Key::Ec);
    let seen = Rc::new(RefCell::new(Seen::default()));
    let mut lp = new_loop(backend);
    let acceptor = TlsAcceptor::from_pem_files(&c.cert, &c.key).unwrap();
    let listener = Channel::tcp_listener("127.0.0.1:0".parse().unwrap(), 16).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    lp.add(listener, Acceptor(acceptor, seen.clone())).unwrap();
    let config = TlsConnector::from_ca_file(&c.ca).unwrap().config().clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let client = std::thread::spawn(move || {
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(config, name).unwrap();
        let sock = TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, sock);
        tls.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        tls.read_exact(&mut b).unwrap();
        tx.send(()).unwrap();
        let mut rest = Vec::new();
        tls.read_to_end(&mut rest).map(|_| rest)
    });
    drive(&mut lp, "the echo", |_| rx.try_recv().is_ok());
    lp.shutdown(Duration::from_secs(2));
    lp.run().unwrap();
    match client.join().unwrap() {
        Ok(rest) => assert!(rest.is_empty()),
        Err(e) => panic!("the client saw {e} instead of close_notify"),
    }
    assert!(seen.borrow().server_errors.is_empty(), "{:?}", seen.borrow().server_errors);
}

// ---------------------------------------------------------------------------------------------
// The programs against real clients

/// echo_server over TLS: 24 concurrent Python clients (TLS 1.2 and 1.3 alternately), three
/// messages each of 1 B to 400 KiB, every byte checked; with an EC and an RSA key. A second
/// connection resumes the first one's session (TLS 1.2 and 1.3).
fn echo_server_python_clients(backend: Backend) {
    for key in keys() {
        let c = certs::make(key);
        let mut args = tls_args(&c, backend);
        args.push("--quiet");
        let server = Server::start("echo_server", &args);
        py_clients("echo", server.port(), &c.ca, &["24", &(key as u64 + 1).to_string()]);
        py_clients("resume", server.port(), &c.ca, &[]);
        let (status, _) = server.stop();
        assert!(status.success(), "{key:?}: {status}");
    }
}

/// http_server over TLS: HTTPSConnection keep-alive GETs, bodies exact, one connection; and
/// `curl --cacert` where installed.
fn http_server_https_keepalive(backend: Backend) {
    let c = certs::make(Key::Ec);
    let root = TempDir::new("https-root");
    std::fs::write(root.path("small.txt"), b"hello over https\n").unwrap();
    std::fs::write(root.path("two.bin"), Rng(3).bytes(2048)).unwrap();
    std::fs::write(root.path("big.bin"), Rng(4).bytes(300 * 1024)).unwrap();
    let mut args = tls_args(&c, backend);
    args.extend(["--root", root.0.to_str().unwrap()]);
    let server = Server::start("http_server", &args);
    py_clients("https", server.port(), &c.ca, &[root.0.to_str().unwrap()]);
    if support::process::have("curl") {
        let url = format!("https://localhost:{}/big.bin", server.port());
        let out = Command::new("curl")
            .args(["-sS", "--fail", "--http1.1", "--cacert", c.ca.to_str().unwrap(), &url, &url])
            .output()
            .unwrap();
        assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
        let big = std::fs::read(root.path("big.bin")).unwrap();
        assert!(out.stdout == [big.clone(), big].concat(), "curl got the file twice, exactly");
    }
    let (status, _) = server.stop();
    assert!(status.success());
}

/// smtp_sink: EHLO offers STARTTLS, smtplib upgrades, the message is stored exactly.
fn smtp_sink_starttls(backend: Backend) {
    let c = certs::make(Key::Ec);
    let dir = TempDir::new("smtp-tls");
    let mut args = tls_args(&c, backend);
    args.extend(["--dir", dir.0.to_str().unwrap(), "--no-headers"]);
    let server = Server::start("smtp_sink", &args);
    py_clients("smtp", server.port(), &c.ca, &[dir.0.to_str().unwrap()]);
    let (status, _) = server.stop();
    assert!(status.success());
}

/// http_client fetches from Python's ssl-wrapped http.server by IP literal and by name with
/// `--ca-file`, and is refused (exit 1, one line on stderr) without it.
fn http_client_https(backend: Backend) {
    let c = certs::make(Key::Ec);
    let root = TempDir::new("https-py");
    let body = Rng(9).bytes(100 * 1024);
    std::fs::write(root.path("f.bin"), &body).unwrap();
    let mut child = ChildGuard(Some(
        Command::new(python())
            .arg(py_script("https_server.py"))
            .args([&c.cert, &c.key, &root.0])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .spawn()
            .expect("start https_server.py"),
    ));
    let stdout = io::BufReader::new(child.child().stdout.take().unwrap());
    let (line, _stdout) = read_line_within(stdout, DEADLINE);
    let port: u16 = line.trim().parse().expect("the port");
    for host in ["127.0.0.1", "localhost"] {
        let out = Command::new(example_path("http_client"))
            .args(["--backend", backend.name(), "--ca-file", c.ca.to_str().unwrap()])
            .arg(format!("https://{host}:{port}/f.bin"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{host}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(out.stdout.starts_with(b"HTTP/1.0 200"), "{host}");
        assert!(out.stdout.ends_with(&body), "{host}: the body exactly");
    }
    let out = Command::new(example_path("http_client"))
        .args(["--backend", backend.name()])
        .arg(format!("https://127.0.0.1:{port}/f.bin"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "refused without the CA");
    assert_eq!(err.lines().count(), 1, "one line on stderr: {err:?}");
    assert!(err.contains("certificate"), "{err}");
    assert!(out.stdout.is_empty());
}

/// Open descriptors of a process.
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// Hostile peers against echo_server with a 1.5 s handshake timeout: 30 connections stall
/// before or in the middle of their handshake while the server stays idle (CPU) and serves a
/// good client and a corrupted record; the stalled ones are closed at the timeout without a
/// byte written; then 80 connections ended every way (close_notify, reset, mid-handshake,
/// random bytes) leave the descriptor count where it was.
fn hostile_peers(backend: Backend) {
    let c = certs::make(Key::Ec);
    let mut args = tls_args(&c, backend);
    args.extend(["--quiet", "--tls-handshake-timeout", "1.5"]);
    let server = Server::start("echo_server", &args);
    let pid = server.pid();
    let baseline = fd_count(pid);
    let started = Instant::now();
    let mut stalled: Vec<TcpStream> = (0..30)
        .map(|i| {
            let mut s = server.connect();
            match i % 3 {
                0 => {}                                                                       // nothing at all
                1 => s.write_all(&[0x16, 0x03, 0x01, 0x01, 0x00]).unwrap(), // a record header
                _ => s.write_all(&[0x16, 0x03, 0x01, 0x00, 0x80, 0x01, 0, 0, 0x7c]).unwrap(), // part of a hello
            }
            s
        })
        .collect();
    wait_until(DEADLINE, "the stalled connections accepted", || fd_count(pid) >= baseline + 30);
    let t0 = cpu_ticks(pid);
    std::thread::sleep(Duration::from_millis(600)); // a measurement window, not a synchronisation
    let spent = cpu_ticks(pid) - t0;
    assert!(spent <= 3, "stalled handshakes cost CPU: {spent} ticks in 600 ms");
    py_clients("corrupt", server.port(), &c.ca, &[]);
    for s in &mut stalled {
        let mut buf = [0u8; 64];
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        match s.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            other => panic!("a stalled handshake got {other:?} instead of a silent close"),
        }
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1400), "closed before the timeout: {took:?}");
    assert!(took < Duration::from_secs(8), "closed long after the timeout: {took:?}");
    drop(stalled);
    py_clients("churn", server.port(), &c.ca, &["80", "5"]);
    wait_until(DEADLINE, "the descriptor count back at its baseline", || fd_count(pid) == baseline);
    let (status, _) = server.stop();
    assert!(status.success());
}

/// A STARTTLS client written on the library (`start_tls_client`, an in-place upgrade) against
/// smtp_sink: EHLO, STARTTLS, then a new EHLO queued at once (it waits in the engine until the
/// handshake is done), QUIT over TLS.
struct StartTlsClient {
    connector: TlsConnector,
    input: Vec<u8>,
    step: u8,
    transcript: Rc<RefCell<Vec<String>>>,
}

impl Dispatcher for StartTlsClient {
    fn writable(&self) -> bool {
        false
    }

    // No urgent data: on io_uring the ring receives the plain part, so the upgrade must take
    // the channel off the ring first.
    fn urgent_data(&self) -> bool {
        false
    }

    fn handle_read(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let n = cx.channel.recv(cx.scratch)?;
        self.input.extend_from_slice(&cx.scratch[..n]);
        while let Some(i) = self.input.iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&self.input[..i]).trim_end().to_string();
            self.input.drain(..=i);
            let last = line.len() < 4 || line.as_bytes()[3] == b' ';
            self.transcript.borrow_mut().push(line.clone());
            if !last {
                continue;
            }
            match (self.step, &line[..3]) {
                (0, "220") => cx.channel.send_all(b"EHLO lib\r\n")?,
                (1, "250") => cx.channel.send_all(b"STARTTLS\r\n")?,
                (2, "220") => {
                    cx.channel.start_tls_client(&self.connector, "localhost")?;
                    cx.channel.send_all(b"EHLO lib\r\n")?;
                }
                (3, "250") => {
                    assert!(cx.channel.is_tls() && !cx.channel.tls_handshaking());
                    cx.channel.send_all(b"QUIT\r\n")?;
                }
                (4, "221") => cx.channel.close_when_done(),
                (step, _) => panic!("unexpected reply at step {step}: {line}"),
            }
            self.step += 1;
        }
        Ok(())
    }
}

fn library_starttls_client(backend: Backend) {
    let c = certs::make(Key::Ec);
    let dir = TempDir::new("smtp-lib");
    let mut args = tls_args(&c, backend);
    args.extend(["--dir", dir.0.to_str().unwrap()]);
    let server = Server::start("smtp_sink", &args);
    let transcript = Rc::new(RefCell::new(Vec::new()));
    let mut lp = new_loop(backend);
    let client = StartTlsClient {
        connector: TlsConnector::from_ca_file(&c.ca).unwrap(),
        input: Vec::new(),
        step: 0,
        transcript: transcript.clone(),
    };
    lp.add(Channel::tcp_connect(server.addr).unwrap(), client).unwrap();
    drive(&mut lp, "the STARTTLS session", |lp| lp.is_empty());
    let t = transcript.borrow();
    assert!(t.iter().any(|l| l.contains("STARTTLS")), "offered: {t:?}");
    assert!(t.last().is_some_and(|l| l.starts_with("221")), "{t:?}");
    let after: Vec<_> = t.iter().skip_while(|l| !l.starts_with("220 2.0.0")).collect();
    assert!(!after.iter().any(|l| l.contains("STARTTLS")), "not offered inside TLS: {t:?}");
    drop(t);
    let (status, _) = server.stop();
    assert!(status.success());
}

backend_tests!(
    library_client_and_server,
    library_bad_certificate,
    library_shutdown_sends_close_notify,
    library_starttls_client,
    echo_server_python_clients,
    http_server_https_keepalive,
    smtp_sink_starttls,
    http_client_https,
    hostile_peers,
);
