//! Helpers shared by the integration tests: per-backend tests ([`backend_tests!`]), address
//! families, real loopback peers, condition waits with deadlines (never sleeps as
//! synchronisation), a probe dispatcher that counts its handler calls, a log capture, and guards
//! for temp dirs and child processes. [`process`] drives the example servers as processes.
#![allow(dead_code)] // each test binary uses a different subset

pub mod certs;
pub mod http;
pub mod process;

use sockloop::channel::State;
use sockloop::{Backend, Channel, Context, Dispatcher, Domain, Loop, SockAddr, Socket, Type};
use std::cell::{Cell, RefCell};
use std::io::{self, BufReader, Read, Write};
use std::net::SocketAddr;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

/// How long a condition may take before the test fails. Only hit on failure.
pub const DEADLINE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// One test per backend

/// For each `NAME` given, a module `NAME` holding one `#[test]` per backend (`NAME::select`,
/// `NAME::poll`, `NAME::epoll`, `NAME::uring`), each calling the file's `fn NAME(backend: Backend)` with its
/// backend, so `cargo test -- ::epoll` runs one backend and a failure names it. The test
/// functions stay ordinary items (rustfmt formats them; it leaves macro bodies alone), and the
/// invocation names them after they are defined. Attributes before a name (`#[ignore = "..."]`,
/// ...) go on each of its generated tests. A test function left out of the list is dead code,
/// which the lints reject.
///
/// ```ignore
/// /// What it checks.
/// fn echo_roundtrip(backend: Backend) { ... }
/// fn other(backend: Backend) { ... }
///
/// backend_tests!(echo_roundtrip, #[ignore = "why"] other);
/// ```
#[macro_export]
macro_rules! backend_tests {
    (@one [$($attr:tt)*] $name:ident) => {
        mod $name {
            // The backends, in one place: a new one is one test here.
            #[test]
            $($attr)*
            fn select() {
                super::$name(::sockloop::Backend::Select)
            }

            #[test]
            $($attr)*
            fn poll() {
                super::$name(::sockloop::Backend::Poll)
            }

            #[test]
            #[cfg(any(target_os = "linux", target_os = "android"))]
            $($attr)*
            fn epoll() {
                super::$name(::sockloop::Backend::Epoll)
            }

            #[test]
            #[cfg(target_os = "linux")]
            $($attr)*
            fn uring() {
                // Where the kernel refuses io_uring (a sysctl, seccomp) there is nothing to test.
                if !::sockloop::Backend::all().contains(&::sockloop::Backend::Uring) {
                    eprintln!("io_uring is not available here: skipped");
                    return;
                }
                super::$name(::sockloop::Backend::Uring)
            }
        }
    };
    ($($(#[$attr:meta])* $name:ident),+ $(,)?) => {
        $($crate::backend_tests!(@one [$(#[$attr])*] $name);)+
    };
}

// ---------------------------------------------------------------------------------------------
// Backends x families

/// The address families CPython's tests run over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
    Unix,
}

impl Family {
    pub const ALL: [Family; 3] = [Family::V4, Family::V6, Family::Unix];
    /// TCP only (out-of-band data, SO_LINGER resets, SO_REUSEADDR).
    pub const INET: [Family; 2] = [Family::V4, Family::V6];

    pub fn domain(self) -> Domain {
        match self {
            Family::V4 => Domain::IPV4,
            Family::V6 => Domain::IPV6,
            Family::Unix => Domain::UNIX,
        }
    }

    pub fn is_inet(self) -> bool {
        self != Family::Unix
    }
}

/// Runs `f` once per family, naming the family on failure (the backend is in the test's name,
/// see [`backend_tests!`]).
pub fn each_family(families: &[Family], mut f: impl FnMut(Family)) {
    for &family in families {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| f(family))) {
            eprintln!("failed case: family {family:?}");
            resume_unwind(payload);
        }
    }
}

pub fn new_loop(backend: Backend) -> Loop {
    let lp = Loop::with_backend(backend).expect("create loop");
    assert_eq!(lp.backend(), backend);
    lp
}

// ---------------------------------------------------------------------------------------------
// Addresses and sockets

/// A temporary directory removed on drop (for Unix socket paths and files).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("sl-{tag}-{}-{n}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where a listener of some family can be reached (keeps a Unix socket's directory alive).
pub struct Endpoint {
    pub addr: SockAddr,
    pub family: Family,
    _dir: Option<TempDir>,
}

impl Endpoint {
    /// The same address for another thread; the original must outlive it (it keeps a Unix
    /// socket's directory).
    pub fn detached(&self) -> Endpoint {
        Endpoint { addr: self.addr.clone(), family: self.family, _dir: None }
    }
}

fn fresh_addr(family: Family) -> (SockAddr, Option<TempDir>) {
    match family {
        Family::V4 => ("127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into(), None),
        Family::V6 => ("[::1]:0".parse::<std::net::SocketAddr>().unwrap().into(), None),
        Family::Unix => {
            let dir = TempDir::new("unix");
            (SockAddr::unix(dir.path("s.sock")).unwrap(), Some(dir))
        }
    }
}

/// A loop-side listening channel of `family` and where to reach it.
pub fn listener_channel(family: Family) -> (Channel, Endpoint) {
    let (addr, dir) = fresh_addr(family);
    let mut ch = Channel::create_socket(family.domain(), Type::STREAM).unwrap();
    if family.is_inet() {
        ch.set_reuse_addr().unwrap();
    }
    ch.bind(&addr).unwrap();
    ch.listen(128).unwrap();
    let addr = if family.is_inet() { ch.local_addr().unwrap() } else { addr };
    (ch, Endpoint { addr, family, _dir: dir })
}

/// A blocking listener for a peer outside the loop.
pub fn std_listener(family: Family) -> (Socket, Endpoint) {
    let (addr, dir) = fresh_addr(family);
    let s = Socket::new(family.domain(), Type::STREAM, None).unwrap();
    s.bind(&addr).unwrap();
    s.listen(128).unwrap();
    let addr = if family.is_inet() { s.local_addr().unwrap() } else { addr };
    (s, Endpoint { addr, family, _dir: dir })
}

fn with_timeouts(s: Socket) -> Socket {
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.set_write_timeout(Some(DEADLINE)).unwrap();
    s
}

/// A blocking peer connected to `ep` (reads and writes time out after [`DEADLINE`]).
pub fn peer_connect(ep: &Endpoint) -> Socket {
    let s = Socket::new(ep.family.domain(), Type::STREAM, None).unwrap();
    s.connect(&ep.addr).unwrap();
    with_timeouts(s)
}

/// A connected pair: `(ours, peer)`. Wrap `ours` in a channel; `peer` is blocking with
/// timeouts.
pub fn connected_pair(family: Family) -> (Socket, Socket) {
    let (l, ep) = std_listener(family);
    let peer = peer_connect(&ep);
    let (ours, _) = l.accept().unwrap();
    (ours, peer)
}

/// A channel that starts a non-blocking connect to `ep`.
pub fn connecting_channel(ep: &Endpoint) -> Channel {
    let mut ch = Channel::create_socket(ep.family.domain(), Type::STREAM).unwrap();
    ch.connect(&ep.addr).unwrap();
    assert!(ch.connecting());
    ch
}

/// Resets a TCP connection on drop: SO_LINGER 0.
pub fn reset(s: Socket) {
    s.set_linger(Some(Duration::ZERO)).unwrap();
    drop(s);
}

/// Reads until end of stream (or until the read times out, which fails the test).
pub fn read_to_end(mut s: &Socket) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return out,
            Err(e) => panic!("peer read failed after {} bytes: {e}", out.len()),
        }
    }
}

/// Reads exactly `n` bytes.
pub fn read_exact(mut s: &Socket, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    s.read_exact(&mut out).unwrap_or_else(|e| panic!("read_exact({n}): {e}"));
    out
}

pub fn write_all(mut s: &Socket, data: &[u8]) {
    s.write_all(data).unwrap_or_else(|e| panic!("write_all({}): {e}", data.len()));
}

// ---------------------------------------------------------------------------------------------
// Waiting with deadlines

/// Waits (outside a loop) until `cond` holds, failing after `deadline`.
pub fn wait_until(deadline: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    let mut pause = Duration::from_micros(100);
    while !cond() {
        assert!(Instant::now() < end, "timed out after {deadline:?} waiting for {what}");
        std::thread::sleep(pause); // a poll interval of a condition with a deadline
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Drives `lp` in passes of at most 10 ms until `cond` holds, failing after [`DEADLINE`].
pub fn drive(lp: &mut Loop, what: &str, mut cond: impl FnMut(&mut Loop) -> bool) {
    let end = Instant::now() + DEADLINE;
    while !cond(lp) {
        assert!(Instant::now() < end, "timed out after {DEADLINE:?} waiting for {what}");
        lp.poll(Some(Duration::from_millis(10))).expect("poll");
    }
}

/// Drives `lp` until the thread `h` finishes, then returns its result.
pub fn drive_join<T>(lp: &mut Loop, what: &str, h: JoinHandle<T>) -> T {
    drive(lp, what, |_| h.is_finished());
    match h.join() {
        Ok(v) => v,
        Err(p) => resume_unwind(p),
    }
}

/// Asserts that nothing spins: with nothing to do, five 40 ms passes take about 200 ms. A loop
/// that keeps waking (a level-triggered condition nobody clears) returns from them at once.
pub fn assert_quiet(lp: &mut Loop) {
    let t0 = Instant::now();
    for _ in 0..5 {
        lp.poll(Some(Duration::from_millis(40))).expect("poll");
    }
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(150), "the loop is spinning: five idle passes took {took:?}");
}

// ---------------------------------------------------------------------------------------------
// A dispatcher that counts

/// What a [`Probe`] saw. Shared with the test through an `Rc`.
#[derive(Default)]
pub struct Counts {
    pub read: Cell<u32>,
    pub write: Cell<u32>,
    pub expt: Cell<u32>,
    pub connect: Cell<u32>,
    pub accept: Cell<u32>,
    pub close: Cell<u32>,
    pub error: Cell<u32>,
    pub errors: RefCell<Vec<io::Error>>,
    pub data: RefCell<Vec<u8>>,
    pub oob: RefCell<Vec<u8>>,
    pub accepted: RefCell<Vec<(Socket, SockAddr)>>,
}

impl Counts {
    pub fn new() -> Rc<Counts> {
        Rc::new(Counts::default())
    }

    fn bump(c: &Cell<u32>) {
        c.set(c.get() + 1);
    }

    /// `[read, write, expt, connect, accept, close, error]`.
    pub fn all(&self) -> [u32; 7] {
        [
            self.read.get(),
            self.write.get(),
            self.expt.get(),
            self.connect.get(),
            self.accept.get(),
            self.close.get(),
            self.error.get(),
        ]
    }

    pub fn first_error_kind(&self) -> Option<io::ErrorKind> {
        self.errors.borrow().first().map(|e| e.kind())
    }
}

/// Which handler a [`Probe`] makes fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Fail {
    #[default]
    Nothing,
    Read,
    Write,
    Expt,
    /// `handle_read` panics.
    PanicRead,
}

/// A dispatcher that counts its handler calls. `handle_read` reads into `data`,
/// `handle_expt` reads the urgent byte into `oob`, `handle_accept` accepts into `accepted`,
/// `handle_close` and `handle_error` close.
pub struct Probe {
    pub c: Rc<Counts>,
    pub readable: bool,
    pub writable: bool,
    pub fail: Fail,
    /// `handle_read` calls `cx.lp.stop()` (asyncore's ExitNow).
    pub stop_on_read: bool,
    /// What `urgent_data()` answers (false lets io_uring receive for a TCP channel on the ring).
    pub urgent: bool,
}

impl Probe {
    pub fn new(c: &Rc<Counts>) -> Probe {
        Probe {
            c: c.clone(),
            readable: true,
            writable: false,
            fail: Fail::Nothing,
            stop_on_read: false,
            urgent: true,
        }
    }

    /// A probe that needs no urgent data, so io_uring's stream mode takes its TCP channel too.
    pub fn stream(c: &Rc<Counts>) -> Probe {
        Probe { urgent: false, ..Probe::new(c) }
    }

    pub fn rw(c: &Rc<Counts>, readable: bool, writable: bool) -> Probe {
        Probe { readable, writable, ..Probe::new(c) }
    }

    pub fn failing(c: &Rc<Counts>, fail: Fail) -> Probe {
        Probe { fail, ..Probe::new(c) }
    }
}

pub fn boom(what: &str) -> io::Error {
    io::Error::other(format!("{what} failed on purpose"))
}

impl Dispatcher for Probe {
    fn readable(&self) -> bool {
        self.readable
    }
    fn writable(&self) -> bool {
        self.writable
    }
    fn urgent_data(&self) -> bool {
        self.urgent
    }
    fn handle_read(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        Counts::bump(&self.c.read);
        if self.stop_on_read {
            cx.lp.stop();
        }
        match self.fail {
            Fail::Read => return Err(boom("handle_read")),
            Fail::PanicRead => panic!("handle_read panicked on purpose"),
            _ => {}
        }
        let n = cx.channel.recv(cx.scratch)?;
        self.c.data.borrow_mut().extend_from_slice(&cx.scratch[..n]);
        Ok(())
    }
    fn handle_write(&mut self, _cx: &mut Context<'_>) -> io::Result<()> {
        Counts::bump(&self.c.write);
        if self.fail == Fail::Write {
            return Err(boom("handle_write"));
        }
        Ok(())
    }
    fn handle_expt(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        Counts::bump(&self.c.expt);
        if self.fail == Fail::Expt {
            return Err(boom("handle_expt"));
        }
        let mut b = [0u8; 1];
        let n = cx.channel.recv_oob(&mut b)?;
        self.c.oob.borrow_mut().extend_from_slice(&b[..n]);
        Ok(())
    }
    fn handle_connect(&mut self, _cx: &mut Context<'_>) -> io::Result<()> {
        Counts::bump(&self.c.connect);
        Ok(())
    }
    fn handle_accept(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        Counts::bump(&self.c.accept);
        if let Some(pair) = cx.channel.accept()? {
            self.c.accepted.borrow_mut().push(pair);
        }
        Ok(())
    }
    fn handle_close(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        Counts::bump(&self.c.close);
        cx.channel.close();
        Ok(())
    }
    fn handle_error(&mut self, err: io::Error, cx: &mut Context<'_>) {
        Counts::bump(&self.c.error);
        self.c.errors.borrow_mut().push(err);
        cx.channel.close();
    }
}

// ---------------------------------------------------------------------------------------------
// An in-process echo server (the seed's, with a half-close sending everything owed)

/// What the echo server saw.
#[derive(Default)]
pub struct EchoStats {
    pub accepted: Cell<u32>,
    pub closed: Cell<u32>,
    pub errors: RefCell<Vec<io::Error>>,
    pub bytes: Cell<u64>,
}

/// One echo connection; a read containing `boom` makes it fail (`Err`), `panic` makes it panic.
pub struct EchoConn {
    pub stats: Rc<EchoStats>,
}

impl Dispatcher for EchoConn {
    fn writable(&self) -> bool {
        false
    }
    fn handle_read(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let n = cx.channel.recv(cx.scratch)?;
        let data = &cx.scratch[..n];
        if data.windows(4).any(|w| w == b"boom") {
            return Err(boom("echo"));
        }
        if data.windows(5).any(|w| w == b"panic") {
            panic!("echo handler panicked on purpose");
        }
        self.stats.bytes.set(self.stats.bytes.get() + n as u64);
        cx.channel.send_all(data)
    }
    fn handle_close(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        self.stats.closed.set(self.stats.closed.get() + 1);
        cx.channel.close_when_done();
        Ok(())
    }
    fn handle_error(&mut self, err: io::Error, cx: &mut Context<'_>) {
        self.stats.errors.borrow_mut().push(err);
        cx.channel.close();
    }
}

pub struct EchoServer {
    pub stats: Rc<EchoStats>,
}

impl Dispatcher for EchoServer {
    fn writable(&self) -> bool {
        false
    }
    fn handle_accepted(&mut self, sock: Socket, _addr: SockAddr, cx: &mut Context<'_>) -> io::Result<()> {
        self.stats.accepted.set(self.stats.accepted.get() + 1);
        cx.lp.add(Channel::from(sock), EchoConn { stats: self.stats.clone() })?;
        Ok(())
    }
    fn handle_error(&mut self, err: io::Error, _cx: &mut Context<'_>) {
        // The listener must survive anything a client does: record, keep listening.
        self.stats.errors.borrow_mut().push(err);
    }
}

/// An echo server in `lp`; returns its endpoint and stats.
pub fn echo_server(lp: &mut Loop, family: Family) -> (Endpoint, Rc<EchoStats>) {
    let (ch, ep) = listener_channel(family);
    let stats = Rc::new(EchoStats::default());
    lp.add(ch, EchoServer { stats: stats.clone() }).unwrap();
    (ep, stats)
}

// ---------------------------------------------------------------------------------------------
// Deterministic pseudo-random data (no rand crate)

/// splitmix64.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

// ---------------------------------------------------------------------------------------------
// Log capture

struct Capture;

type Record = (ThreadId, log::Level, String, String);

fn records() -> &'static Mutex<Vec<Record>> {
    static R: OnceLock<Mutex<Vec<Record>>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(Vec::new()))
}

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, r: &log::Record<'_>) {
        let rec = (std::thread::current().id(), r.level(), r.target().to_string(), r.args().to_string());
        records().lock().unwrap_or_else(|e| e.into_inner()).push(rec);
    }
    fn flush(&self) {}
}

/// Installs the capturing logger (once per test binary).
pub fn capture_logs() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        log::set_logger(&Capture).expect("no other logger");
        log::set_max_level(log::LevelFilter::Trace);
    });
}

/// `(level, target, message)` of every record logged on this thread so far.
pub fn my_logs() -> Vec<(log::Level, String, String)> {
    let me = std::thread::current().id();
    records()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|r| r.0 == me)
        .map(|r| (r.1, r.2.clone(), r.3.clone()))
        .collect()
}

/// Whether this thread logged a record at `level` containing `needle`.
pub fn logged(level: log::Level, needle: &str) -> bool {
    my_logs().iter().any(|(l, _, m)| *l == level && m.contains(needle))
}

/// Forgets this thread's records.
pub fn clear_my_logs() {
    let me = std::thread::current().id();
    records().lock().unwrap_or_else(|e| e.into_inner()).retain(|r| r.0 != me);
}

// ---------------------------------------------------------------------------------------------
// Child processes

/// Kills and reaps its child on drop.
/// A blocking TCP client of a test server: read and write timeouts at [`DEADLINE`], Nagle off.
pub fn tcp_client(addr: std::net::SocketAddr) -> std::net::TcpStream {
    let s = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.set_write_timeout(Some(DEADLINE)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Sends SIGTERM to the guarded child.
pub fn sigterm(guard: &mut ChildGuard) {
    let pid = rustix::process::Pid::from_child(guard.child());
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
}

pub struct ChildGuard(pub Option<std::process::Child>);

impl ChildGuard {
    pub fn child(&mut self) -> &mut std::process::Child {
        self.0.as_mut().expect("child present")
    }

    /// Waits for the child to exit within `deadline`.
    pub fn wait_exit(&mut self, deadline: Duration) -> std::process::ExitStatus {
        let mut status = None;
        wait_until(deadline, "the child to exit", || {
            status = self.child().try_wait().expect("try_wait");
            status.is_some()
        });
        status.unwrap()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A built example: `.../<profile>/deps/<test>` -> `.../<profile>/examples/<name>`.
pub fn example_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe.parent().and_then(|d| d.parent()).expect("target/<profile>/deps/<test>");
    let path = profile_dir.join("examples").join(name);
    if !path.exists() {
        // `cargo test` builds the examples; `cargo test --tests` or `--test x` may not have.
        build_examples(profile_dir);
    }
    assert!(path.exists(), "example {name} not built at {} (cargo test builds examples)", path.display());
    path
}

/// Builds the examples for the profile whose output directory is `profile_dir`, once.
fn build_examples(profile_dir: &std::path::Path) {
    static BUILT: Mutex<bool> = Mutex::new(false);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if *built {
        return;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.args(["build", "--examples", "--all-features", "--manifest-path"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("run cargo build --examples");
    assert!(status.success(), "cargo build --examples failed");
    *built = true;
}

/// Reads one line from `r` within `deadline` (on a helper thread), returning the line and the
/// reader for further use.
pub fn read_line_within<R: io::BufRead + Send + 'static>(mut r: R, deadline: Duration) -> (String, R) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let res = r.read_line(&mut line);
        let _ = tx.send((res, line, r));
    });
    match rx.recv_timeout(deadline) {
        Ok((Ok(_), line, r)) => (line, r),
        Ok((Err(e), _, _)) => panic!("reading a line: {e}"),
        Err(_) => panic!("no line within {deadline:?}"),
    }
}

/// Raises this process's soft RLIMIT_NOFILE to `want` (or the hard limit); returns the new soft
/// limit.
pub fn raise_nofile(want: u64) -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let cur = getrlimit(Resource::Nofile);
    let hard = cur.maximum.unwrap_or(u64::MAX);
    let soft = want.min(hard);
    if cur.current.is_some_and(|c| c >= soft) {
        return cur.current.unwrap();
    }
    setrlimit(Resource::Nofile, Rlimit { current: Some(soft), maximum: cur.maximum }).expect("setrlimit");
    soft
}

/// User plus system CPU time of a process, in clock ticks (/proc/PID/stat fields 14 and 15).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    let after_comm = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // after_comm starts at field 3 (state): utime is field 14, stime field 15.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Starts echo_server on `backend` with a free port; returns the guard, its address and its
/// stdout (after the `listening on` line).
pub fn start_echo_server(
    backend: Backend,
    extra: &[&str],
) -> (ChildGuard, SocketAddr, BufReader<std::process::ChildStdout>) {
    let mut cmd = Command::new(example_path("echo_server"));
    cmd.args(["--bind", "127.0.0.1:0", "--quiet", "--backend", backend.name()]).args(extra);
    let mut guard =
        ChildGuard(Some(cmd.stdout(Stdio::piped()).stdin(Stdio::null()).spawn().expect("spawn echo_server")));
    let stdout = BufReader::new(guard.child().stdout.take().unwrap());
    let (line, stdout) = read_line_within(stdout, DEADLINE);
    let addr = line
        .strip_prefix("listening on ")
        .and_then(|a| a.trim_end().parse::<SocketAddr>().ok())
        .unwrap_or_else(|| panic!("first line should be `listening on HOST:PORT`, got {line:?}"));
    assert_eq!(line, format!("listening on {addr}\n"), "exactly that line");
    assert_ne!(addr.port(), 0, "the real port, not 0");
    (guard, addr, stdout)
}

// ---------------------------------------------------------------------------------------------
// Sending a lot through a channel that never reads (the io_uring send path's tests)

/// `n` bytes of a pattern whose period (251) is prime to every buffer size, shifted by `seed`,
/// so a lost, doubled or reordered chunk shows up at the first byte that differs.
pub fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| ((i % 251) as u8).wrapping_add(seed)).collect()
}

/// What a [`Pump`] saw, shared with the test.
#[derive(Default)]
pub struct Pumped {
    /// Bytes `send` accepted so far.
    pub accepted: Cell<usize>,
    /// Times `send` took nothing (a full socket).
    pub refused: Cell<u32>,
    /// Write events.
    pub writes: Cell<u32>,
    /// The channel's state when `handle_close` ran.
    pub closed: Cell<Option<State>>,
    pub errors: RefCell<Vec<io::Error>>,
}

/// Sends `data` with plain `send` calls (asyncore's way: what the socket takes now) from
/// `handle_write`, as long as it has more; never reads.
pub struct Pump {
    data: Vec<u8>,
    seen: Rc<Pumped>,
}

impl Pump {
    pub fn new(data: Vec<u8>) -> (Pump, Rc<Pumped>) {
        let seen = Rc::new(Pumped::default());
        (Pump { data, seen: seen.clone() }, seen)
    }
}

impl Dispatcher for Pump {
    fn readable(&self) -> bool {
        false
    }
    fn writable(&self) -> bool {
        self.seen.accepted.get() < self.data.len()
    }
    fn urgent_data(&self) -> bool {
        false // so a TCP channel is in stream mode on io_uring too
    }
    fn handle_write(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        self.seen.writes.set(self.seen.writes.get() + 1);
        loop {
            let at = self.seen.accepted.get();
            if at == self.data.len() {
                return Ok(());
            }
            let end = (at + (48 << 10)).min(self.data.len());
            let n = cx.channel.send(&self.data[at..end])?;
            if n == 0 {
                self.seen.refused.set(self.seen.refused.get() + 1);
                return Ok(());
            }
            self.seen.accepted.set(at + n);
        }
    }
    fn handle_close(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        self.seen.closed.set(Some(cx.channel.state()));
        cx.channel.close();
        Ok(())
    }
    fn handle_error(&mut self, err: io::Error, cx: &mut Context<'_>) {
        self.seen.errors.borrow_mut().push(err);
        cx.channel.close();
    }
}
