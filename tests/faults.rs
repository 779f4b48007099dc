//! Faults the loop must survive (issue 5), over every backend: stale events after descriptor
//! reuse, SIGPIPE, backpressure and the output limits, descriptor exhaustion on accept.

mod support;

use sockloop::{Backend, Channel, Context, Dispatcher, Loop, RunOptions, Token};
use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::{Duration, Instant};
use support::{cpu_ticks, example_path};

const LONG: Duration = Duration::from_secs(20);

/// Counts reads; on its first read closes `victim` and adds a fresh channel, which is likely
/// to get the victim's descriptor number and slab slot in the same pass.
struct Closer {
    victim: Rc<Cell<Option<Token>>>,
    newcomer: Rc<RefCell<Option<(Token, UnixStream)>>>,
    victim_fd: i32,
    reused_fd: Rc<Cell<bool>>,
}

struct Counter {
    reads: Rc<Cell<u32>>,
}

impl Dispatcher for Counter {
    fn writable(&self) -> bool {
        false
    }
    fn handle_read(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        self.reads.set(self.reads.get() + 1);
        let mut buf = [0u8; 16];
        cx.channel.recv(&mut buf)?;
        Ok(())
    }
}

impl Dispatcher for Closer {
    fn writable(&self) -> bool {
        false
    }
    fn handle_read(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let mut buf = [0u8; 16];
        cx.channel.recv(&mut buf)?;
        if let Some(victim) = self.victim.take() {
            assert!(cx.lp.close_channel(victim));
            let (mine, peer) = UnixStream::pair()?;
            self.reused_fd.set(mine.as_raw_fd() == self.victim_fd || peer.as_raw_fd() == self.victim_fd);
            let reads = Rc::new(Cell::new(0));
            let t = cx.lp.add(Channel::from(mine), Counter { reads })?;
            *self.newcomer.borrow_mut() = Some((t, peer));
        }
        Ok(())
    }
}

fn a_channel_closed_mid_pass_never_passes_its_event_to_a_newcomer(backend: Backend) {
    // cpython issue 75114: asyncore delivered the closed channel's event to the new one.
    let mut lp = Loop::with_backend(backend).unwrap();
    let (mut a, mut a_peer) = UnixStream::pair().unwrap();
    let (mut b, mut b_peer) = UnixStream::pair().unwrap();
    if b.as_raw_fd() < a.as_raw_fd() {
        // Tests run in parallel threads sharing one descriptor table: another test's close can
        // hand B a lower number than A. A must be the lower (select reports by number).
        std::mem::swap(&mut a, &mut b);
        std::mem::swap(&mut a_peer, &mut b_peer);
    }
    let victim = Rc::new(Cell::new(None));
    let newcomer = Rc::new(RefCell::new(None));
    let reused = Rc::new(Cell::new(false));
    let b_fd = b.as_raw_fd();
    lp.add(
        Channel::from(a),
        Closer {
            victim: victim.clone(),
            newcomer: newcomer.clone(),
            victim_fd: b_fd,
            reused_fd: reused.clone(),
        },
    )
    .unwrap();
    let victim_reads = Rc::new(Cell::new(0));
    victim.set(Some(lp.add(Channel::from(b), Counter { reads: victim_reads.clone() }).unwrap()));
    // Both ready before the pass: A is reported first (lower fd, readied first).
    a_peer.write_all(b"a").unwrap();
    b_peer.write_all(b"b").unwrap();
    lp.run_with(RunOptions::new().timeout(LONG).count(1)).unwrap();
    assert_eq!(victim_reads.get(), 0, "{backend:?}: the closed channel still got its event");
    let (t, _peer) = newcomer.borrow_mut().take().expect("the closer ran");
    // The newcomer has no data: any read it saw in this pass was the victim's event.
    let reads = lp.get_mut::<Counter>(t).unwrap().0.reads.get();
    assert_eq!(reads, 0, "{backend:?}: stale event delivered (fd reused: {})", reused.get());
}

/// Runs the SIGPIPE scenario in a child process of this test binary with SIGPIPE at its
/// default action (the test harness ignores it, which would hide a missing MSG_NOSIGNAL).
fn writing_to_a_closed_peer_never_raises_sigpipe(backend: Backend) {
    if std::env::var_os("SOCKLOOP_SIGPIPE_CHILD").is_some() {
        sigpipe_child(backend);
        return;
    }
    let me = format!("writing_to_a_closed_peer_never_raises_sigpipe::{}", backend.name());
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", &me, "--nocapture", "--test-threads=1"])
        .env("SOCKLOOP_SIGPIPE_CHILD", "1")
        .status()
        .unwrap();
    assert!(status.success(), "child died: {status:?}");
}

fn sigpipe_child(backend: Backend) {
    // SAFETY: restores the default disposition of SIGPIPE in this single-purpose child process
    // before any other thread of it uses signals; no handler code is involved.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    struct Writer {
        closes: Rc<Cell<u32>>,
    }
    impl Dispatcher for Writer {
        fn writable(&self) -> bool {
            false
        }
        fn handle_close(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
            self.closes.set(self.closes.get() + 1);
            cx.channel.close();
            Ok(())
        }
    }
    // A pipe has no MSG_NOSIGNAL: the file channel must get SIGPIPE ignored.
    {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut ch = sockloop::file_dispatcher(&writer).unwrap();
        drop(writer);
        ch.send_all(b"into a pipe nobody reads").unwrap(); // EPIPE, not SIGPIPE
        assert!(ch.peer_closed());
    }
    let mut lp = Loop::with_backend(backend).unwrap();
    let (a, b) = UnixStream::pair().unwrap();
    drop(b);
    let mut ch = Channel::from(a);
    ch.send_all(b"into the void").unwrap(); // EPIPE, not SIGPIPE: handle_close is due
    let closes = Rc::new(Cell::new(0));
    lp.add(ch, Writer { closes: closes.clone() }).unwrap();
    lp.run_with(RunOptions::new().timeout(LONG).count(5)).unwrap();
    assert_eq!(closes.get(), 1, "{backend:?}");
    assert!(lp.is_empty());
}

/// Echoes into the channel's buffer; never closes for slowness.
struct Echo;
impl Dispatcher for Echo {
    fn writable(&self) -> bool {
        false
    }
    fn handle_read(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let n = cx.channel.recv(cx.scratch)?;
        cx.channel.send_all(&cx.scratch[..n])
    }
}

fn a_peer_that_never_reads_is_held_back_by_the_soft_limit_and_others_are_served(backend: Backend) {
    let mut lp = Loop::with_backend(backend).unwrap();
    let soft = 256 * 1024;
    let (slow, slow_peer) = UnixStream::pair().unwrap();
    let mut ch = Channel::from(slow);
    ch.set_output_limits(soft, usize::MAX);
    let slow_t = lp.add(ch, Echo).unwrap();
    let (fast, mut fast_peer) = UnixStream::pair().unwrap();
    lp.add(Channel::from(fast), Echo).unwrap();
    // The slow peer writes 32 MiB and reads nothing; its writes block once the loop stops
    // reading from it, which is the backpressure.
    let writer = std::thread::spawn(move || {
        let mut s = slow_peer;
        s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
        let chunk = vec![1u8; 64 * 1024];
        let mut sent = 0usize;
        while sent < 32 << 20 {
            match s.write(&chunk) {
                Ok(n) => sent += n,
                Err(_) => break, // blocked for 2 s: the server stopped reading
            }
        }
        (sent, s)
    });
    let mut max_pending = 0;
    let deadline = Instant::now() + LONG;
    while !writer.is_finished() && Instant::now() < deadline {
        lp.poll(Some(Duration::from_millis(20))).unwrap();
        max_pending = max_pending.max(lp.channel_mut(slow_t).unwrap().pending_output());
    }
    let (sent, _keep_open) = writer.join().unwrap();
    assert!(sent < 32 << 20, "{backend:?}: the loop never stopped reading");
    // Bounded: the soft limit plus at most one read's worth.
    assert!(max_pending <= soft + sockloop::event_loop::SCRATCH_SIZE, "{backend:?}: {max_pending}");
    // The other client is served promptly meanwhile.
    fast_peer.write_all(b"ping").unwrap();
    fast_peer.set_nonblocking(true).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + LONG;
    while got.len() < 4 && Instant::now() < deadline {
        lp.poll(Some(Duration::from_millis(20))).unwrap();
        let mut buf = [0u8; 16];
        if let Ok(n) = fast_peer.read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
    }
    assert_eq!(got, b"ping", "{backend:?}");
}

fn output_past_the_hard_limit_fails_the_channel_with_a_clear_error(backend: Backend) {
    struct Flood {
        errors: Rc<RefCell<Vec<io::ErrorKind>>>,
    }
    impl Dispatcher for Flood {
        fn readable(&self) -> bool {
            false
        }
        fn writable(&self) -> bool {
            false
        }
        fn handle_timeout(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
            // Output this channel cannot stop producing (a broadcast), 1 MiB per tick.
            cx.channel.send_all(&vec![0u8; 1 << 20])?;
            cx.lp.set_timeout(cx.token(), Duration::ZERO);
            Ok(())
        }
        fn handle_error(&mut self, err: io::Error, cx: &mut Context<'_>) {
            self.errors.borrow_mut().push(err.kind());
            cx.channel.close();
        }
    }
    let mut lp = Loop::with_backend(backend).unwrap();
    let (a, _never_reads) = UnixStream::pair().unwrap();
    let mut ch = Channel::from(a);
    ch.set_output_limits(1 << 20, 4 << 20);
    let errors = Rc::new(RefCell::new(Vec::new()));
    let t = lp.add(ch, Flood { errors: errors.clone() }).unwrap();
    // An idle timeout of zero delivers the first tick to the channel's handle_timeout.
    assert!(lp.set_idle_timeout(t, Some(Duration::ZERO)));
    lp.run_with(RunOptions::new().timeout(LONG).count(200)).unwrap();
    assert!(!lp.contains(t), "{backend:?}: still open");
    assert_eq!(*errors.borrow(), vec![io::ErrorKind::OutOfMemory], "{backend:?}");
}

/// The echo_server example, started under `prlimit` with few descriptors.
struct Server {
    child: std::process::Child,
    addr: std::net::SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_limited_echo(nofile: u32, backend: Backend) -> Server {
    use std::io::BufRead;
    let mut child = std::process::Command::new("prlimit")
        .arg(format!("--nofile={nofile}:{nofile}"))
        .arg(example_path("echo_server"))
        .args(["--bind", "127.0.0.1:0", "--quiet", "--backend", backend.name()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("prlimit (util-linux) and the echo_server example");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr =
        line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("{line:?}")).parse().unwrap();
    Server { child, addr }
}

fn echo_once(s: &mut std::net::TcpStream, msg: &[u8]) -> io::Result<()> {
    s.write_all(msg)?;
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got)?;
    assert_eq!(got, msg);
    Ok(())
}

fn out_of_descriptors_on_accept_rests_instead_of_spinning_and_recovers(backend: Backend) {
    // ~10 descriptors are the server's own (stdio, listener, epoll, signal pipe, ...).
    let server = start_limited_echo(32, backend);
    let mut clients = Vec::new();
    // Connect more clients than the server can accept; the kernel completes the
    // handshakes into the backlog.
    for _ in 0..40 {
        let s = std::net::TcpStream::connect(server.addr).unwrap();
        s.set_read_timeout(Some(LONG)).unwrap();
        clients.push(s);
    }
    // The first ones are served...
    echo_once(&mut clients[0], b"first").unwrap();
    // ...while the server is out of descriptors it must not spin: watch its CPU time over
    // a window of wall time (a spinning loop burns the whole window).
    let ticks_per_sec = 100; // USER_HZ on Linux
    let before = cpu_ticks(server.child.id());
    let window = Instant::now();
    // The last client cannot be accepted yet: its echo stays unanswered for the window.
    clients[39].set_read_timeout(Some(Duration::from_millis(1500))).unwrap();
    assert!(echo_once(&mut clients[39], b"late").is_err(), "{backend:?}: accepted past the limit?");
    let used = cpu_ticks(server.child.id()) - before;
    let wall = window.elapsed().as_secs_f64();
    assert!(
        (used as f64 / ticks_per_sec as f64) < wall * 0.5,
        "{backend:?}: server used {used} ticks in {wall:.2} s: spinning"
    );
    // Free descriptors: close early clients; the waiting ones are accepted and served.
    clients.drain(..20);
    let last = clients.last_mut().unwrap();
    last.set_read_timeout(Some(LONG)).unwrap();
    let mut got = vec![0u8; 4];
    last.read_exact(&mut got).unwrap(); // the "late" bytes, echoed once accepted
    assert_eq!(&got, b"late", "{backend:?}");
    echo_once(last, b"again").unwrap();
}

backend_tests!(
    a_channel_closed_mid_pass_never_passes_its_event_to_a_newcomer,
    writing_to_a_closed_peer_never_raises_sigpipe,
    a_peer_that_never_reads_is_held_back_by_the_soft_limit_and_others_are_served,
    output_past_the_hard_limit_fails_the_channel_with_a_clear_error,
    out_of_descriptors_on_accept_rests_instead_of_spinning_and_recovers
);
