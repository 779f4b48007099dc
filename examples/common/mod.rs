//! What every example server does the same way: parse `--backend`, listen, print
//! `listening on HOST:PORT`, shut down gracefully on SIGINT/SIGTERM, run until the map is empty.
//! (Not an example itself: cargo only builds `examples/*.rs` and `examples/*/main.rs`.)
//! Each example uses a part of it: `serve` (one loop) or `serve_threads` (`--threads N`).
#![allow(dead_code)]

use sockloop::group::{LoopGroup, Member, SharedListener, Sharing};
use sockloop::{Backend, Channel, Dispatcher, Loop};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::Duration;

/// clap's value parser for `--backend auto|select|poll|epoll`.
pub fn parse_backend(s: &str) -> Result<Backend, String> {
    Backend::parse(s).ok_or_else(|| format!("unknown backend {s:?} (auto, select, poll, epoll)"))
}

/// Runs `server` as the handler of a TCP listener on `bind` until the map is empty. Prints
/// exactly `listening on HOST:PORT` (the real port) once ready; SIGINT or SIGTERM stops
/// accepting and gives the other channels `grace` seconds to flush before they are closed.
pub fn serve(
    backend: Backend,
    bind: SocketAddr,
    backlog: i32,
    grace: f64,
    server: impl Dispatcher,
) -> io::Result<()> {
    let mut lp = Loop::with_backend(backend)?;
    let listener = Channel::tcp_listener(bind, backlog)?;
    let local = listener.local_addr()?.as_socket().expect("a TCP listener has an IP address");
    lp.add(listener, server)?;
    let grace = Duration::from_secs_f64(grace);
    for sig in [libc::SIGINT, libc::SIGTERM] {
        lp.on_signal(sig, move |lp| lp.shutdown(grace))?;
    }
    println!("listening on {local}");
    io::stdout().flush()?;
    lp.run()
}

/// The flags every multi-loop server shares (`--threads`, `--sharing`, `--pin`,
/// `--migrate-requests`), flattened into its `Args`.
#[derive(clap::Args, Clone, Debug)]
pub struct ThreadArgs {
    /// Loops, one per thread, serving the same address (0: one per CPU this process may use).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// How the loops share the address: reuseport (one SO_REUSEPORT listener per loop) or
    /// handoff (one loop accepts and hands connections round-robin).
    #[arg(long, default_value = "reuseport", value_parser = parse_sharing)]
    pub sharing: Sharing,
    /// Pin loop i to the i-th CPU this process may use.
    #[arg(long)]
    pub pin: bool,
    /// Set net.ipv4.tcp_migrate_req to 1 if writable (a namespace-wide setting), so a closing
    /// reuseport listener's queued connections move to another loop.
    #[arg(long)]
    pub migrate_requests: bool,
}

/// clap's value parser for `--sharing reuseport|handoff`.
pub fn parse_sharing(s: &str) -> Result<Sharing, String> {
    match s {
        "reuseport" => Ok(Sharing::ReusePort),
        "handoff" => Ok(Sharing::Handoff),
        _ => Err(format!("unknown sharing {s:?} (reuseport, handoff)")),
    }
}

/// [`serve`] for `--threads N`: a [`LoopGroup`] of N loops (one by default) on one
/// [`SharedListener`], `make` building each loop's server dispatcher on its thread (per-loop
/// counters are added up in `member.on_exit`). With one loop the listener is the same as
/// `serve`'s (`SO_REUSEADDR`, no `SO_REUSEPORT`). Prints one `listening on HOST:PORT` once every loop is ready;
/// SIGINT/SIGTERM shut every loop down with `grace`; returns once all have ended (an error
/// names a loop that failed).
pub fn serve_threads<D, F>(
    backend: Backend,
    bind: SocketAddr,
    backlog: i32,
    grace: f64,
    threads: &ThreadArgs,
    make: F,
) -> io::Result<()>
where
    D: Dispatcher,
    F: Fn(&Member) -> D + Send + Sync + 'static,
{
    let n = LoopGroup::builder().threads(threads.threads).thread_count();
    let listener = SharedListener::bind(bind, backlog, n, threads.sharing)?;
    let local = listener.local_addr();
    let group = LoopGroup::builder()
        .threads(n)
        .backend(backend)
        .pin(threads.pin)
        .migrate_requests(threads.migrate_requests)
        .shutdown_on_signals(Duration::from_secs_f64(grace))
        .start(move |lp, member| {
            let server = make(member);
            listener.attach(lp, member, server)?;
            Ok(())
        })?;
    println!("listening on {local}");
    io::stdout().flush()?;
    group.join()
}
