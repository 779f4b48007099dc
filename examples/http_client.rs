//! The seed's HTTP client: `GET path HTTP/1.0`, the raw response on stdout.
//!
//! ```text
//! cargo run --release --example http_client -- http://127.0.0.1:8000/index.html
//! ```
//! Exits 0 when the server closes the connection; with one line on stderr and status 1 when it
//! cannot connect, status 2 for a bad URL.
//!
//! `https://HOST[:PORT]/PATH` fetches over TLS: the server's certificate is verified against
//! `--ca-file PEM` (default: the Mozilla roots compiled in), its name against HOST (a DNS name,
//! also sent as SNI, or an IP literal such as 127.0.0.1); a failed verification exits 1 with
//! one line on stderr. A server that closes without `close_notify` after sending a response
//! ends it like a plain close (as most HTTP/1.0 servers do); before any byte it is an error.

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
    /// Readiness backend: auto, select, poll, epoll or uring (io_uring, Linux).
    #[arg(long, default_value = "auto")]
    backend: String,
    /// For https:// URLs: trust only the certificates in this PEM file.
    #[arg(long, value_name = "PEM")]
    ca_file: Option<std::path::PathBuf>,
}

/// What to fetch.
struct Target {
    tls: bool,
    host: String,
    port: u16,
    path: String,
}

/// `http://host:port/path` (or `https://`) split into its parts.
fn parse_url(url: &str) -> Result<Target, String> {
    let (tls, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(rest), _) => (false, rest),
        (None, Some(rest)) => (true, rest),
        (None, None) => return Err("only http:// and https:// URLs are supported".into()),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            (h, p.parse::<u16>().map_err(|_| format!("bad port {p:?}"))?)
        }
        _ => (authority, if tls { 443 } else { 80 }),
    };
    if host.is_empty() {
        return Err("missing host".into());
    }
    Ok(Target { tls, host: host.trim_matches(['[', ']']).to_string(), port, path: path.to_string() })
}

struct HttpClient {
    request: Vec<u8>,
    failure: Rc<RefCell<Option<String>>>,
    received: bool,
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
        self.received |= n > 0;
        io::stdout().lock().write_all(&cx.scratch[..n])
    }

    fn handle_error(&mut self, err: io::Error, cx: &mut Context<'_>) {
        // A TLS server that ends a response without close_notify: the end of the response.
        let truncated = err.kind() == io::ErrorKind::UnexpectedEof && cx.channel.is_tls();
        if !(truncated && self.received) {
            *self.failure.borrow_mut() = Some(err.to_string());
        }
        cx.channel.close();
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let target = match parse_url(&args.url) {
        Ok(target) => target,
        Err(e) => {
            eprintln!("http_client: {}: {e}", args.url);
            return ExitCode::from(2);
        }
    };
    match fetch(&target, &args.backend, args.ca_file.as_deref()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("http_client: cannot fetch {}: {e}", args.url);
            ExitCode::from(1)
        }
    }
}

fn fetch(target: &Target, backend: &str, ca_file: Option<&std::path::Path>) -> io::Result<()> {
    let Target { tls, host, port, path } = target;
    let (host, port) = (host.as_str(), *port);
    let backend = sockloop::Backend::parse(backend)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "unknown backend"))?;
    let addr = (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "host has no address"))?;
    let failure = Rc::new(RefCell::new(None));
    let request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").into_bytes();
    let mut lp = Loop::with_backend(backend)?;
    let mut channel = Channel::tcp_connect(addr)?;
    if *tls {
        let connector = match ca_file {
            Some(ca) => sockloop::tls::TlsConnector::from_ca_file(ca)?,
            None => sockloop::tls::TlsConnector::new(),
        };
        channel = channel.tls_client(&connector.with_alpn(&[b"http/1.1"]), host)?;
    }
    lp.add(channel, HttpClient { request, failure: failure.clone(), received: false })?;
    lp.run()?;
    io::stdout().flush()?;
    let failed = failure.borrow_mut().take();
    match failed {
        Some(msg) => Err(io::Error::other(format!("{addr}: {msg}"))),
        None => Ok(()),
    }
}
