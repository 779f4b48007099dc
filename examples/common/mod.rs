//! What every example server does the same way: parse `--backend`, listen, print
//! `listening on HOST:PORT`, shut down gracefully on SIGINT/SIGTERM, run until the map is empty.
//! (Not an example itself: cargo only builds `examples/*.rs` and `examples/*/main.rs`.)

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
