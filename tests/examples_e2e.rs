//! The seed's two examples end to end, as processes (issue 2, "Tests that must show it"):
//! echo_server under 200 concurrent real client sockets on every backend, its SIGTERM
//! shutdown, and http_client against Python's http.server.

mod support;

use sockloop::Backend;
use std::io::{BufReader, Read};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use support::*;

/// Message sizes for 200 clients, 1 B to 1 MiB (log-uniform, both ends included), at most
/// 40 MiB in all.
fn message_sizes(seed: u64) -> Vec<Vec<usize>> {
    let mut rng = Rng(seed);
    let mut sizes: Vec<Vec<usize>> = (0..200)
        .map(|_| {
            (0..3)
                .map(|_| {
                    let bits = rng.range(0, 20);
                    rng.range(1, 1 << bits) as usize
                })
                .collect()
        })
        .collect();
    sizes[0][0] = 1;
    sizes[1][0] = 1 << 20;
    let budget = 40 << 20;
    let mut total: usize = sizes.iter().flatten().sum();
    'trim: for client in sizes.iter_mut().skip(2) {
        for s in client.iter_mut() {
            if total <= budget {
                break 'trim;
            }
            let cut = (*s / 2).max(1);
            total -= *s - cut;
            *s = cut;
        }
    }
    sizes
}

// echo_server with 200 concurrent real clients sending random-sized messages (1 B to 1 MiB),
// every byte echoed in order, on every backend; then SIGTERM: exit status 0 and the totals.
fn echo_server_200_concurrent_clients(backend: Backend) {
    let sizes = message_sizes(0xec40);
    let total: usize = sizes.iter().flatten().sum();
    assert!(sizes.iter().flatten().any(|&s| s == 1) && sizes.iter().flatten().any(|&s| s == 1 << 20));
    let t0 = std::time::Instant::now();
    let (mut server, addr, mut stdout) = start_echo_server(backend, &[]);
    let barrier = Arc::new(Barrier::new(sizes.len()));
    let handles: Vec<_> = sizes
        .iter()
        .enumerate()
        .map(|(i, msgs)| {
            let msgs = msgs.clone();
            let barrier = barrier.clone();
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let s = tcp_client(addr);
                    barrier.wait(); // all 200 connected at once
                    let mut rng = Rng(i as u64 * 7919 + 1);
                    let data: Vec<Vec<u8>> = msgs.iter().map(|&n| rng.bytes(n)).collect();
                    let expected = data.concat();
                    let w = s.try_clone().unwrap();
                    let writer = std::thread::Builder::new()
                        .stack_size(128 * 1024)
                        .spawn(move || {
                            for m in &data {
                                std::io::Write::write_all(&mut &w, m).expect("send");
                            }
                        })
                        .unwrap();
                    let mut got = vec![0u8; expected.len()];
                    (&s).read_exact(&mut got).unwrap_or_else(|e| panic!("client {i}: {e}"));
                    writer.join().unwrap();
                    assert!(got == expected, "client {i}: the echo differs");
                    drop(s);
                })
                .unwrap()
        })
        .collect();
    for h in handles {
        h.join().unwrap_or_else(|_| panic!("{backend:?}: a client failed"));
    }
    sigterm(&mut server);
    let status = server.wait_exit(DEADLINE);
    assert!(status.success(), "{backend:?}: exit status {status:?}");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, format!("served 200 connections, echoed {total} bytes\n"), "{backend:?}");
    eprintln!("{backend:?}: 200 clients echoed {total} bytes in {:?}", t0.elapsed());
}

// SIGTERM with a client still connected and output queued: the server stops accepting,
// flushes what it owes, prints what it served and exits 0 without waiting for the peer.
fn echo_server_sigterm_flushes_and_exits_zero(backend: Backend) {
    let (mut server, addr, mut stdout) = start_echo_server(backend, &[]);
    let s = tcp_client(addr);
    std::io::Write::write_all(&mut &s, b"hello").unwrap();
    let mut got = [0u8; 5];
    (&s).read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello");
    // 4 MiB more, not read yet: the tail waits in the server's output.
    let big = Rng(5).bytes(4 << 20);
    let w = s.try_clone().unwrap();
    let sent = big.clone();
    let writer = std::thread::spawn(move || {
        let _ = std::io::Write::write_all(&mut &w, &sent);
    });
    let mut echoed = vec![0u8; 1 << 20];
    (&s).read_exact(&mut echoed).unwrap();
    sigterm(&mut server);
    // The server closes after flushing; with our unread input still in its buffer that
    // close may be a reset, which comes after the data it flushed.
    let mut tail = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match (&s).read(&mut buf) {
            Ok(0) => break,
            Ok(n) => tail.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("{backend:?}: reading the tail: {e}"),
        }
    }
    writer.join().unwrap();
    echoed.extend_from_slice(&tail);
    assert!(big.starts_with(&echoed), "{backend:?}: what was echoed is a prefix of what was sent");
    let status = server.wait_exit(DEADLINE);
    assert!(status.success(), "{backend:?}: {status:?}");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert!(
        rest.starts_with("served 1 connections, echoed ") && rest.ends_with(" bytes\n"),
        "{backend:?}: {rest:?}"
    );
    // It stopped listening.
    assert!(TcpStream::connect(addr).is_err(), "{backend:?}: still accepting after SIGTERM");
}

fn require_python() {
    let ok = Command::new("python3").arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    assert!(ok, "python3 is required for this test (scripts/ensure-test-deps installs it)");
}

/// Runs a command to completion within [`DEADLINE`]; returns (status, stdout, stderr).
fn run(cmd: &mut Command) -> (std::process::ExitStatus, Vec<u8>, String) {
    let mut guard = ChildGuard(Some(
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn"),
    ));
    let mut out = guard.child().stdout.take().unwrap();
    let mut err = guard.child().stderr.take().unwrap();
    let o = std::thread::spawn(move || {
        let mut v = Vec::new();
        out.read_to_end(&mut v).unwrap();
        v
    });
    let e = std::thread::spawn(move || {
        let mut v = String::new();
        err.read_to_string(&mut v).unwrap();
        v
    });
    let status = guard.wait_exit(DEADLINE);
    (status, o.join().unwrap(), e.join().unwrap())
}

// http_client against Python's http.server serving a binary file: exit 0, stdout is the raw
// response and ends with the exact file bytes; on every backend.
fn http_client_fetches_binary_file(backend: Backend) {
    require_python();
    let dir = TempDir::new("http");
    let mut content: Vec<u8> = (0..=255u8).collect();
    content.extend(Rng(42).bytes(300_000));
    content.extend_from_slice(b"\r\n\r\n\0end");
    std::fs::write(dir.path("blob.bin"), &content).unwrap();
    let mut server = ChildGuard(Some(
        Command::new("python3")
            .args(["-u", "-m", "http.server", "--bind", "127.0.0.1", "0", "--directory"])
            .arg(&dir.0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn python3 -m http.server"),
    ));
    let stdout = BufReader::new(server.child().stdout.take().unwrap());
    let (line, _stdout) = read_line_within(stdout, DEADLINE);
    // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
    let port: u16 = line
        .split_whitespace()
        .skip_while(|w| *w != "port")
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("cannot find the port in {line:?}"));
    let url = format!("http://127.0.0.1:{port}/blob.bin");
    let (status, out, err) =
        run(Command::new(example_path("http_client")).arg(&url).args(["--backend", backend.name()]));
    assert!(status.success(), "{backend:?}: {status:?} {err}");
    assert!(
        out.starts_with(b"HTTP/1.0 200"),
        "{backend:?}: {:?}",
        String::from_utf8_lossy(&out[..40.min(out.len())])
    );
    assert!(out.ends_with(&content), "{backend:?}: stdout ends with the exact file bytes");
    let head_len = out.len() - content.len();
    let head = String::from_utf8_lossy(&out[..head_len]).to_lowercase();
    assert!(head.contains(&format!("content-length: {}", content.len())), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "headers, then exactly the body: {head:?}");
}

// http_client exits nonzero with one line on stderr when it cannot connect.
fn http_client_cannot_connect(backend: Backend) {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }; // closed now: connections are refused
    let url = format!("http://127.0.0.1:{port}/x");
    let (status, out, err) =
        run(Command::new(example_path("http_client")).arg(&url).args(["--backend", backend.name()]));
    assert!(!status.success(), "{backend:?}");
    assert!(out.is_empty(), "{backend:?}: nothing on stdout");
    assert_eq!(err.lines().count(), 1, "{backend:?}: exactly one line: {err:?}");
    assert!(err.ends_with('\n') && err.to_lowercase().contains("refused"), "{backend:?}: {err:?}");
}

// echo_server --help and http_client --help work (clap), and a bad flag is refused.
#[test]
fn examples_help() {
    for name in ["echo_server", "http_client"] {
        let (status, out, _) = run(Command::new(example_path(name)).arg("--help"));
        assert!(status.success(), "{name} --help");
        assert!(String::from_utf8_lossy(&out).contains("Usage"), "{name}");
    }
    let (status, _, err) = run(Command::new(example_path("echo_server")).args(["--backend", "kqueue9"]));
    assert!(!status.success() && err.contains("unknown backend"), "{err}");
}

// Issue 6: `--idle-timeout SECS` closes a silent client, not one that keeps talking, and
// nothing is closed for idleness without it.
fn echo_server_idle_timeout(backend: Backend) {
    let (_guard, addr, _stdout) = start_echo_server(backend, &["--idle-timeout", "1"]);
    let mut silent = tcp_client(addr);
    let mut talker = tcp_client(addr);
    let start = std::time::Instant::now();
    // The talker speaks every 100 ms for 1.5 s, well past the silent client's timeout.
    while start.elapsed() < std::time::Duration::from_millis(1500) {
        std::io::Write::write_all(&mut talker, b"hi").unwrap();
        let mut got = [0u8; 2];
        talker.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hi", "{backend:?}");
        // Pacing the client, not synchronisation: the assertions wait on the server.
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // The silent one was closed by the server: end of stream, within the deadline.
    let mut rest = Vec::new();
    silent.read_to_end(&mut rest).expect("the server closes the silent client");
    assert!(rest.is_empty());
    assert!(start.elapsed() >= std::time::Duration::from_secs(1), "{backend:?}: closed early");
}

backend_tests!(
    echo_server_200_concurrent_clients,
    echo_server_sigterm_flushes_and_exits_zero,
    http_client_fetches_binary_file,
    http_client_cannot_connect,
    echo_server_idle_timeout
);
