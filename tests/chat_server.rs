//! chat_server as a process, driven by std TcpStream clients in threads: every line reaches
//! every other client in each sender's order over every backend, joins and departures are
//! announced, a client that never reads is dropped at its output limit while the others go
//! on, an endless line closes only its sender with memory bounded, and the idle timeout fires.

mod support;

use sockloop::Backend;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::thread;
use std::time::Instant;
use support::process::{read_to_close, Lines, Server};
use support::DEADLINE;

/// Connects and joins as `nick`; returns the line reader once the server welcomed it.
fn join(server: &Server, nick: &str) -> Lines {
    let mut c = Lines::new(server.connect());
    assert_eq!(c.line(), "* hello; your nick?");
    c.send(format!("{nick}\r\n").as_bytes());
    assert_eq!(c.line(), format!("* welcome, {nick}"));
    c
}

fn every_line_reaches_every_other_client(backend: Backend) {
    const CLIENTS: usize = 5;
    const LINES: usize = 400;
    let server = Server::start("chat_server", &["--backend", backend.name(), "--quiet"]);
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let mut clients: Vec<Lines> = Vec::new();
    for i in 0..CLIENTS {
        clients.push(join(&server, &format!("user{i}")));
    }
    let threads: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(me, mut c)| {
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                let mut out = Vec::new();
                for n in 0..LINES {
                    out.extend_from_slice(format!("line {n} from {me} \u{e9}\u{1F600}\r\n").as_bytes());
                }
                c.send(&out);
                // Next expected line number from each sender.
                let mut next = [0usize; CLIENTS];
                let mut remaining = (CLIENTS - 1) * LINES;
                while remaining > 0 {
                    let line = c.line();
                    if line.starts_with("* ") {
                        continue; // join announcements of later joiners
                    }
                    let (nick, text) = line.split_once(": ").unwrap_or_else(|| panic!("bad line {line:?}"));
                    let from: usize = nick.strip_prefix("user").unwrap().parse().unwrap();
                    assert_ne!(from, me, "a client got its own line back");
                    assert_eq!(
                        text,
                        format!("line {} from {from} \u{e9}\u{1F600}", next[from]),
                        "out of order"
                    );
                    next[from] += 1;
                    remaining -= 1;
                }
                c
            })
        })
        .collect();
    let clients: Vec<Lines> = threads.into_iter().map(|t| t.join().expect("a client failed")).collect();
    drop(clients);
    let (status, out) = server.stop();
    assert!(status.success(), "exit status {status}");
    assert!(out.contains(&format!("relayed {} lines", CLIENTS * LINES)), "{out}");
}

#[test]
fn joins_and_departures_are_announced() {
    let server = Server::start("chat_server", &["--quiet"]);
    let mut a = join(&server, "alice");
    let b = join(&server, "bob");
    assert_eq!(a.line(), "* bob joined");
    drop(b);
    assert_eq!(a.line(), "* bob left");
    // A nick line may not be empty.
    let mut c = Lines::new(server.connect());
    assert_eq!(c.line(), "* hello; your nick?");
    c.send(b"\r\n");
    assert!(c.line().starts_with("! "));
    let (status, _) = server.stop();
    assert!(status.success());
}

fn a_client_that_never_reads_is_dropped_and_the_others_go_on(backend: Backend) {
    let server =
        Server::start("chat_server", &["--backend", backend.name(), "--quiet", "--output-limit", "65536"]);
    let slow = join(&server, "slow"); // never reads again
    let mut sender = join(&server, "sender");
    let mut receiver = join(&server, "receiver");
    assert_eq!(sender.line(), "* receiver joined");
    // receiver: counts the sender's lines (checking their order) and notices "slow" leaving.
    let progress = Arc::new((Mutex::new(0usize), Condvar::new()));
    let slow_left = Arc::new(AtomicBool::new(false));
    let reader = {
        let (progress, slow_left) = (progress.clone(), slow_left.clone());
        thread::spawn(move || loop {
            let line = receiver.line();
            if line == "* slow left" {
                slow_left.store(true, Ordering::SeqCst);
            } else if line == "sender: done" {
                return *progress.0.lock().unwrap();
            } else if let Some(n) = line.strip_prefix("sender: ") {
                let mut got = progress.0.lock().unwrap();
                assert_eq!(n.split(' ').next().unwrap(), got.to_string(), "out of order");
                *got += 1;
                progress.1.notify_all();
            }
            if line == "* slow left" {
                progress.1.notify_all();
            }
        })
    };
    // sender: 32 lines of 1 KiB at a time, each batch waited for by the receiver, until the
    // server drops "slow" (bounded at 256 MiB in all).
    let pad = "x".repeat(1000);
    let t0 = Instant::now();
    let mut sent = 0usize;
    while !slow_left.load(Ordering::SeqCst) {
        assert!(sent < 256 * 1024, "the slow reader was never dropped");
        assert!(t0.elapsed() < DEADLINE, "the slow reader was not dropped in time");
        let mut batch = Vec::new();
        for _ in 0..32 {
            batch.extend_from_slice(format!("{sent} {pad}\r\n").as_bytes());
            sent += 1;
        }
        sender.send(&batch);
        let (lock, cv) = &*progress;
        let (got, _) = cv
            .wait_timeout_while(lock.lock().unwrap(), DEADLINE, |got| {
                *got < sent && !slow_left.load(Ordering::SeqCst)
            })
            .unwrap();
        assert!(*got >= sent || slow_left.load(Ordering::SeqCst), "the receiver stalled");
    }
    sender.send(b"done\r\n");
    let received = reader.join().expect("the receiver failed");
    assert_eq!(received, sent, "the receiver missed lines while the slow client was dropped");
    assert_eq!(sender.line(), "* slow left");
    // The slow client gets what was queued before it was dropped, then the end of the stream.
    let mut slow = slow.r.into_inner();
    read_to_close(&mut slow);
    assert!(server.stderr().contains("closing slow"), "{}", server.stderr());
    let (status, out) = server.stop();
    assert!(status.success());
    assert!(out.contains("dropped 1 slow readers"), "{out}");
}

fn an_endless_line_closes_only_its_sender(backend: Backend) {
    let server =
        Server::start("chat_server", &["--backend", backend.name(), "--quiet", "--max-line", "4096"]);
    let mut a = join(&server, "a");
    let mut b = join(&server, "b");
    assert_eq!(a.line(), "* b joined");
    let flooder = join(&server, "flood");
    assert_eq!(a.line(), "* flood joined");
    assert_eq!(b.line(), "* flood joined");
    let mut w = flooder.r.get_ref().try_clone().unwrap();
    let writer = thread::spawn(move || {
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..128 {
            // 8 MiB without a newline; the server closes us part way: errors are expected.
            if w.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    // The flooder gets an error line (unless the reset beats it) and the end of the stream.
    let mut f = flooder.r.into_inner();
    let got = read_to_close(&mut f);
    assert!(got.is_empty() || String::from_utf8_lossy(&got).contains("line too long"));
    writer.join().unwrap();
    assert_eq!(a.line(), "* flood left");
    // Everyone else is still served.
    a.send(b"still here\r\n");
    assert_eq!(b.line(), "* flood left");
    assert_eq!(b.line(), "a: still here");
    let rss = server.rss_kib();
    assert!(rss < 64 * 1024, "server RSS {rss} KiB after an 8 MiB line");
    let (status, _) = server.stop();
    assert!(status.success());
}

fn idle_clients_are_closed(backend: Backend) {
    let server =
        Server::start("chat_server", &["--backend", backend.name(), "--quiet", "--idle-timeout", "1"]);
    let c = join(&server, "sleepy");
    let mut s = c.r.into_inner();
    let got = read_to_close(&mut s); // the read timeout (30 s) is the deadline
    assert!(String::from_utf8_lossy(&got).contains("idle timeout"), "{got:?}");
    let (status, _) = server.stop();
    assert!(status.success());
}

fn sigterm_says_goodbye_and_exits(backend: Backend) {
    let server = Server::start("chat_server", &["--backend", backend.name(), "--quiet"]);
    let a = join(&server, "a");
    server.terminate();
    let mut s = a.r.into_inner();
    let got = String::from_utf8_lossy(&read_to_close(&mut s)).into_owned();
    assert!(got.contains("* server shutting down"), "{got:?}");
    let (status, out) = server.stop();
    assert!(status.success());
    assert!(out.contains("served 1 connections"), "{out}");
}

backend_tests!(
    every_line_reaches_every_other_client,
    a_client_that_never_reads_is_dropped_and_the_others_go_on,
    an_endless_line_closes_only_its_sender,
    idle_clients_are_closed,
    sigterm_says_goodbye_and_exits
);
