//! The seed's echo server: echoes everything each client sends.
//!
//! ```text
//! cargo run --release --example echo_server -- --bind 127.0.0.1:0 --backend epoll --quiet
//! ```
//! Prints `listening on HOST:PORT` once ready. Reads up to 64 KiB per `recv` into the loop's
//! one shared buffer, keeps only unsent bytes per client, sets `TCP_NODELAY`, stops reading
//! from a client whose unsent output passes the soft limit, and after a half-close sends
//! everything owed before closing. SIGINT/SIGTERM: stop accepting, flush (5 s), print totals,
//! exit 0. `--threads N` runs N loops on the same address (`--sharing reuseport|handoff`). With
//! `--tls-cert CERT --tls-key KEY` it echoes over TLS 1.2 and 1.3 instead.

#[path = "common/mod.rs"]
mod common;
#[path = "common/tls.rs"]
mod tls_flags;

use clap::Parser;
use sockloop::{Backend, Channel, Context, Dispatcher, SockAddr, Socket};
use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "asyncore's echo server on sockloop")]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// Readiness backend: auto, select, poll, epoll or uring (io_uring, Linux).
    #[arg(long, default_value = "auto", value_parser = common::parse_backend)]
    backend: Backend,
    /// Do not print a line per connection.
    #[arg(long)]
    quiet: bool,
    /// listen(2) backlog.
    #[arg(long, default_value_t = 1024)]
    backlog: i32,
    /// Close a client after this many seconds without traffic (default: never).
    #[arg(long)]
    idle_timeout: Option<f64>,
    /// Stop reading from a client once this many echoed bytes are unsent.
    #[arg(long, default_value_t = 1 << 20)]
    soft_limit: usize,
    /// Seconds to flush queued output on SIGINT/SIGTERM before closing.
    #[arg(long, default_value_t = 5.0)]
    grace: f64,
    #[command(flatten)]
    threads: common::ThreadArgs,
    #[command(flatten)]
    tls: tls_flags::TlsFlags,
}

#[derive(Default)]
struct Stats {
    connections: Cell<u64>,
    bytes: Cell<u64>,
}

struct EchoHandler {
    stats: Rc<Stats>,
}

impl Dispatcher for EchoHandler {
    fn writable(&self) -> bool {
        false // queued output alone makes the channel writable
    }

    fn urgent_data(&self) -> bool {
        false // an echo has no handle_expt: on io_uring the ring receives its input
    }

    fn handle_read(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let n = cx.channel.recv(cx.scratch)?;
        self.stats.bytes.set(self.stats.bytes.get() + n as u64);
        cx.channel.send_all(&cx.scratch[..n])
    }

    fn handle_close(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        // A half-close still gets everything it is owed.
        cx.channel.close_when_done();
        Ok(())
    }
}

struct EchoServer {
    quiet: bool,
    soft_limit: usize,
    idle: Option<Duration>,
    stats: Rc<Stats>,
    tls: Option<sockloop::tls::TlsAcceptor>,
}

impl Dispatcher for EchoServer {
    fn handle_accepted(&mut self, sock: Socket, addr: SockAddr, cx: &mut Context<'_>) -> io::Result<()> {
        if !self.quiet {
            match addr.as_socket() {
                Some(a) => println!("Incoming connection from {a}"),
                None => println!("Incoming connection from {addr:?}"),
            }
        }
        sock.set_nodelay(true)?;
        let mut ch = Channel::from(sock);
        ch.set_output_limits(self.soft_limit, usize::MAX);
        if let Some(tls) = &self.tls {
            ch = ch.tls_server(tls)?;
        }
        self.stats.connections.set(self.stats.connections.get() + 1);
        // A channel the backend cannot watch (select past FD_SETSIZE) is refused alone: the
        // listener stays up for the others.
        let token = match cx.lp.add(ch, EchoHandler { stats: self.stats.clone() }) {
            Ok(token) => token,
            Err(e) => {
                eprintln!("echo_server: cannot serve {addr:?}: {e}");
                return Ok(());
            }
        };
        if self.idle.is_some() {
            cx.lp.set_idle_timeout(token, self.idle);
        }
        Ok(())
    }
}

fn main() -> io::Result<()> {
    let args = Args::parse();
    // Each loop counts in its own `Stats` (no atomics on the hot path) and adds them to the
    // totals when it ends.
    let totals = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let (quiet, soft_limit) = (args.quiet, args.soft_limit);
    let idle = args.idle_timeout.map(Duration::from_secs_f64);
    let tls = args.tls.acceptor(&[])?;
    let t = totals.clone();
    common::serve_threads(args.backend, args.bind, args.backlog, args.grace, &args.threads, move |member| {
        let stats = Rc::new(Stats::default());
        let (s, t) = (stats.clone(), t.clone());
        member.on_exit(move |_| {
            t[0].fetch_add(s.connections.get(), Ordering::Relaxed);
            t[1].fetch_add(s.bytes.get(), Ordering::Relaxed);
        });
        EchoServer { quiet, soft_limit, idle, stats, tls: tls.clone() }
    })?;
    let [connections, bytes] = &*totals;
    println!(
        "served {} connections, echoed {} bytes",
        connections.load(Ordering::Relaxed),
        bytes.load(Ordering::Relaxed)
    );
    Ok(())
}
