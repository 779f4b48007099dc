//! The seed's HTTP client: `GET path HTTP/1.0`, the raw response on stdout.
//!
//! ```text
//! cargo run --release --example http_client -- http://127.0.0.1:8000/index.html
//! ```
//! Exits 0 when the server closes the connection; with one line on stderr and status 1 when it
//! cannot connect, status 2 for a bad URL.

use clap::Parser;
use sockloop::{Channel, Context, Dispatcher, Loop};
use std::cell::RefCell;
use std::io::{self, Write};
use std::net::ToSocketAddrs;
use std::process::ExitCode;
use std::rc::Rc;

#[derive(Parser)]
#[command(about = "asyncore's HTTP client on sockloop: fetches a URL with HTTP/1.0")]
struct Args {
    /// http://host[:port]/path
    url: String,
    /// Readiness backend: auto, select, poll or epoll.
    #[arg(long, default_value = "auto")]
    backend: String,
}

/// `http://host:port/path` split into its parts.
fn parse_url(url: &str) -> Result<(String, u16, String), String> {
    let rest = url.strip_prefix("http://").ok_or("only http:// URLs are supported")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            (h, p.parse::<u16>().map_err(|_| format!("bad port {p:?}"))?)
        }
        _ => (authority, 80),
    };
    if host.is_empty() {
        return Err("missing host".into());
    }
    Ok((host.trim_matches(['[', ']']).to_string(), port, path.to_string()))
}

struct HttpClient {
    request: Vec<u8>,
    failure: Rc<RefCell<Option<String>>>,
}

impl Dispatcher for HttpClient {
    fn writable(&self) -> bool {
        false
    }

    fn handle_connect(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let request = std::mem::take(&mut self.request);
        cx.channel.send_all(&request)
    }

    fn handle_read(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let n = cx.channel.recv(cx.scratch)?;
        io::stdout().lock().write_all(&cx.scratch[..n])
    }

    fn handle_error(&mut self, err: io::Error, cx: &mut Context<'_>) {
        *self.failure.borrow_mut() = Some(err.to_string());
        cx.channel.close();
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let (host, port, path) = match parse_url(&args.url) {
        Ok(parts) => parts,
        Err(e) => {
            eprintln!("http_client: {}: {e}", args.url);
            return ExitCode::from(2);
        }
    };
    match fetch(&host, port, &path, &args.backend) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("http_client: cannot fetch {}: {e}", args.url);
            ExitCode::from(1)
        }
    }
}

fn fetch(host: &str, port: u16, path: &str, backend: &str) -> io::Result<()> {
    let backend = sockloop::Backend::parse(backend)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "unknown backend"))?;
    let addr = (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "host has no address"))?;
    let failure = Rc::new(RefCell::new(None));
    let request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").into_bytes();
    let mut lp = Loop::with_backend(backend)?;
    lp.add(Channel::tcp_connect(addr)?, HttpClient { request, failure: failure.clone() })?;
    lp.run()?;
    io::stdout().flush()?;
    let failed = failure.borrow_mut().take();
    match failed {
        Some(msg) => Err(io::Error::other(format!("{addr}: {msg}"))),
        None => Ok(()),
    }
}
