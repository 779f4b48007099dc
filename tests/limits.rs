//! Limits (issue 2): the select backend refuses a descriptor >= FD_SETSIZE with a clear error,
//! never undefined behaviour; with epoll, echo_server holds 5000 concurrent connections.

mod common;

use common::*;
use sockloop::poller::{Interest, Selector};
use sockloop::{Backend, Channel, Loop};
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::Instant;

/// A connected socket moved to a descriptor number >= `min`.
fn socket_at_or_above(min: i32) -> (Channel, std::os::unix::net::UnixStream) {
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let high: OwnedFd = rustix::io::fcntl_dupfd_cloexec(&a, min).expect("dup to a high descriptor");
    drop(a);
    assert!(high.as_raw_fd() >= min);
    (Channel::from(std::os::unix::net::UnixStream::from(high)), b)
}

// The select backend refuses a descriptor >= FD_SETSIZE (1024) with an error naming the range;
// poll and epoll take it and serve it.
#[test]
fn select_refuses_descriptor_beyond_fd_setsize() {
    raise_nofile(4096);
    let fd_setsize = libc::FD_SETSIZE as i32;
    for min in [fd_setsize, fd_setsize + 500] {
        let (ch, _peer) = socket_at_or_above(min);
        let fd = ch.fileno();
        let mut lp = Loop::with_backend(Backend::Select).unwrap();
        let err = lp.add(ch, sockloop::Ignore).expect_err("select must refuse the descriptor");
        let msg = err.to_string();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert!(msg.contains(&fd.to_string()) && msg.contains("range") && msg.contains("1024"), "{msg}");
        assert!(lp.is_empty(), "nothing half-added");
        lp.poll(Some(std::time::Duration::ZERO)).unwrap();

        // The Selector API refuses it the same way.
        let mut sel = Selector::new(Backend::Select).unwrap();
        let e = sel.register(fd, 1, Interest { read: true, write: false }).unwrap_err();
        assert!(e.to_string().contains("range"), "{e}");
    }
    // Just below the limit is fine, and the other backends take high descriptors.
    let (ch, _peer) = socket_at_or_above(fd_setsize - 1);
    if ch.fileno() == fd_setsize - 1 {
        let mut lp = Loop::with_backend(Backend::Select).unwrap();
        lp.add(ch, sockloop::Ignore).expect("fd 1023 fits in an fd_set");
    }
    for backend in [Backend::Poll, Backend::Epoll] {
        let (ch, _) = socket_at_or_above(fd_setsize + 200);
        let mut lp = new_loop(backend);
        let c = Counts::new();
        let (ch2, p2) = socket_at_or_above(fd_setsize + 300);
        lp.add(ch, sockloop::Ignore).unwrap();
        lp.add(ch2, Probe::new(&c)).unwrap();
        (&p2).write_all(b"high").unwrap();
        drive(&mut lp, "data on a high descriptor", |_| c.data.borrow().len() == 4);
    }
}

// With epoll, echo_server holds 5000 concurrent connections: all open at once, each echoes its
// own message. The test raises RLIMIT_NOFILE; the child inherits it.
#[test]
fn epoll_echo_server_holds_5000_connections() {
    const N: usize = 5000;
    let limit = raise_nofile(2 * N as u64 + 1000);
    assert!(limit >= N as u64 + 200, "RLIMIT_NOFILE hard limit {limit} is too low for {N} connections");
    let t0 = Instant::now();
    let mut guard = ChildGuard(Some(
        Command::new(example_path("echo_server"))
            .args(["--bind", "127.0.0.1:0", "--quiet", "--backend", "epoll", "--backlog", "4096"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn echo_server"),
    ));
    let stdout = BufReader::new(guard.child().stdout.take().unwrap());
    let (line, mut stdout) = read_line_within(stdout, DEADLINE);
    let addr: SocketAddr =
        line.trim_end().strip_prefix("listening on ").and_then(|a| a.parse().ok()).expect(&line);
    // Connect in batches of 500, each connection echoing its own message before the next
    // batch, so the listen backlog never overflows (a dropped SYN costs a 1 s retransmit).
    let mut clients: Vec<TcpStream> = Vec::with_capacity(N);
    for batch in (0..N).collect::<Vec<_>>().chunks(500) {
        let start = clients.len();
        for &i in batch {
            let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connection {i}: {e}"));
            s.set_read_timeout(Some(DEADLINE)).unwrap();
            clients.push(s);
        }
        for (i, mut s) in clients[start..].iter().enumerate().map(|(k, s)| (start + k, s)) {
            s.write_all(format!("message {i:05}\n").as_bytes()).unwrap();
        }
        for (i, mut s) in clients[start..].iter().enumerate().map(|(k, s)| (start + k, s)) {
            let mut got = [0u8; 14];
            s.read_exact(&mut got).unwrap_or_else(|e| panic!("echo {i}: {e}"));
            assert_eq!(&got[..], format!("message {i:05}\n").as_bytes());
        }
    }
    // All 5000 are open at once: a second round over every one of them.
    for (i, mut s) in clients.iter().enumerate() {
        s.write_all(format!("again   {i:05}\n").as_bytes()).unwrap();
    }
    for (i, mut s) in clients.iter().enumerate() {
        let mut got = [0u8; 14];
        s.read_exact(&mut got).unwrap_or_else(|e| panic!("second echo {i}: {e}"));
        assert_eq!(&got[..], format!("again   {i:05}\n").as_bytes());
    }
    drop(clients);
    let pid = rustix::process::Pid::from_child(guard.child());
    rustix::process::kill_process(pid, rustix::process::Signal::Term).unwrap();
    assert!(guard.wait_exit(DEADLINE).success());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, format!("served {N} connections, echoed {} bytes\n", N * 28));
    let took = t0.elapsed();
    eprintln!("{N} connections: {took:?}");
    assert!(took < std::time::Duration::from_secs(20), "took {took:?}");
}

/// User plus system CPU time of a process, in clock ticks (/proc/PID/stat fields 14 and 15).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    let after_comm = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // after_comm starts at field 3 (state): utime is field 14, stime field 15.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

// DESIGN: EMFILE on accept must not spin the loop. echo_server under `ulimit -n 64` with 100
// clients waiting: it uses little CPU while out of descriptors, and serves the waiting clients
// once others leave.
#[test]
fn echo_server_out_of_descriptors_does_not_spin() {
    let exe = example_path("echo_server");
    let mut guard = ChildGuard(Some(
        Command::new("sh")
            .arg("-c")
            .arg("ulimit -n 64 && exec \"$0\" --bind 127.0.0.1:0 --quiet --backend epoll")
            .arg(&exe)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn echo_server"),
    ));
    let pid = guard.child().id();
    let stdout = BufReader::new(guard.child().stdout.take().unwrap());
    let (line, _stdout) = read_line_within(stdout, DEADLINE);
    let addr: SocketAddr =
        line.trim_end().strip_prefix("listening on ").and_then(|a| a.parse().ok()).expect(&line);
    let clients: Vec<TcpStream> = (0..100)
        .map(|_| {
            let s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(DEADLINE)).unwrap();
            s
        })
        .collect();
    // The first ones are served; the server runs out of descriptors before the last.
    let mut first = &clients[0];
    first.write_all(b"a").unwrap();
    let mut b = [0u8; 1];
    first.read_exact(&mut b).unwrap();
    // A measurement window (not synchronisation): CPU used while out of descriptors.
    let (c0, t0) = (cpu_ticks(pid), Instant::now());
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let (c1, t1) = (cpu_ticks(pid), Instant::now());
    let ticks_per_sec = 100.0; // USER_HZ on Linux
    let cpu = (c1 - c0) as f64 / ticks_per_sec;
    let wall = (t1 - t0).as_secs_f64();
    assert!(cpu < 0.3 * wall, "echo_server used {cpu:.2} s of CPU in {wall:.2} s while out of descriptors");
    // Half the clients leave: the rest, waiting in the backlog, are served.
    let mut clients = clients;
    let waiting = clients.split_off(50);
    drop(clients);
    for (i, mut s) in waiting.iter().enumerate() {
        s.write_all(b"late").unwrap();
        let mut got = [0u8; 4];
        s.read_exact(&mut got).unwrap_or_else(|e| panic!("late client {i}: {e}"));
        assert_eq!(&got, b"late");
    }
}
