//! A static HTTP/1.1 file server on asynchat: GET and HEAD of the files under `--root`.
//!
//! ```text
//! cargo run --release --example http_server -- --bind 127.0.0.1:0 --root ./public
//! ```
//! Prints `listening on HOST:PORT` once ready. Without `--root` it serves a built-in page at
//! `/`. Keep-alive (HTTP/1.1 by default, HTTP/1.0 with `Connection: keep-alive`), pipelined
//! requests answered in order, `Connection: close` honoured. Request heads end at the blank
//! line (`\r\n\r\n` terminator, at most 8 KiB: 431, or 414 when the request line alone is too
//! long); request bodies are read with a numeric terminator from `Content-Length` and
//! dropped; a `Transfer-Encoding` body is refused with 501. Malformed request line, version or
//! headers: 400 (never 505). Methods other than GET and HEAD: 405 with `Allow`. Responses are
//! produced lazily in order, so a pipelined burst costs a few bytes per queued request, and
//! reading from a client stops while 32 responses are queued for it.
//!
//! Files (`respond.rs`): every file response carries `Content-Length`, `Last-Modified`, an
//! `ETag`, `Accept-Ranges: bytes` and a `Content-Type` from the extension (`mime.rs`);
//! `If-None-Match` (first) or `If-Modified-Since` answer 304 (`conditional.rs`); one `Range`
//! answers 206 or 416, several the whole file, and a stale `If-Range` the whole file
//! (`range.rs`); a directory without its trailing slash is redirected (301) and with it serves
//! its `index.html`. Small files go out with their head; larger ones with `sendfile(2)` from
//! the page cache (`sockloop::chat::FileProducer`), so a big file to a slow reader costs no
//! memory. A file that shrinks while being sent closes that connection.
//!
//! No path resolves outside the root: the target is percent-decoded per segment, `..`, an
//! encoded `/` or `\` or NUL is refused (400), and the kernel resolves the rest beneath the
//! root (`openat2` with `RESOLVE_BENEATH`: a symlink out is 403). Open files and their metadata
//! are cached per thread and resolved again after a second (`files.rs`), so what is on disk is
//! served within one second of a change.
//!
//! Per-connection timeouts: `--header-timeout` (a request head must arrive within it once
//! begun: 408) and `--idle-timeout SECS` (off by default; no traffic at all: closed). No cap on requests per
//! connection or on connections. SIGINT/SIGTERM: stop accepting, flush (`--grace`, 5 s),
//! print totals, exit 0. With `--tls-cert CERT --tls-key KEY` it serves HTTPS (ALPN
//! `http/1.1`) with the same behaviour.

mod conditional;
mod files;
mod mime;
mod range;
mod request;
mod respond;

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/tls.rs"]
mod tls_flags;

use clap::Parser;
use sockloop::chat::{AsyncChat, ChatContext, ChatHandler, InputLimit, Producer};
use sockloop::{Backend, Channel, Context, Dispatcher, SockAddr, Socket, TimerId};
use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

#[derive(Parser)]
#[command(about = "A static HTTP/1.1 file server on sockloop's asynchat")]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8000")]
    bind: SocketAddr,
    /// Directory to serve (default: a built-in page at /).
    #[arg(long)]
    root: Option<PathBuf>,
    /// Seconds a client has to send a whole request head once it has begun (then 408).
    #[arg(long, default_value_t = 20.0)]
    header_timeout: f64,
    /// Seconds without any traffic before a connection is closed.
    /// (Default: none; the DESIGN contract closes nothing for idleness unless asked.)
    #[arg(long)]
    idle_timeout: Option<f64>,
    /// Largest request body (read and dropped) before answering 413 and closing.
    #[arg(long, default_value_t = 16 << 20)]
    max_body: u64,
    /// Readiness backend: auto, select, poll, epoll or uring (io_uring, Linux).
    #[arg(long, default_value = "auto", value_parser = common::parse_backend)]
    backend: Backend,
    /// listen(2) backlog.
    #[arg(long, default_value_t = 1024)]
    backlog: i32,
    /// Seconds to flush queued output on SIGINT/SIGTERM before closing.
    #[arg(long, default_value_t = 5.0)]
    grace: f64,
    #[command(flatten)]
    threads: common::ThreadArgs,
    /// HTTPS: --tls-cert and --tls-key (ALPN offers http/1.1).
    #[command(flatten)]
    tls: tls_flags::TlsFlags,
}

/// Largest request head (request line and headers), in bytes.
const MAX_HEAD: usize = 8192;
/// Responses queued for one client before reading from it pauses.
const MAX_QUEUED: usize = 32;

const BUILTIN_PAGE: &str = "<!DOCTYPE html>\n<html><head><title>sockloop http_server</title></head>\n\
<body><h1>It works</h1><p>Served by sockloop's http_server example (asyncore and asynchat in Rust). \
Start it with <code>--root DIR</code> to serve files.</p></body></html>\n";

struct Config {
    root: Option<PathBuf>,
    header_timeout: Duration,
    max_body: u64,
    date: RefCell<(u64, String)>,
    connections: Cell<u64>,
    requests: Cell<u64>,
}

impl Config {
    /// The Date header value, formatted once per second.
    fn date(&self) -> String {
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
        let mut cached = self.date.borrow_mut();
        if cached.0 != now || cached.1.is_empty() {
            *cached = (now, http_date(now));
        }
        cached.1.clone()
    }
}

/// RFC 9110 IMF-fixdate for `secs` since the epoch.
fn http_date(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        301 => "Moved Permanently",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        _ => "Unknown",
    }
}

/// A response head with Content-Length.
fn response_head(cfg: &Config, status: u16, keep_alive: bool, ctype: &str, len: u64, extra: &str) -> Vec<u8> {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    format!(
        "HTTP/1.1 {status} {}\r\nServer: sockloop\r\nDate: {}\r\nContent-Type: {ctype}\r\nContent-Length: {len}\r\n\
         Connection: {connection}\r\n{extra}\r\n",
        reason(status),
        cfg.date()
    )
    .into_bytes()
}

/// A complete error (or built-in) response.
fn simple_response(cfg: &Config, status: u16, keep_alive: bool, head_only: bool, extra: &str) -> Vec<u8> {
    let body = format!("{status} {}\n", reason(status));
    let mut out =
        response_head(cfg, status, keep_alive, "text/plain; charset=utf-8", body.len() as u64, extra);
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// What a queued response will send; worked out when the fifo reaches it, so queued
/// requests cost little and files are opened one at a time, in order.
enum Job {
    Bytes(Vec<u8>),
    Serve(respond::FileRequest),
}

/// One response as an asynchat producer.
struct Reply {
    cfg: Rc<Config>,
    job: Option<Job>,
    file: Option<respond::Body>,
    queued: Rc<Cell<usize>>,
}

impl Drop for Reply {
    fn drop(&mut self) {
        self.queued.set(self.queued.get() - 1);
    }
}

impl Reply {
    /// The response to a GET or HEAD: its head, and the body or the file to stream.
    fn serve(&mut self, req: &respond::FileRequest) -> io::Result<Vec<u8>> {
        let cfg = self.cfg.clone();
        let (segments, head_only, keep_alive) = (&req.segments, req.head_only, req.keep_alive);
        let Some(root) = cfg.root.as_deref() else {
            if segments.is_empty() || (segments.len() == 1 && segments[0] == b"index.html") {
                let mut out = response_head(
                    &cfg,
                    200,
                    keep_alive,
                    "text/html; charset=utf-8",
                    BUILTIN_PAGE.len() as u64,
                    "",
                );
                if !head_only {
                    out.extend_from_slice(BUILTIN_PAGE.as_bytes());
                }
                return Ok(out);
            }
            return Ok(simple_response(&cfg, 404, keep_alive, head_only, ""));
        };
        let (head, body) = respond::file(&cfg, root, req)?;
        self.file = body;
        Ok(head)
    }
}

impl Producer for Reply {
    fn more(&mut self) -> io::Result<Vec<u8>> {
        match self.job.take() {
            Some(Job::Bytes(b)) => Ok(b),
            Some(Job::Serve(req)) => self.serve(&req),
            None => self.file.as_mut().map_or(Ok(Vec::new()), |f| f.more()),
        }
    }

    /// The file after the head goes with `sendfile`.
    fn sends_directly(&self) -> bool {
        self.job.is_none() && self.file.as_ref().is_some_and(|f| f.sends_directly())
    }

    fn send_to(&mut self, channel: &mut Channel) -> io::Result<usize> {
        self.file.as_mut().map_or(Ok(0), |f| f.send_to(channel))
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    Head,
    /// Dropping a request body (a numeric terminator counts it).
    Body,
    /// The connection closes once its queued responses are sent.
    Done,
}

/// One HTTP connection's protocol state.
struct Http {
    cfg: Rc<Config>,
    phase: Phase,
    head: Vec<u8>,
    /// When the first byte of the request head being collected arrived.
    head_started: Option<Instant>,
    header_timer: Option<(TimerId, Instant)>,
    queued: Rc<Cell<usize>>,
}

impl Http {
    fn queue(&mut self, chat: &mut ChatContext<'_>, job: Job) -> io::Result<()> {
        self.queued.set(self.queued.get() + 1);
        chat.push_with_producer(Reply {
            cfg: self.cfg.clone(),
            job: Some(job),
            file: None,
            queued: self.queued.clone(),
        })
    }

    /// Answers with an error and closes once it is sent.
    fn fail(&mut self, chat: &mut ChatContext<'_>, status: u16) -> io::Result<()> {
        self.phase = Phase::Done;
        self.head = Vec::new();
        let reply = simple_response(&self.cfg, status, false, false, "");
        self.queue(chat, Job::Bytes(reply))?;
        chat.channel.close_when_done();
        Ok(())
    }

    fn request(&mut self, head: &[u8], chat: &mut ChatContext<'_>) -> io::Result<()> {
        self.cfg.requests.set(self.cfg.requests.get() + 1);
        let req = match request::parse_head(head) {
            Ok(req) => req,
            Err(refusal) => return self.fail(chat, refusal.status),
        };
        if req.content_length > self.cfg.max_body {
            return self.fail(chat, 413);
        }
        let head_only = req.method == "HEAD";
        let keep_alive = req.keep_alive;
        let job = match req.method.as_str() {
            "GET" | "HEAD" => match request::path_segments(&req.target) {
                Ok(segments) => Job::Serve(respond::FileRequest {
                    segments,
                    cond: conditional::Conditions::of(&req.headers),
                    target: req.target.clone(),
                    head_only,
                    keep_alive,
                }),
                Err(refusal) => {
                    Job::Bytes(simple_response(&self.cfg, refusal.status, keep_alive, head_only, ""))
                }
            },
            "POST" | "PUT" | "DELETE" | "PATCH" | "OPTIONS" | "TRACE" | "CONNECT" => {
                Job::Bytes(simple_response(&self.cfg, 405, keep_alive, false, "Allow: GET, HEAD\r\n"))
            }
            _ => Job::Bytes(simple_response(&self.cfg, 501, keep_alive, false, "")),
        };
        self.queue(chat, job)?;
        if !keep_alive {
            self.phase = Phase::Done;
            chat.channel.close_when_done();
        } else if req.content_length > 0 {
            self.phase = Phase::Body;
            chat.set_terminator(req.content_length as usize);
        }
        Ok(())
    }
}

impl ChatHandler for Http {
    /// Arms the header timer once a request head has begun (collect_incoming_data has no
    /// context).
    fn after_input(&mut self, chat: &mut ChatContext<'_>) -> io::Result<()> {
        if self.phase == Phase::Head && self.head_started.is_some() && self.header_timer.is_none() {
            let timeout = self.cfg.header_timeout;
            self.header_timer = Some((chat.lp.set_timeout(chat.token(), timeout), Instant::now() + timeout));
        }
        Ok(())
    }

    fn collect_incoming_data(&mut self, data: &[u8]) {
        if self.phase == Phase::Head {
            if self.head_started.is_none() {
                self.head_started = Some(Instant::now());
            }
            self.head.extend_from_slice(data);
        }
    }

    fn found_terminator(&mut self, chat: &mut ChatContext<'_>) -> io::Result<()> {
        match self.phase {
            Phase::Done => Ok(()),
            Phase::Body => {
                self.phase = Phase::Head;
                chat.set_terminator(b"\r\n\r\n");
                chat.set_max_record(MAX_HEAD);
                Ok(())
            }
            Phase::Head => {
                let mut head = std::mem::take(&mut self.head);
                self.head_started = None;
                if let Some((id, _)) = self.header_timer.take() {
                    chat.lp.cancel(id);
                }
                if head.iter().all(|&b| b == b'\r' || b == b'\n') {
                    return Ok(()); // blank lines between requests
                }
                let r = self.request(&head, chat);
                head.clear();
                if self.head.is_empty() && head.capacity() <= MAX_HEAD * 2 {
                    self.head = head;
                }
                r
            }
        }
    }

    fn readable(&self) -> bool {
        self.queued.get() < MAX_QUEUED
    }

    fn handle_shutdown(&mut self, chat: &mut ChatContext<'_>) -> io::Result<()> {
        // Finish the responses under way (file producers included), answer nothing new.
        self.phase = Phase::Done;
        chat.channel.close_when_done();
        Ok(())
    }

    fn handle_close(&mut self, chat: &mut ChatContext<'_>) -> io::Result<()> {
        // A half-close still gets the responses it is owed.
        self.phase = Phase::Done;
        chat.channel.close_when_done();
        Ok(())
    }

    fn handle_error(&mut self, err: io::Error, chat: &mut ChatContext<'_>) {
        if InputLimit::is(&err) && self.phase == Phase::Head {
            let body = self.head.strip_prefix(b"\r\n").unwrap_or(&self.head);
            let status = if body.contains(&b'\n') { 431 } else { 414 };
            if self.fail(chat, status).is_ok() {
                return;
            }
        }
        eprintln!("http_server: closing a connection: {err}");
        chat.channel.close();
    }

    fn handle_timeout(&mut self, chat: &mut ChatContext<'_>) -> io::Result<()> {
        let now = Instant::now();
        let header_due = self.header_timer.is_some_and(|(_, due)| due <= now);
        if header_due {
            self.header_timer = None;
        }
        let head_pending = self.phase == Phase::Head && self.head_started.is_some();
        if head_pending {
            if self.queued.get() >= MAX_QUEUED {
                // Reading is paused until queued responses drain: the client is not late.
                let timeout = self.cfg.header_timeout;
                self.head_started = Some(now);
                self.header_timer = Some((chat.lp.set_timeout(chat.token(), timeout), now + timeout));
                return Ok(());
            }
            return self.fail(chat, 408);
        }
        if !header_due {
            // The idle timeout: nothing happened at all for that long.
            chat.channel.close();
        }
        Ok(())
    }
}

struct Server {
    cfg: Rc<Config>,
    idle: Option<Duration>,
    tls: Option<sockloop::tls::TlsAcceptor>,
}

impl Dispatcher for Server {
    fn handle_accepted(&mut self, sock: Socket, _addr: SockAddr, cx: &mut Context<'_>) -> io::Result<()> {
        sock.set_nodelay(true)?;
        let http = Http {
            cfg: self.cfg.clone(),
            phase: Phase::Head,
            head: Vec::new(),
            head_started: None,
            header_timer: None,
            queued: Rc::new(Cell::new(0)),
        };
        let mut chat = AsyncChat::new(http);
        chat.set_terminator(b"\r\n\r\n");
        chat.set_max_record(MAX_HEAD);
        let channel = match &self.tls {
            Some(tls) => Channel::from(sock).tls_server(tls)?,
            None => Channel::from(sock),
        };
        let token = cx.lp.add(channel, chat)?;
        cx.lp.set_idle_timeout(token, self.idle);
        self.cfg.connections.set(self.cfg.connections.get() + 1);
        Ok(())
    }
}

fn main() -> io::Result<()> {
    let args = Args::parse();
    let root = match &args.root {
        Some(r) => Some(
            std::fs::canonicalize(r)
                .map_err(|e| io::Error::new(e.kind(), format!("--root {}: {e}", r.display())))?,
        ),
        None => None,
    };
    let (header_timeout, max_body) = (Duration::from_secs_f64(args.header_timeout), args.max_body);
    let idle = args.idle_timeout.map(Duration::from_secs_f64);
    let tls = args.tls.acceptor(&[b"http/1.1"])?;
    // Each loop has its own Config (its Date cache, its counters); the counters are added up
    // when the loops end.
    let totals = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let t = totals.clone();
    common::serve_threads(args.backend, args.bind, args.backlog, args.grace, &args.threads, move |member| {
        let cfg = Rc::new(Config {
            root: root.clone(),
            header_timeout,
            max_body,
            date: RefCell::new((0, String::new())),
            connections: Cell::new(0),
            requests: Cell::new(0),
        });
        let (c, t) = (cfg.clone(), t.clone());
        member.on_exit(move |_| {
            t[0].fetch_add(c.connections.get(), Ordering::Relaxed);
            t[1].fetch_add(c.requests.get(), Ordering::Relaxed);
        });
        Server { cfg, idle, tls: tls.clone() }
    })?;
    let [connections, requests] = &*totals;
    println!(
        "served {} connections, {} requests",
        connections.load(Ordering::Relaxed),
        requests.load(Ordering::Relaxed)
    );
    Ok(())
}
