//! Limits (issue 2): the select backend refuses a descriptor >= FD_SETSIZE with a clear error,
//! never undefined behaviour; with epoll, echo_server holds 5000 concurrent connections.

mod support;

use sockloop::poller::{Interest, Selector};
use sockloop::{Backend, Channel, Loop};
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::Instant;
use support::*;

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
fn select_refuses_descriptor_beyond_fd_setsize(backend: Backend) {
    raise_nofile(4096);
    let fd_setsize = libc::FD_SETSIZE as i32;
    if backend != Backend::Select {
        // The other backends take high descriptors.
        let (ch, _) = socket_at_or_above(fd_setsize + 200);
        let mut lp = new_loop(backend);
        let c = Counts::new();
        let (ch2, p2) = socket_at_or_above(fd_setsize + 300);
        lp.add(ch, sockloop::Ignore).unwrap();
        lp.add(ch2, Probe::new(&c)).unwrap();
        (&p2).write_all(b"high").unwrap();
        drive(&mut lp, "data on a high descriptor", |_| c.data.borrow().len() == 4);
        return;
    }
    for min in [fd_setsize, fd_setsize + 500] {
        let (ch, _peer) = socket_at_or_above(min);
        let fd = ch.fileno();

        // The Selector API refuses it the same way.
        let mut sel = Selector::new(Backend::Select).unwrap();
        let e = sel.set_interest(std::os::fd::AsFd::as_fd(&ch), 1, Interest::READ).unwrap_err();
        assert!(e.to_string().contains("range"), "{e}");

        let mut lp = Loop::with_backend(Backend::Select).unwrap();
        let err = lp.add(ch, sockloop::Ignore).expect_err("select must refuse the descriptor");
        let msg = err.to_string();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert!(msg.contains(&fd.to_string()) && msg.contains("range") && msg.contains("1024"), "{msg}");
        assert!(lp.is_empty(), "nothing half-added");
        lp.poll(Some(std::time::Duration::ZERO)).unwrap();
    }
    // Just below the limit is fine.
    let (ch, _peer) = socket_at_or_above(fd_setsize - 1);
    if ch.fileno() == fd_setsize - 1 {
        let mut lp = Loop::with_backend(Backend::Select).unwrap();
        lp.add(ch, sockloop::Ignore).expect("fd 1023 fits in an fd_set");
    }
}

backend_tests!(select_refuses_descriptor_beyond_fd_setsize);

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
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    assert!(guard.wait_exit(DEADLINE).success());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, format!("served {N} connections, echoed {} bytes\n", N * 28));
    let took = t0.elapsed();
    eprintln!("{N} connections: {took:?}");
    assert!(took < std::time::Duration::from_secs(20), "took {took:?}");
}
