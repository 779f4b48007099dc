//! CONFORMANCE "asyncore": dispatch of raw events, the map and the loop, and the dispatcher's
//! handlers, each over select, poll and epoll and (where it applies) IPv4, IPv6 and Unix.
//!
//! Not tested, because Rust rules them out:
//! - test_readwrite's POLLNVAL (`handle_close` for an invalid descriptor) needs the descriptor
//!   closed behind the loop's back; the channel owns it (`OwnedFd`), so safe code cannot.
//! - test_readwrite's dummy objects with only `handle_*_event` methods: every map entry is a
//!   `Channel` plus a `Dispatcher`; there is no untyped object to pass.

mod support;

use sockloop::{default_map, Backend, Channel, Context, Dispatcher, Domain, HandlerPanic, RunOptions, Type};
use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};
use support::*;

/// One pass with a 10 ms cap, several times: enough for already-queued readiness.
fn passes(lp: &mut sockloop::Loop, n: usize) {
    for _ in 0..n {
        lp.poll(Some(Duration::from_millis(10))).unwrap();
    }
}

// CPython test_asyncore.py HelperFunctionTests.test_readwrite (read flag): read-ready calls
// handle_read and nothing else.
fn readwrite_read_flag(backend: Backend) {
    each_family(&Family::ALL, |family| {
        let mut lp = new_loop(backend);
        let (ours, peer) = connected_pair(family);
        let c = Counts::new();
        let t = lp.add(Channel::from(ours), Probe::rw(&c, true, false)).unwrap();
        write_all(&peer, b"x");
        drive(&mut lp, "handle_read", |_| c.read.get() > 0);
        passes(&mut lp, 3);
        assert_eq!(c.all(), [1, 0, 0, 0, 0, 0, 0], "[read, write, expt, connect, accept, close, error]");
        assert_eq!(&*c.data.borrow(), b"x");
        assert!(lp.contains(t));
    });
}

// CPython test_readwrite (write flag): write-ready calls handle_write and nothing else.
fn readwrite_write_flag(backend: Backend) {
    each_family(&Family::ALL, |family| {
        let mut lp = new_loop(backend);
        let (ours, _peer) = connected_pair(family);
        let c = Counts::new();
        lp.add(Channel::from(ours), Probe::rw(&c, false, true)).unwrap();
        lp.poll(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(c.all(), [0, 1, 0, 0, 0, 0, 0], "one pass, one write event");
    });
}

// CPython test_readwrite (POLLPRI flag): urgent data calls handle_expt and nothing else (TCP
// only: Unix sockets have no out-of-band data).
fn readwrite_priority_flag(backend: Backend) {
    each_family(&Family::INET, |family| {
        let mut lp = new_loop(backend);
        let (ours, peer) = connected_pair(family);
        let c = Counts::new();
        lp.add(Channel::from(ours), Probe::rw(&c, true, false)).unwrap();
        peer.send_out_of_band(b"!").unwrap();
        drive(&mut lp, "handle_expt", |_| c.expt.get() > 0);
        passes(&mut lp, 3);
        assert_eq!(c.all(), [0, 0, 1, 0, 0, 0, 0], "[read, write, expt, connect, accept, close, error]");
        assert_eq!(&*c.oob.borrow(), b"!");
    });
}

// CPython test_readwrite (POLLHUP flag): a hang-up alone calls handle_close once. A stream
// socket that was never connected polls as hung up. select has no hang-up flag: it reports the
// socket readable, and the read path then finds the socket unusable and ends it once (close
// for TCP's ENOTCONN, error for a Unix socket's EINVAL), as asyncore's select path does.
fn readwrite_hangup_flag(backend: Backend) {
    each_family(&Family::ALL, |family| {
        let mut lp = new_loop(backend);
        let ch = Channel::create_socket(family.domain(), Type::STREAM).unwrap();
        let c = Counts::new();
        let t = lp.add(ch, Probe::rw(&c, true, false)).unwrap();
        drive(&mut lp, "the channel to end", |lp| !lp.contains(t));
        passes(&mut lp, 2);
        if backend == Backend::Select {
            assert_eq!(c.close.get() + c.error.get(), 1, "{:?}", c.all());
        } else {
            assert_eq!(c.all(), [0, 0, 0, 0, 0, 1, 0], "[read, write, expt, connect, accept, close, error]");
        }
    });
}

// CPython test_readwrite (POLLERR flag): an error alone calls handle_close once. A connected
// UDP socket that sent to a closed port gets ICMP port-unreachable: SO_ERROR set, POLLERR
// without POLLIN. select reports it readable; the read then fails with ECONNREFUSED, which is
// handle_error, as in asyncore's select path.
fn readwrite_error_flag(backend: Backend) {
    each_family(&Family::INET, |family| {
        let mut lp = new_loop(backend);
        let bind = if family == Family::V4 { "127.0.0.1:0" } else { "[::1]:0" };
        let closed = std::net::UdpSocket::bind(bind).unwrap();
        let closed_addr = closed.local_addr().unwrap();
        drop(closed);
        let udp = std::net::UdpSocket::bind(bind).unwrap();
        udp.connect(closed_addr).unwrap();
        let mut ch = Channel::from(udp);
        assert!(ch.connected());
        assert_eq!(ch.send(b"anyone?").unwrap(), 7);
        let c = Counts::new();
        let t = lp.add(ch, Probe::rw(&c, true, false)).unwrap();
        drive(&mut lp, "the channel to end", |lp| !lp.contains(t));
        if backend == Backend::Select {
            assert_eq!(c.all(), [1, 0, 0, 0, 0, 0, 1], "[read, write, expt, connect, accept, close, error]");
            assert_eq!(c.first_error_kind(), Some(io::ErrorKind::ConnectionRefused));
        } else {
            assert_eq!(c.all(), [0, 0, 0, 0, 0, 1, 0], "[read, write, expt, connect, accept, close, error]");
        }
    });
}

// CPython test_readwrite (POLLHUP|POLLERR from a peer's reset, which also reports POLLIN): the
// read path runs first and meets the reset, then handle_close, once; never handle_error.
fn readwrite_peer_reset(backend: Backend) {
    each_family(&Family::INET, |family| {
        let mut lp = new_loop(backend);
        let (ours, peer) = connected_pair(family);
        let c = Counts::new();
        let t = lp.add(Channel::from(ours), Probe::rw(&c, true, false)).unwrap();
        reset(peer);
        drive(&mut lp, "the channel to end", |lp| !lp.contains(t));
        passes(&mut lp, 2);
        assert_eq!(c.all(), [1, 0, 0, 0, 0, 1, 0], "[read, write, expt, connect, accept, close, error]");
        assert!(c.data.borrow().is_empty());
    });
}

// CPython test_readwrite: read and write readiness in one event call both paths, once each.
fn readwrite_read_and_write_flags(backend: Backend) {
    each_family(&Family::ALL, |family| {
        let mut lp = new_loop(backend);
        let (ours, peer) = connected_pair(family);
        write_all(&peer, b"both");
        let c = Counts::new();
        lp.add(Channel::from(ours), Probe::rw(&c, true, true)).unwrap();
        // Every pass has write readiness; the pass that also has the data calls both paths.
        let end = Instant::now() + DEADLINE;
        let mut n = 0;
        while c.read.get() == 0 {
            assert!(Instant::now() < end, "timed out waiting for handle_read");
            lp.poll(Some(Duration::from_millis(10))).unwrap();
            n += 1;
        }
        assert_eq!(c.all(), [1, n, 0, 0, 0, 0, 0], "[read, write, expt, connect, accept, close, error]");
        assert_eq!(&*c.data.borrow(), b"both");
    });
}

// CPython test_readwriteexc and test_readwrite (exception cases): an error returned from a
// handler reached through the read, write or exceptional path goes to handle_error, with that
// error.
fn readwriteexc(backend: Backend) {
    each_family(&Family::ALL, |family| {
        let paths: &[Fail] = if family.is_inet() {
            &[Fail::Read, Fail::Write, Fail::Expt]
        } else {
            &[Fail::Read, Fail::Write]
        };
        for &fail in paths {
            let mut lp = new_loop(backend);
            let (ours, peer) = connected_pair(family);
            let c = Counts::new();
            let probe = Probe { writable: fail == Fail::Write, ..Probe::failing(&c, fail) };
            let t = lp.add(Channel::from(ours), probe).unwrap();
            match fail {
                Fail::Read => write_all(&peer, b"data"),
                Fail::Expt => {
                    peer.send_out_of_band(b"!").unwrap();
                }
                _ => {}
            }
            drive(&mut lp, "handle_error", |_| c.error.get() > 0);
            assert_eq!(c.error.get(), 1, "{fail:?}");
            let errors = c.errors.borrow();
            let expected = match fail {
                Fail::Read => "handle_read failed on purpose",
                Fail::Write => "handle_write failed on purpose",
                _ => "handle_expt failed on purpose",
            };
            assert_eq!(errors[0].to_string(), expected);
            assert_eq!(c.close.get(), 0, "{fail:?}: handle_error, not handle_close");
            assert!(!lp.contains(t), "the probe's handle_error closed it");
        }
    });
}

// CPython test_readwriteexc (ExitNow): a deliberate stop from a handler ends the loop instead
// of reaching handle_error; the channel stays, and the loop can run again.
fn readwriteexc_exit_now(backend: Backend) {
    each_family(&Family::ALL, |family| {
        let mut lp = new_loop(backend);
        let (ours, peer) = connected_pair(family);
        let c = Counts::new();
        let probe = Probe { stop_on_read: true, ..Probe::new(&c) };
        let t = lp.add(Channel::from(ours), probe).unwrap();
        write_all(&peer, b"stop");
        let watchdog = Watchdog::start(&mut lp);
        let t0 = Instant::now();
        lp.run().unwrap(); // the map is never empty: only the stop ends this
        assert!(!watchdog.fired(), "run did not return on cx.lp.stop()");
        assert!(t0.elapsed() < DEADLINE);
        assert_eq!(c.all(), [1, 0, 0, 0, 0, 0, 0]);
        assert!(lp.contains(t));
        // Running again works: the next read stops it again.
        write_all(&peer, b"again");
        lp.run().unwrap();
        assert!(!watchdog.fired());
        assert_eq!(c.read.get(), 2);
        assert_eq!(&*c.data.borrow(), b"stopagain");
    });
}

/// Stops a loop from another thread after [`DEADLINE`] unless dropped first, so a `run` that
/// should return fails the test instead of hanging it.
struct Watchdog {
    done: Option<std::sync::mpsc::Sender<()>>,
    fired: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Watchdog {
    fn start(lp: &mut sockloop::Loop) -> Watchdog {
        let waker = lp.waker().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let fired = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let f = fired.clone();
        std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(DEADLINE) {
                f.store(true, std::sync::atomic::Ordering::SeqCst);
                let _ = waker.call_soon(|lp| lp.stop());
            }
        });
        Watchdog { done: Some(tx), fired }
    }

    fn fired(&self) -> bool {
        self.fired.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(tx) = self.done.take() {
            let _ = tx.send(());
        }
    }
}

// CONFORMANCE: with select, a readable socket also listed as exceptional gets handle_expt only
// for real OOB data (and every backend agrees).
fn expt_only_for_real_oob(backend: Backend) {
    each_family(&Family::ALL, |family| {
        let mut lp = new_loop(backend);
        let (ours, peer) = connected_pair(family);
        let c = Counts::new();
        lp.add(Channel::from(ours), Probe::new(&c)).unwrap();
        write_all(&peer, b"plain data");
        drive(&mut lp, "the plain data", |_| c.data.borrow().len() == 10);
        passes(&mut lp, 3);
        assert_eq!(c.expt.get(), 0, "plain data is not exceptional");
        if family.is_inet() {
            peer.send_out_of_band(b"U").unwrap();
            drive(&mut lp, "handle_expt", |_| c.expt.get() > 0);
            passes(&mut lp, 3);
            assert_eq!(c.expt.get(), 1);
            assert_eq!(&*c.oob.borrow(), b"U");
            assert_eq!(&*c.data.borrow(), b"plain data", "the urgent byte is not in the stream");
        }
        assert_eq!(c.error.get(), 0);
    });
}

// CPython test_closeall: close_all closes every channel of the map (the peers see end of
// stream), empties it, and calls no handler.
fn closeall(backend: Backend) {
    each_family(&Family::ALL, |family| {
        let mut lp = new_loop(backend);
        let c = Counts::new();
        let mut peers = Vec::new();
        for _ in 0..10 {
            let (ours, peer) = connected_pair(family);
            lp.add(Channel::from(ours), Probe::new(&c)).unwrap();
            peers.push(peer);
        }
        assert_eq!(lp.len(), 10);
        lp.close_all();
        assert!(lp.is_empty());
        for p in &peers {
            assert!(read_to_end(p).is_empty(), "peer sees end of stream");
        }
        assert_eq!(c.all(), [0; 7]);
        lp.poll(Some(Duration::ZERO)).unwrap();
    });
}

// CPython test_closeall_default: close_all without a map closes the (per-thread) default map.
// The default map is on Backend::Auto, so only the families vary.
#[test]
fn closeall_default() {
    for family in Family::ALL {
        let mut peers = Vec::new();
        for _ in 0..5 {
            let (ours, peer) = connected_pair(family);
            default_map::add(Channel::from(ours), sockloop::Ignore).unwrap();
            peers.push(peer);
        }
        assert_eq!(default_map::len(), 5);
        default_map::close_all();
        assert_eq!(default_map::len(), 0);
        for p in &peers {
            assert!(read_to_end(p).is_empty(), "{family:?}: peer sees end of stream");
        }
        default_map::run(RunOptions::new().count(1).timeout(Duration::ZERO)).unwrap();
    }
}

// CPython BaseTestAPI.loop_waiting_for_flag / asyncore.loop(count=...): `count` passes, then
// return.
fn loop_count(backend: Backend) {
    each_family(&Family::ALL, |family| {
        let mut lp = new_loop(backend);
        let (ours, _peer) = connected_pair(family);
        let c = Counts::new();
        lp.add(Channel::from(ours), Probe::rw(&c, false, true)).unwrap();
        lp.run_with(RunOptions::new().timeout(Duration::from_secs(10)).count(5)).unwrap();
        assert_eq!(c.write.get(), 5, "always writable: one handle_write per pass");
        assert_eq!(lp.len(), 1);
    });
}

// asyncore.loop(timeout=...): a pass with nothing ready returns after the timeout.
fn loop_timeout(backend: Backend) {
    each_family(&Family::ALL, |family| {
        let mut lp = new_loop(backend);
        let (ch, _ep) = listener_channel(family);
        let c = Counts::new();
        lp.add(ch, Probe::new(&c)).unwrap();
        let t0 = Instant::now();
        lp.run_with(RunOptions::new().timeout(Duration::from_millis(30)).count(3)).unwrap();
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(88), "3 idle passes of 30 ms took {took:?}");
        assert!(took < DEADLINE);
        assert_eq!(c.all(), [0; 7]);
    });
}

// asyncore.loop() without count: runs until the map is empty (closing the last channel ends
// it).
fn loop_until_map_empty(backend: Backend) {
    each_family(&Family::ALL, |family| {
        let mut lp = new_loop(backend);
        let c = Counts::new();
        let mut peers = Vec::new();
        for _ in 0..3 {
            let (ours, peer) = connected_pair(family);
            lp.add(Channel::from(ours), Probe::new(&c)).unwrap();
            peers.push(peer);
        }
        for (i, p) in peers.iter().enumerate() {
            write_all(p, format!("bye{i}").as_bytes());
        }
        drop(peers);
        let watchdog = Watchdog::start(&mut lp);
        lp.run().unwrap();
        assert!(!watchdog.fired(), "run did not return when the map emptied");
        assert!(lp.is_empty());
        assert_eq!(c.close.get(), 3);
        assert_eq!(c.data.borrow().len(), 12);
    });
}

/// A failing handler that keeps the seed's default `handle_error`.
struct Failing(&'static str);

impl Dispatcher for Failing {
    fn writable(&self) -> bool {
        false
    }
    fn handle_read(&mut self, _cx: &mut Context<'_>) -> io::Result<()> {
        if self.0 == "panic" {
            panic!("Failing panicked: {}", self.0);
        }
        Err(io::Error::other(self.0))
    }
}

// CPython test_compact_traceback (and the default handle_error): the condensed report names
// where the error came from. Rust errors carry no file and line; ours names the dispatcher type,
// the failing handler and the channel, logs it at error level, and the channel is closed.
fn compact_traceback(backend: Backend) {
    capture_logs();
    assert_eq!(
        sockloop::compact_report("Echo", "handle_read", "<Channel socket fd=7>", &io::Error::other("boom")),
        "uncaptured error in Echo::handle_read on <Channel socket fd=7>: boom"
    );
    each_family(&Family::ALL, |family| {
        for what in ["report-me-please", "panic"] {
            clear_my_logs();
            let mut lp = new_loop(backend);
            let (ours, peer) = connected_pair(family);
            let fd = std::os::fd::AsRawFd::as_raw_fd(&ours);
            let t = lp.add(Channel::from(ours), Failing(what)).unwrap();
            write_all(&peer, b"x");
            drive(&mut lp, "the default handle_error to close", |lp| !lp.contains(t));
            let head =
                format!("uncaptured error in Failing::handle_read on <Channel socket fd={fd} connected");
            let logs = my_logs();
            let line = logs
                .iter()
                .find(|(l, _, m)| *l == log::Level::Error && m.starts_with(&head))
                .unwrap_or_else(|| panic!("no report starting {head:?} in {logs:?}"));
            let expected_tail =
                if what == "panic" { "handler panicked: Failing panicked: panic" } else { what };
            assert!(line.2.ends_with(expected_tail), "{:?}", line.2);
        }
    });
}

// CPython test_handle_read: handle_read is called when data arrives.
fn handle_read(backend: Backend) {
    each_family(&Family::ALL, |family| {
        let mut lp = new_loop(backend);
        let (ours, peer) = connected_pair(family);
        let c = Counts::new();
        lp.add(Channel::from(ours), Probe::new(&c)).unwrap();
        passes(&mut lp, 2);
        assert_eq!(c.read.get(), 0, "no data yet");
        let data: Vec<u8> = (0..=255u8).cycle().take(200_000).collect();
        let writer = {
            let data = data.clone();
            std::thread::spawn(move || write_all(&peer, &data))
        };
        drive(&mut lp, "all the data", |_| c.data.borrow().len() == data.len());
        writer.join().unwrap();
        assert!(c.read.get() >= 1);
        assert_eq!(*c.data.borrow(), data);
    });
}

// CPython test_handle_write: handle_write is called on a connected, writable channel.
fn handle_write(backend: Backend) {
    each_family(&Family::ALL, |family| {
        let mut lp = new_loop(backend);
        let (ours, _peer) = connected_pair(family);
        let c = Counts::new();
        lp.add(Channel::from(ours), Probe::rw(&c, false, true)).unwrap();
        drive(&mut lp, "handle_write", |_| c.write.get() > 0);
        assert_eq!(c.error.get(), 0);
    });
}

// CPython test_handle_close: handle_close is called when the peer closes, after a recv sees
// end of stream; once.
fn handle_close(backend: Backend) {
    each_family(&Family::ALL, |family| {
        let mut lp = new_loop(backend);
        let (ours, peer) = connected_pair(family);
        let c = Counts::new();
        let t = lp.add(Channel::from(ours), Probe::new(&c)).unwrap();
        write_all(&peer, b"last words");
        drop(peer);
        drive(&mut lp, "handle_close", |_| c.close.get() > 0);
        passes(&mut lp, 2);
        assert_eq!(c.close.get(), 1);
        assert_eq!(c.error.get(), 0);
        assert_eq!(&*c.data.borrow(), b"last words", "data before the close is read first");
        assert!(!lp.contains(t));
    });
}

/// Writes as fast as the peer takes it.
struct Blaster {
    c: std::rc::Rc<Counts>,
}

impl Dispatcher for Blaster {
    fn readable(&self) -> bool {
        false
    }
    fn handle_write(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        self.c.write.set(self.c.write.get() + 1);
        let chunk = [b'z'; 16 * 1024];
        while cx.channel.send(&chunk)? == chunk.len() {}
        Ok(())
    }
    fn handle_close(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        self.c.close.set(self.c.close.get() + 1);
        cx.channel.close();
        Ok(())
    }
    fn handle_expt(&mut self, _cx: &mut Context<'_>) -> io::Result<()> {
        self.c.expt.set(self.c.expt.get() + 1);
        Ok(())
    }
    fn handle_error(&mut self, err: io::Error, cx: &mut Context<'_>) {
        self.c.error.set(self.c.error.get() + 1);
        self.c.errors.borrow_mut().push(err);
        cx.channel.close();
    }
}

// CPython test_handle_close_after_conn_broken: the peer goes away while we write (ECONNRESET /
// EPIPE): handle_close (or handle_expt), never handle_error. Both a plain close (our next send
// meets a reset) and an abortive one (SO_LINGER 0; TCP only).
fn handle_close_after_conn_broken(backend: Backend) {
    each_family(&Family::ALL, |family| {
        for abortive in [false, true] {
            if abortive && !family.is_inet() {
                continue;
            }
            let mut lp = new_loop(backend);
            let (ours, peer) = connected_pair(family);
            let c = Counts::new();
            let t = lp.add(Channel::from(ours), Blaster { c: c.clone() }).unwrap();
            drive(&mut lp, "a first write", |_| c.write.get() > 0);
            let got = read_exact(&peer, 1000);
            assert!(got.iter().all(|&b| b == b'z'));
            if abortive {
                reset(peer);
            } else {
                drop(peer);
            }
            drive(&mut lp, "the channel to end", |lp| !lp.contains(t));
            assert_eq!(c.error.get(), 0, "{:?}", c.errors.borrow());
            assert_eq!(c.close.get() + c.expt.get(), 1, "abortive {abortive}: {:?}", c.all());
        }
    });
}

// CPython test_handle_expt: out-of-band data calls handle_expt (IPv4 and IPv6; not applicable
// to Unix sockets, which have no urgent data).
fn handle_expt(backend: Backend) {
    each_family(&Family::INET, |family| {
        let mut lp = new_loop(backend);
        let (ours, peer) = connected_pair(family);
        let c = Counts::new();
        lp.add(Channel::from(ours), Probe::new(&c)).unwrap();
        for (i, b) in [b'a', b'b', b'c'].into_iter().enumerate() {
            peer.send_out_of_band(&[b]).unwrap();
            drive(&mut lp, "handle_expt", |_| c.expt.get() as usize > i);
        }
        assert_eq!(&*c.oob.borrow(), b"abc");
        assert_eq!(c.error.get(), 0);
        assert_quiet(&mut lp);
    });
}

// The default handle_expt reads the urgent byte away, so a peer flooding urgent data cannot
// make the loop spin (DESIGN: "never loop on it").
fn handle_expt_default_does_not_spin(backend: Backend) {
    capture_logs();
    each_family(&Family::INET, |family| {
        clear_my_logs();
        struct Plain;
        impl Dispatcher for Plain {
            fn writable(&self) -> bool {
                false
            }
            fn handle_read(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
                cx.channel.recv(cx.scratch).map(|_| ())
            }
        }
        let mut lp = new_loop(backend);
        let (ours, peer) = connected_pair(family);
        let t = lp.add(Channel::from(ours), Plain).unwrap();
        peer.send_out_of_band(b"!").unwrap();
        drive(&mut lp, "the warning", |_| logged(log::Level::Warn, "unhandled incoming priority event"));
        assert_quiet(&mut lp);
        assert!(lp.contains(t));
    });
}

// CPython test_handle_error: a handler that fails reaches handle_error, which sees the original
// error (and a panic arrives as a HandlerPanic).
fn handle_error(backend: Backend) {
    each_family(&Family::ALL, |family| {
        for fail in [Fail::Read, Fail::PanicRead] {
            let mut lp = new_loop(backend);
            let (ours, peer) = connected_pair(family);
            let c = Counts::new();
            lp.add(Channel::from(ours), Probe::failing(&c, fail)).unwrap();
            write_all(&peer, b"trigger");
            drive(&mut lp, "handle_error", |_| c.error.get() > 0);
            assert_eq!(c.error.get(), 1);
            let errs = c.errors.borrow();
            if fail == Fail::Read {
                assert_eq!(errs[0].to_string(), "handle_read failed on purpose");
                assert!(!HandlerPanic::is(&errs[0]));
            } else {
                assert!(HandlerPanic::is(&errs[0]), "{:?}", errs[0]);
                assert!(errs[0].to_string().contains("handle_read panicked on purpose"));
            }
            drop(errs);
            assert!(read_to_end(&peer).is_empty(), "closed by handle_error");
        }
    });
}

/// A dispatcher that overrides nothing.
struct Bare;
impl Dispatcher for Bare {}

// CPython test_unhandled: events a dispatcher does not handle log a warning ("unhandled read
// event" ...) and do not crash.
fn unhandled(backend: Backend) {
    capture_logs();
    each_family(&Family::ALL, |family| {
        clear_my_logs();
        let mut lp = new_loop(backend);
        let (l, ep) = listener_channel(family);
        let lt = lp.add(l, Bare).unwrap();
        let t = lp.add(connecting_channel(&ep), Bare).unwrap();
        drive(&mut lp, "connect, accepted and write warnings", |_| {
            logged(log::Level::Warn, "unhandled connect event")
                && logged(log::Level::Warn, "unhandled accepted event")
                && logged(log::Level::Warn, "unhandled write event")
        });
        // Bare never reads: the data stays and every pass warns again, harmlessly.
        let (ours, peer) = connected_pair(family);
        let rt = lp.add(Channel::from(ours), Bare).unwrap();
        write_all(&peer, b"unread");
        drive(&mut lp, "the read warning", |_| logged(log::Level::Warn, "unhandled read event"));
        if family.is_inet() {
            peer.send_out_of_band(b"!").unwrap();
            drive(&mut lp, "the priority warning", |_| {
                logged(log::Level::Warn, "unhandled incoming priority event")
            });
        }
        assert!(lp.contains(lt) && lp.contains(t) && lp.contains(rt), "nothing crashed or closed");
        assert!(!my_logs().iter().any(|(l, _, _)| *l == log::Level::Error));
    });
}

/// Logs at each level from inside a handler.
struct Chatty;
impl Dispatcher for Chatty {
    fn writable(&self) -> bool {
        false
    }
    fn handle_read(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let n = cx.channel.recv(cx.scratch)?;
        if n > 0 {
            cx.log_info("note at info", log::Level::Info);
            cx.log_info("note at warning", log::Level::Warn);
            cx.log_info("note at error", log::Level::Error);
        }
        Ok(())
    }
}

// CPython test_basic, test_repr, test_log, test_log_info: a channel's Debug (asyncore's repr)
// names kind, state and address; log_info logs at the info, warning and error levels, naming
// the channel.
fn basic_repr_log_info(backend: Backend) {
    capture_logs();
    each_family(&Family::ALL, |family| {
        clear_my_logs();
        let fresh = Channel::create_socket(family.domain(), Type::STREAM).unwrap();
        assert_eq!(format!("{fresh:?}"), format!("<Channel socket fd={}>", fresh.fileno()));
        let (l, _ep) = listener_channel(family);
        let repr = format!("{l:?}");
        assert!(repr.starts_with("<Channel socket fd=") && repr.contains(" listening"), "{repr}");
        match family {
            Family::Unix => assert!(repr.contains("s.sock"), "{repr}"),
            // asyncore's repr shows `addr` as bound (port 0 here), not getsockname.
            Family::V4 => assert!(repr.contains(" 127.0.0.1:"), "{repr}"),
            Family::V6 => assert!(repr.contains(" [::1]:"), "{repr}"),
        }
        let mut lp = new_loop(backend);
        let (ours, peer) = connected_pair(family);
        let ch = Channel::from(ours);
        let repr = format!("{ch:?}");
        assert!(repr.contains(" connected"), "{repr}");
        lp.add(ch, Chatty).unwrap();
        write_all(&peer, b"x");
        drive(&mut lp, "the three notes", |_| logged(log::Level::Error, "note at error"));
        for (level, msg) in [
            (log::Level::Info, "note at info"),
            (log::Level::Warn, "note at warning"),
            (log::Level::Error, "note at error"),
        ] {
            let logs = my_logs();
            let rec = logs.iter().find(|(l, _, m)| *l == level && m.starts_with(msg)).expect(msg);
            assert_eq!(rec.1, "sockloop");
            assert!(rec.2.contains(&repr), "{:?} names {repr}", rec.2);
        }
    });
}

// CPython test_strerror: a known and an unknown error code give text, never fail.
#[test]
fn strerror() {
    assert!(sockloop::strerror(libc::ECONNREFUSED).to_lowercase().contains("refused"));
    assert!(sockloop::strerror(libc::EPERM).to_lowercase().contains("not permitted"));
    let unknown = sockloop::strerror(123_456);
    assert!(unknown.contains("123456"), "{unknown}");
    for code in -3..300 {
        assert!(!sockloop::strerror(code).is_empty());
    }
    assert!(!sockloop::strerror(i32::MAX).is_empty());
    assert!(!sockloop::strerror(i32::MIN).is_empty());
}

// Default Dispatcher::readable()/writable() are asyncore's (true, true); a datagram channel is
// served like a stream one (create_socket supports datagrams).
fn datagram_channel_reads(backend: Backend) {
    let mut lp = new_loop(backend);
    let mut ch = Channel::create_socket(Domain::IPV4, Type::DGRAM).unwrap();
    ch.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
    let me = ch.local_addr().unwrap().as_socket().unwrap();
    struct Dgram(std::rc::Rc<Counts>);
    impl Dispatcher for Dgram {
        fn writable(&self) -> bool {
            false
        }
        fn handle_read(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
            let (n, _) = cx.channel.recv_from(cx.scratch)?;
            self.0.data.borrow_mut().extend_from_slice(&cx.scratch[..n]);
            Ok(())
        }
    }
    let c = Counts::new();
    assert!(Bare.readable() && Bare.writable());
    lp.add(ch, Dgram(c.clone())).unwrap();
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().send_to(b"dgram", me).unwrap();
    drive(&mut lp, "the datagram", |_| c.data.borrow().len() == 5);
    assert_eq!(&*c.data.borrow(), b"dgram");
}

/// Whichever of the two runs first closes the other and adds a new channel (which may get the
/// closed one's descriptor number) whose peer has already written.
struct Closer {
    me: usize,
    tokens: Rc<RefCell<[Option<sockloop::Token>; 2]>>,
    ran: Rc<Counts>,
    z: Rc<Counts>,
    z_peer: Rc<RefCell<Option<std::os::unix::net::UnixStream>>>,
}

impl Dispatcher for Closer {
    fn writable(&self) -> bool {
        false
    }
    fn handle_read(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        self.ran.read.set(self.ran.read.get() + 1);
        let _ = cx.channel.recv(cx.scratch)?;
        if self.z_peer.borrow().is_some() {
            return Ok(());
        }
        let other = self.tokens.borrow()[1 - self.me].unwrap();
        assert!(cx.lp.close_channel(other));
        let (a, mut b) = std::os::unix::net::UnixStream::pair()?;
        io::Write::write_all(&mut b, b"for z")?;
        *self.z_peer.borrow_mut() = Some(b);
        cx.lp.add(Channel::from(a), Probe::new(&self.z))?;
        Ok(())
    }
}

// Issue 2: channels created during service are serviced from the next pass, and a channel
// closed during a pass gets no further events in it, even when a new channel reuses its
// descriptor at once (DESIGN, "stale events"; CPython issue 75114).
fn stale_events_and_new_channels(backend: Backend) {
    let mut lp = new_loop(backend);
    let tokens = Rc::new(RefCell::new([None, None]));
    let ran = Counts::new();
    let z = Counts::new();
    let z_peer = Rc::new(RefCell::new(None));
    let mut peers = Vec::new();
    for me in 0..2 {
        let (ours, peer) = std::os::unix::net::UnixStream::pair().unwrap();
        let d = Closer { me, tokens: tokens.clone(), ran: ran.clone(), z: z.clone(), z_peer: z_peer.clone() };
        tokens.borrow_mut()[me] = Some(lp.add(Channel::from(ours), d).unwrap());
        peers.push(peer);
    }
    for p in &mut peers {
        io::Write::write_all(p, b"go").unwrap(); // both ready in the same pass
    }
    lp.poll(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(ran.read.get(), 1, "the closed channel got no event after its close");
    assert_eq!(z.read.get(), 0, "the new channel waits for the next pass");
    assert_eq!(lp.len(), 2);
    drive(&mut lp, "the new channel's data", |_| z.data.borrow().len() == 5);
    assert_eq!(z.read.get(), 1);
    assert_eq!(ran.read.get(), 1);
}

backend_tests!(
    readwrite_read_flag,
    readwrite_write_flag,
    readwrite_priority_flag,
    readwrite_hangup_flag,
    readwrite_error_flag,
    readwrite_peer_reset,
    readwrite_read_and_write_flags,
    readwriteexc,
    readwriteexc_exit_now,
    expt_only_for_real_oob,
    closeall,
    loop_count,
    loop_timeout,
    loop_until_map_empty,
    compact_traceback,
    handle_read,
    handle_write,
    handle_close,
    handle_close_after_conn_broken,
    handle_expt,
    handle_expt_default_does_not_spin,
    handle_error,
    unhandled,
    basic_repr_log_info,
    datagram_channel_reads,
    stale_events_and_new_channels
);
