//! Endurance (issue 5): connections churned through the echo_server example leave its
//! descriptors and memory where they started.
//!
//! The normal suite churns 5 000 connections; `scripts/soak` runs the ignored 200 000 version.
//! Each client binds one of eight loopback addresses (so 200 000 connections do not exhaust
//! one address's ephemeral ports), sends 64 bytes, half-closes, and reads the echo until the
//! server closes: the server closes first, after sending everything it owed.

mod support;

use std::io::{BufRead, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

struct Server {
    child: std::process::Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_echo() -> Server {
    let mut child = std::process::Command::new(support::example_path("echo_server"))
        .args(["--bind", "127.0.0.1:0", "--quiet"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("listening on ").unwrap().parse().unwrap();
    Server { child, addr }
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn churn_one(server: SocketAddr, source: u8, msg: &[u8]) {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let local: SocketAddr = format!("127.0.0.{source}:0").parse().unwrap();
    sock.bind(&local.into()).unwrap();
    sock.connect(&server.into()).unwrap();
    let mut s: std::net::TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(msg).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::with_capacity(msg.len());
    s.read_to_end(&mut got).unwrap();
    assert_eq!(got, msg);
}

fn churn(total: usize) {
    let server = start_echo();
    let pid = server.child.id();
    // Warm up so the baseline includes the loop's own buffers.
    churn_one(server.addr, 1, b"warm-up");
    let fds_before = open_fds(pid);
    let rss_before = rss_kib(pid);
    let threads = 8;
    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let addr = server.addr;
            std::thread::spawn(move || {
                let msg: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(t as u8 + 1)).collect();
                for _ in 0..total / threads {
                    churn_one(addr, 1 + t as u8, &msg);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let elapsed = start.elapsed();
    // The server closes each connection after its echo; wait until all are gone.
    let deadline = Instant::now() + Duration::from_secs(20);
    while open_fds(pid) > fds_before && Instant::now() < deadline {
        std::thread::yield_now();
    }
    let fds_after = open_fds(pid);
    let rss_after = rss_kib(pid);
    eprintln!(
        "churned {total} connections in {elapsed:.1?}: descriptors {fds_before} -> {fds_after}, RSS {rss_before} -> {rss_after} KiB"
    );
    assert_eq!(fds_after, fds_before, "descriptors leaked");
    assert!(rss_after <= rss_before + 2048, "RSS grew from {rss_before} to {rss_after} KiB");
}

#[test]
fn five_thousand_connections_leave_no_descriptor_or_memory_behind() {
    churn(5_000);
}

#[test]
#[ignore = "endurance run: scripts/soak"]
fn two_hundred_thousand_connections_leave_no_descriptor_or_memory_behind() {
    churn(200_000);
}
