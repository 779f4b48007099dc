//! A loop per thread, one server (issue 16), over every backend: echo_server --threads 2
//! under hundreds of real connections, both threads carrying load, SIGTERM with output owed
//! on both loops, messages between loops, a listener's loop leaving without losing what is
//! queued on it, and a failing loop that does not take the others down.
//!
//! Every wait has a deadline; the load test measures per-thread CPU from
//! `/proc/PID/task/*/stat` over a fixed amount of work, not over a sleep.

mod support;

use sockloop::group::{LoopGroup, Member, SharedListener, Sharing};
use sockloop::{Backend, Channel, Context, Dispatcher, Ignore, SockAddr, Socket};
use std::io::{self, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

// ---------------------------------------------------------------------------------------------
// Helpers

/// `echo_server --threads 2` on a free loopback port, with its address and its stdout after
/// the (single) `listening on` line.
fn start_echo(
    backend: Backend,
    extra: &[&str],
) -> (ChildGuard, SocketAddr, BufReader<std::process::ChildStdout>) {
    start_echo_server(backend, &[&["--threads", "2"], extra].concat())
}

/// Everything after the `listening on` line, once the process has exited 0.
fn exit_zero_and_rest(
    guard: &mut ChildGuard,
    mut stdout: BufReader<std::process::ChildStdout>,
    what: &str,
) -> String {
    let status = guard.wait_exit(DEADLINE);
    assert!(status.success(), "{what}: exit status {status:?}");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    rest
}

/// CPU ticks (user + system) of each `sockloop-*` thread of process `pid`, by thread id.
fn loop_thread_ticks(pid: u32) -> Vec<(u32, u64)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc/PID/task") {
        let tid_dir = entry.unwrap().path();
        let Ok(stat) = std::fs::read_to_string(tid_dir.join("stat")) else { continue };
        // "tid (comm) state ppid ...": fields after the comm's closing parenthesis.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let comm = &stat[open + 1..close];
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        // utime and stime are fields 14 and 15 of stat(5); here 0 is field 3 (state).
        let ticks = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        if comm.starts_with("sockloop-") {
            out.push((stat[..open].trim().parse().unwrap(), ticks));
        }
    }
    out.sort();
    out
}

/// CPU ticks of the whole process (every thread).
fn process_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let close = stat.rfind(')').unwrap();
    let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

// ---------------------------------------------------------------------------------------------
// echo_server --threads 2, as a process

// 300 concurrent connections with random-sized messages (1 B to 256 KiB), every byte checked,
// against echo_server --threads 2; then SIGTERM: exit 0 and the totals of both loops.
fn echo_integrity_two_threads(backend: Backend) {
    let (mut server, addr, stdout) = start_echo(backend, &[]);
    let conns = 300;
    let per_thread = 20;
    let mut rng = Rng(0x1616);
    let sizes: Vec<usize> = (0..conns)
        .map(|i| match i {
            0 => 1,
            1 => 256 << 10,
            _ => {
                let bits = rng.range(0, 18);
                rng.range(1, 1 << bits) as usize
            }
        })
        .collect();
    let total: usize = sizes.iter().sum();
    let opened = Arc::new(std::sync::Barrier::new(conns / per_thread));
    let handles: Vec<_> = sizes
        .chunks(per_thread)
        .enumerate()
        .map(|(t, chunk)| {
            let chunk = chunk.to_vec();
            let opened = opened.clone();
            std::thread::spawn(move || {
                // Every connection of every thread is open before any data moves.
                let socks: Vec<TcpStream> = chunk.iter().map(|_| tcp_client(addr)).collect();
                opened.wait();
                let data: Vec<Vec<u8>> = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, &n)| Rng((t * per_thread + i) as u64 + 1).bytes(n))
                    .collect();
                for (s, d) in socks.iter().zip(&data) {
                    (&mut &*s).write_all(d).expect("send");
                }
                for (i, (s, d)) in socks.iter().zip(&data).enumerate() {
                    let mut got = vec![0u8; d.len()];
                    (&mut &*s).read_exact(&mut got).unwrap_or_else(|e| panic!("connection {t}/{i}: {e}"));
                    assert!(&got == d, "connection {t}/{i}: the echo differs");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap_or_else(|_| panic!("{backend:?}: a client thread failed"));
    }
    sigterm(&mut server);
    let rest = exit_zero_and_rest(&mut server, stdout, &format!("{backend:?}"));
    assert_eq!(rest, format!("served {conns} connections, echoed {total} bytes\n"), "{backend:?}");
}

/// 50 ping-pong connections from one client until the server has used `work` ticks; returns
/// each loop thread's share of the process's CPU over that window.
fn load_shares(pid: u32, addr: SocketAddr, work: u64) -> (Vec<f64>, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..50)
        .map(|_| {
            let (stop, rounds) = (stop.clone(), rounds.clone());
            let s = tcp_client(addr);
            std::thread::spawn(move || {
                let msg = [7u8; 2048];
                let mut back = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    (&s).write_all(&msg).expect("send");
                    (&s).read_exact(&mut back).expect("echo");
                    rounds.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // Measure from the first echoes on, so start-up is not counted.
    wait_until(DEADLINE, "the first echoes", || rounds.load(Ordering::Relaxed) >= 500);
    let (p0, t0) = (process_ticks(pid), loop_thread_ticks(pid));
    let end = Instant::now() + Duration::from_secs(20);
    wait_until(DEADLINE, "enough server CPU to measure", || {
        process_ticks(pid) - p0 >= work || Instant::now() > end
    });
    let (p1, t1) = (process_ticks(pid), loop_thread_ticks(pid));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    assert_eq!(t0.len(), 2, "two loop threads (sockloop-0, sockloop-1), found {t0:?}");
    let used = p1 - p0;
    let shares = t0.iter().zip(&t1).map(|((_, a), (_, b))| (b - a) as f64 / used.max(1) as f64).collect();
    (shares, used)
}

// Both threads carry load: with 50 connections from one client, each of the two loop threads
// takes at least 15% of the process's CPU (over at least 1.5 s of server CPU), for each way of
// sharing the address. An even split is 50%; a thread left out gets ~0%. The bound is loose
// because on a loaded 2-core machine the scheduler, not the sharing, decides short-term shares
// (25% failed once in a full-suite run beside two other builds).
fn both_threads_carry_load(backend: Backend) {
    for sharing in ["reuseport", "handoff"] {
        let (mut server, addr, stdout) = start_echo(backend, &["--sharing", sharing]);
        let pid = server.child().id();
        let (shares, used) = load_shares(pid, addr, 150);
        assert!(used >= 100, "{backend:?}/{sharing}: the server used only {used} ticks in the deadline");
        for (i, s) in shares.iter().enumerate() {
            assert!(
                *s >= 0.15,
                "{backend:?}/{sharing}: loop thread {i} took {:.0}% of the process's CPU (shares {:?} of {used} \
                 ticks); each of two should take at least 15%",
                s * 100.0,
                shares.iter().map(|s| format!("{:.0}%", s * 100.0)).collect::<Vec<_>>()
            );
        }
        eprintln!("{backend:?}/{sharing}: loop CPU shares {shares:.2?} of {used} ticks");
        sigterm(&mut server);
        exit_zero_and_rest(&mut server, stdout, &format!("{backend:?}/{sharing}"));
    }
}

/// The server-side receive queue (bytes the application has not read) of each connection to
/// `server` from the local ports given, from /proc/net/tcp; `None` for one not found.
fn server_rx_queues(server: SocketAddr, client_ports: &[u16]) -> Vec<Option<u64>> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let rows: Vec<(u16, u16, u64)> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let port = |a: &str| u16::from_str_radix(a.rsplit(':').next()?, 16).ok();
            let rx = u64::from_str_radix(f.get(4)?.split(':').nth(1)?, 16).ok()?;
            Some((port(f.get(1)?)?, port(f.get(2)?)?, rx))
        })
        .collect();
    client_ports
        .iter()
        .map(|&p| rows.iter().find(|(l, r, _)| *l == server.port() && *r == p).map(|r| r.2))
        .collect()
}

// SIGTERM with output owed on connections of both loops: every byte each loop read is sent
// back before it closes, and the process exits 0. With --sharing handoff, connections
// alternate between the loops (so both owe output); with the default (reuseport), 10
// connections spread by the kernel's hash.
fn sigterm_flushes_both_loops(backend: Backend) {
    for (sharing, conns) in [("handoff", 6usize), ("reuseport", 10)] {
        let what = format!("{backend:?}/{sharing}");
        // A soft limit above the message: each loop reads all its input and holds the echo.
        let (mut server, addr, stdout) =
            start_echo(backend, &["--sharing", sharing, "--soft-limit", "67108864"]);
        let size = 8 << 20;
        let socks: Vec<Socket> = (0..conns)
            .map(|_| {
                let s = Socket::new(sockloop::Domain::IPV4, sockloop::Type::STREAM, None).unwrap();
                s.set_recv_buffer_size(32 << 10).unwrap(); // keep the echo in the server
                s.connect(&addr.into()).unwrap();
                s.set_read_timeout(Some(DEADLINE)).unwrap();
                s
            })
            .collect();
        let data: Vec<Vec<u8>> = (0..conns).map(|i| Rng(i as u64 + 99).bytes(size)).collect();
        for (s, d) in socks.iter().zip(&data) {
            write_all(s, d);
            s.shutdown(std::net::Shutdown::Write).unwrap();
        }
        // Each loop has read everything it was sent (nothing unread, so its close is a FIN,
        // not a reset that would drop what it flushed); nothing of the echo was read yet.
        let ports: Vec<u16> =
            socks.iter().map(|s| s.local_addr().unwrap().as_socket().unwrap().port()).collect();
        wait_until(DEADLINE, "each loop to read all its input", || {
            server_rx_queues(addr, &ports).iter().all(|q| *q == Some(0))
        });
        sigterm(&mut server);
        for (i, (s, d)) in socks.iter().zip(&data).enumerate() {
            let got = read_to_end(s);
            assert!(
                got.len() == d.len() && &got == d,
                "{what}: connection {i}: {} of {} bytes echoed",
                got.len(),
                d.len()
            );
        }
        let rest = exit_zero_and_rest(&mut server, stdout, &what);
        assert_eq!(rest, format!("served {conns} connections, echoed {} bytes\n", conns * size), "{what}");
    }
}

// http_server --threads 2: one `listening on` line, 40 keep-alive requests over 8 connections
// (spread over both loops), then SIGTERM: exit 0 and the totals of both loops.
fn http_server_two_threads(backend: Backend) {
    let mut cmd = Command::new(example_path("http_server"));
    cmd.args([
        "--bind",
        "127.0.0.1:0",
        "--threads",
        "2",
        "--sharing",
        "handoff",
        "--backend",
        backend.name(),
    ]);
    let mut server =
        ChildGuard(Some(cmd.stdout(Stdio::piped()).stdin(Stdio::null()).spawn().expect("spawn")));
    let stdout = BufReader::new(server.child().stdout.take().unwrap());
    let (line, stdout) = read_line_within(stdout, DEADLINE);
    let addr: SocketAddr =
        line.strip_prefix("listening on ").and_then(|a| a.trim_end().parse().ok()).expect("listening on");
    let conns: Vec<TcpStream> = (0..8).map(|_| tcp_client(addr)).collect();
    let mut readers: Vec<support::process::Lines> =
        conns.iter().map(|c| support::process::Lines::new(c.try_clone().unwrap())).collect();
    for round in 0..5 {
        for (i, (c, lines)) in conns.iter().zip(&mut readers).enumerate() {
            let last = round == 4;
            let req = format!(
                "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
                if last { "Connection: close\r\n" } else { "" }
            );
            (&mut &*c).write_all(req.as_bytes()).unwrap();
            let status = lines.line();
            assert!(status.starts_with("HTTP/1.1 200"), "{backend:?}: connection {i}: {status:?}");
            let mut len = 0usize;
            loop {
                let h = lines.line();
                if h.is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0u8; len];
            lines.r.read_exact(&mut body).unwrap();
        }
    }
    sigterm(&mut server);
    let rest = exit_zero_and_rest(&mut server, stdout, &format!("{backend:?}"));
    assert_eq!(rest, "served 8 connections, 40 requests\n", "{backend:?}");
}

backend_tests!(
    echo_integrity_two_threads,
    both_threads_carry_load,
    sigterm_flushes_both_loops,
    http_server_two_threads
);

// ---------------------------------------------------------------------------------------------
// The library, in process

/// Echoes; a line "panic" makes it panic (caught on its loop as usual).
struct Echo;
impl Dispatcher for Echo {
    fn handle_read(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let n = cx.channel.recv(cx.scratch)?;
        if &cx.scratch[..n] == b"panic" {
            panic!("a handler panicked on purpose");
        }
        cx.channel.send_all(&cx.scratch[..n])
    }
    fn handle_error(&mut self, _err: io::Error, cx: &mut Context<'_>) {
        cx.channel.close();
    }
}

struct EchoListener;
impl Dispatcher for EchoListener {
    fn handle_accepted(&mut self, sock: Socket, _addr: SockAddr, cx: &mut Context<'_>) -> io::Result<()> {
        cx.lp.add(Channel::from(sock), Echo)?;
        Ok(())
    }
}

/// A group of two echo loops on one shared listener; setup also hands out each [`Member`]'s
/// index and group handle through `extra`.
fn echo_group(backend: Backend, sharing: Sharing) -> (LoopGroup, SharedListener) {
    let listener = SharedListener::bind("127.0.0.1:0".parse().unwrap(), 1024, 2, sharing).unwrap();
    let l = listener.clone();
    let group = LoopGroup::builder()
        .threads(2)
        .backend(backend)
        .start(move |lp, member: &Member| {
            l.attach(lp, member, EchoListener)?;
            Ok(())
        })
        .unwrap();
    (group, listener)
}

fn echo_once(s: &TcpStream, msg: &[u8]) -> io::Result<()> {
    (&mut &*s).write_all(msg)?;
    let mut got = vec![0u8; msg.len()];
    (&mut &*s).read_exact(&mut got)?;
    assert_eq!(got, msg);
    Ok(())
}

/// Records what it is sent, in order, and on which thread.
struct Inbox {
    got: Vec<u64>,
}
impl Dispatcher for Inbox {}

// A message posted from a handler on one loop to a channel on another arrives once, in order,
// on the other loop's thread.
fn post_between_loops_arrives_once_in_order(backend: Backend) {
    let (token_tx, token_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<(Vec<u64>, String)>();
    let done_tx = Mutex::new(Some(done_tx));
    let token_rx = Mutex::new(Some(token_rx));
    let group = LoopGroup::builder()
        .threads(2)
        .backend(backend)
        .start(move |lp, member| {
            if member.index() == 1 {
                let ch = Channel::tcp_listener("127.0.0.1:0".parse().unwrap(), 1)?;
                token_tx.send(lp.add(ch, Inbox { got: Vec::new() })?).unwrap();
            } else {
                let (group, done) = (member.group().clone(), done_tx.lock().unwrap().take().unwrap());
                let token_rx = token_rx.lock().unwrap().take().unwrap();
                // Loop 0 waits for the token on its own thread, in a timer callback.
                lp.call_later(Duration::ZERO, move |_lp| {
                    let token = token_rx.recv_timeout(DEADLINE).unwrap();
                    assert_eq!(std::thread::current().name(), Some("sockloop-0"));
                    for i in 0..1000u64 {
                        group.send_to::<Inbox>(1, token, move |inbox, _| inbox.got.push(i)).unwrap();
                    }
                    // Posted after the 1000 from the same thread, so it runs after them.
                    group
                        .send_to::<Inbox>(1, token, move |inbox, _| {
                            let name = std::thread::current().name().unwrap_or("").to_string();
                            done.send((std::mem::take(&mut inbox.got), name)).unwrap();
                        })
                        .unwrap();
                });
            }
            Ok(())
        })
        .unwrap();
    let (got, thread) = done_rx.recv_timeout(DEADLINE).expect("the messages within the deadline");
    assert_eq!(thread, "sockloop-1", "{backend:?}: delivered on the other loop's thread");
    assert_eq!(got, (0..1000).collect::<Vec<_>>(), "{backend:?}: each message once, in order");
    group.handle().shutdown(Duration::from_secs(1));
    group.join().unwrap();
}

// A listener's loop leaving does not lose the connections already queued on its listener:
// loop `leaver` is stalled while 40 clients connect, then retires its listener; every client
// is served. ReusePort: what was queued is accepted and handed to the other loop (whether
// tcp_migrate_req is on or not). Handoff: the other loop takes over the same socket.
fn retiring_listener_keeps_queued_connections(backend: Backend) {
    for sharing in [Sharing::ReusePort, Sharing::Handoff] {
        let what = format!("{backend:?}/{sharing:?}");
        let (group, listener) = echo_group(backend, sharing);
        let addr = listener.local_addr();
        let leaver = match sharing {
            Sharing::ReusePort => 1,
            Sharing::Handoff => 0, // the acceptor
        };
        let (stalled_tx, stalled_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        group
            .handle()
            .post(leaver, move |_| {
                stalled_tx.send(()).unwrap();
                release_rx.recv_timeout(DEADLINE).expect("released");
            })
            .unwrap();
        stalled_rx.recv_timeout(DEADLINE).unwrap();
        let clients: Vec<TcpStream> = (0..40).map(|_| tcp_client(addr)).collect();
        let (handed_tx, handed_rx) = mpsc::channel();
        let l = listener.clone();
        group.handle().post(leaver, move |lp| handed_tx.send(l.retire(leaver, lp)).unwrap()).unwrap();
        release_tx.send(()).unwrap();
        let handed = handed_rx.recv_timeout(DEADLINE).unwrap();
        for (i, c) in clients.iter().enumerate() {
            echo_once(c, format!("client {i}").as_bytes())
                .unwrap_or_else(|e| panic!("{what}: client {i} lost: {e}"));
        }
        if sharing == Sharing::ReusePort {
            // 40 connections over two listeners: some were queued on the leaver's.
            assert!(handed > 0, "{what}: nothing was queued on the leaving listener");
        }
        // New connections still work, served by the loop that stayed.
        echo_once(&tcp_client(addr), b"after").unwrap();
        eprintln!(
            "{what}: retire handed over {handed}; tcp_migrate_req {:?}",
            sockloop::group::tcp_migrate_req()
        );
        group.handle().shutdown(Duration::from_secs(1));
        group.join().unwrap();
    }
}

// A panic in one loop's handler is caught on that loop (the channel is reported and closed)
// and the other connections of both loops go on; a loop whose run fails outright (panics
// propagated) leaves the other loop serving, and `join` names it.
fn failing_loop_leaves_the_others(backend: Backend) {
    let (group, listener) = echo_group(backend, Sharing::Handoff);
    let addr = listener.local_addr();
    // Round-robin from the acceptor (loop 0): a, b, c, d alternate between loops 0 and 1.
    let conns: Vec<TcpStream> = (0..4).map(|_| tcp_client(addr)).collect();
    for c in &conns {
        echo_once(c, b"hi").unwrap();
    }
    (&conns[1]).write_all(b"panic").unwrap();
    assert!(
        support::process::read_to_close(&mut &conns[1]).is_empty(),
        "{backend:?}: the panicking channel is closed"
    );
    for (i, c) in conns.iter().enumerate().filter(|(i, _)| *i != 1) {
        echo_once(c, b"still").unwrap_or_else(|e| panic!("{backend:?}: connection {i} after the panic: {e}"));
    }
    // Now loop 1 fails outright: a panic that is not caught leaves its run.
    group
        .handle()
        .post(1, |lp| {
            lp.set_catch_panics(false);
            lp.call_later(Duration::ZERO, |_| panic!("loop 1 gives up"));
        })
        .unwrap();
    let h = group.handle();
    wait_until(DEADLINE, "loop 1 to end", || !h.is_running(1));
    assert!(h.is_running(0), "{backend:?}: loop 0 runs on");
    let refused = h.post(1, |_| unreachable!("a stopped loop runs nothing")).expect_err("loop 1 stopped");
    assert_eq!(refused.kind(), io::ErrorKind::NotConnected, "{backend:?}");
    for _ in 0..4 {
        echo_once(&tcp_client(addr), b"served by loop 0").unwrap(); // the acceptor skips loop 1
    }
    echo_once(&conns[0], b"old connection on loop 0").unwrap();
    h.shutdown(Duration::from_secs(1));
    let err = group.join().expect_err("loop 1 failed");
    assert!(err.to_string().starts_with("loop 1 of 2: run: panicked: loop 1 gives up"), "{backend:?}: {err}");
}

// Port 0 picks one port, which every loop serves: a fresh connection to it works whichever
// listener the kernel picks, and each loop's listener has that port.
fn every_loop_serves_the_picked_port(backend: Backend) {
    let listener = SharedListener::bind("127.0.0.1:0".parse().unwrap(), 64, 2, Sharing::ReusePort).unwrap();
    let (ports_tx, ports_rx) = mpsc::channel();
    let l = listener.clone();
    let group = LoopGroup::builder()
        .threads(2)
        .backend(backend)
        .start(move |lp, m| {
            let t = l.attach(lp, m, Ignore)?;
            ports_tx.send(lp.channel_mut(t).unwrap().local_addr()?.as_socket().unwrap().port()).unwrap();
            Ok(())
        })
        .unwrap();
    let ports: Vec<u16> = (0..2).map(|_| ports_rx.recv().unwrap()).collect();
    assert_eq!(ports, vec![listener.local_addr().port(); 2], "{backend:?}");
    group.handle().shutdown(Duration::ZERO);
    group.join().unwrap();
    // A listener bound for another number of loops is refused, naming the loop.
    let three = SharedListener::bind("127.0.0.1:0".parse().unwrap(), 64, 3, Sharing::ReusePort).unwrap();
    let err = LoopGroup::builder()
        .threads(2)
        .backend(backend)
        .start(move |lp, m| three.attach(lp, m, Ignore).map(|_| ()))
        .err()
        .expect("a size mismatch fails the start");
    assert!(err.to_string().contains("setup: the listener was bound for 3 loops, the group has 2"), "{err}");
}

// Why `retire` exists: closing a reuseport listener outright while connections are queued on
// it resets them on this kernel unless `net.ipv4.tcp_migrate_req` is 1, in which case the
// kernel moves them to the other loop's listener. The test asserts whichever of the two the
// kernel's setting promises.
fn closing_a_listener_outright_follows_tcp_migrate_req(backend: Backend) {
    let listener = SharedListener::bind("127.0.0.1:0".parse().unwrap(), 1024, 2, Sharing::ReusePort).unwrap();
    let addr = listener.local_addr();
    let (tok_tx, tok_rx) = mpsc::channel();
    let tok_tx = Mutex::new(tok_tx);
    let l = listener.clone();
    let group = LoopGroup::builder()
        .threads(2)
        .backend(backend)
        .start(move |lp, m| {
            let t = l.attach(lp, m, EchoListener)?;
            tok_tx.lock().unwrap().send((m.index(), t)).unwrap();
            Ok(())
        })
        .unwrap();
    let tokens: std::collections::HashMap<usize, sockloop::Token> =
        (0..2).map(|_| tok_rx.recv().unwrap()).collect();
    let migration = sockloop::group::tcp_migrate_req();
    let (stalled_tx, stalled_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    group
        .handle()
        .post(1, move |_| {
            stalled_tx.send(()).unwrap();
            release_rx.recv_timeout(DEADLINE).expect("released");
        })
        .unwrap();
    stalled_rx.recv_timeout(DEADLINE).unwrap();
    let clients: Vec<TcpStream> = (0..40).map(|_| tcp_client(addr)).collect();
    let t1 = tokens[&1];
    group
        .handle()
        .post(1, move |lp| {
            lp.close_channel(t1); // no retire: the kernel decides
        })
        .unwrap();
    release_tx.send(()).unwrap();
    let lost = clients.iter().filter(|c| echo_once(c, b"x").is_err()).count();
    eprintln!(
        "{backend:?}: tcp_migrate_req {migration:?}: {lost} of 40 queued connections lost on a plain close"
    );
    match migration {
        sockloop::group::Migration::On => assert_eq!(lost, 0, "{backend:?}: migration is on"),
        _ => assert!(lost > 0, "{backend:?}: without migration the queued connections are reset"),
    }
    group.handle().shutdown(Duration::ZERO);
    group.join().unwrap();
}

backend_tests!(
    post_between_loops_arrives_once_in_order,
    closing_a_listener_outright_follows_tcp_migrate_req,
    retiring_listener_keeps_queued_connections,
    failing_loop_leaves_the_others,
    every_loop_serves_the_picked_port
);

// `pin(true)`: loop i runs on the i-th CPU the process may use, and only there. (Not a
// readiness behaviour, so one backend.)
#[test]
fn pinned_loops_run_on_one_cpu_each() {
    let cpus = sockloop::group::usable_cpus();
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let group = LoopGroup::builder()
        .threads(2)
        .pin(true)
        .start(move |_, m| {
            let set = rustix::thread::sched_getaffinity(None)?;
            let on: Vec<usize> = (0..rustix::thread::CpuSet::MAX_CPU).filter(|&c| set.is_set(c)).collect();
            tx.lock().unwrap().send((m.index(), on)).unwrap();
            Ok(())
        })
        .unwrap();
    let mut got: Vec<(usize, Vec<usize>)> = (0..2).map(|_| rx.recv().unwrap()).collect();
    got.sort();
    for (i, on) in got {
        assert_eq!(on, vec![cpus[i % cpus.len()]], "loop {i}");
    }
    group.handle().shutdown(Duration::ZERO);
    group.join().unwrap();
}
