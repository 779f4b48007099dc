//! A receive-only SMTP server (RFC 5321) on asynchat: the role Python's `smtpd` played.
//!
//! ```text
//! cargo run --release --example smtp_sink -- --bind 127.0.0.1:0 --dir /tmp/mail
//! ```
//! Prints `listening on HOST:PORT` once ready. Greets with 220; HELO/EHLO (EHLO advertises
//! `SIZE`, `8BITMIME`, `PIPELINING`), `MAIL FROM:<...>` with `SIZE=n` and `BODY=8BITMIME`
//! (case-insensitive), `RCPT TO:<...>`, `DATA` (354, lines up to the lone `.`, dot-unstuffed),
//! `RSET`, `NOOP`, `VRFY` (252), `HELP`, `QUIT` (221). Unknown verb 500, bad arguments 501,
//! unknown ESMTP parameter 555, wrong order 503 (MAIL before HELO/EHLO too), a message over
//! `--max-size` (32 MiB) 552 at `MAIL ... SIZE=n` or after its DATA, a command line over 4 KiB
//! 500 at once (and the connection closed), `--idle-timeout SECS` (off by default) of silence 421, and a
//! command line not finished within `--command-timeout` (300 s) once begun 421 (a client
//! sending a byte now and then is not idle, but may not hold a session forever).
//!
//! Each accepted message becomes exactly one file in DIR. DATA is streamed, dot-unstuffed, to
//! a file under a temporary name in a directory beside DIR (`--tmp-dir`; a session holds a
//! 64 KiB buffer whatever the message size) and renamed in once the message is complete and
//! accepted, so DIR holds one complete file per message and nothing else: two header lines
//! (`X-Sink-Mail-From:` and `X-Sink-Rcpt-To:`, left out with `--no-headers`), then the exact
//! message after dot-unstuffing. A refused or abandoned message leaves no file anywhere.
//! SIGINT/SIGTERM: stop accepting, flush (`--grace`, 5 s), print totals, exit 0.
//!
//! With `--tls-cert CERT --tls-key KEY`, EHLO advertises `STARTTLS` (RFC 3207): it answers 220,
//! upgrades the same connection, forgets the session (a new EHLO is expected) and drops
//! whatever the client sent in plain text after the command. A client that never asks stays
//! in plain text.

mod command;

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/tls.rs"]
mod tls_flags;

use clap::Parser;
use command::Command;
use sockloop::chat::{AsyncChat, ChatContext, ChatHandler, InputLimit};
use sockloop::{Backend, Channel, Context, Dispatcher, SockAddr, Socket, TimerId};
use std::cell::Cell;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

#[derive(Parser)]
#[command(about = "A receive-only SMTP server on sockloop's asynchat: one file per message in DIR")]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8025")]
    bind: SocketAddr,
    /// Directory receiving one file per accepted message (created if missing).
    #[arg(long)]
    dir: PathBuf,
    /// Where messages are written before being renamed into DIR (default: `.NAME.tmp`
    /// beside DIR; it must be on the same file system).
    #[arg(long)]
    tmp_dir: Option<PathBuf>,
    /// Largest message accepted, in bytes (advertised as SIZE).
    #[arg(long, default_value_t = 32 << 20)]
    max_size: u64,
    /// Seconds of silence before a client gets 421 and is closed.
    /// (Default: none; the DESIGN contract closes nothing for idleness unless asked.)
    #[arg(long)]
    idle_timeout: Option<f64>,
    /// Seconds a client has to finish a command line once it has begun (then 421): a client
    /// sending one byte at a time is not idle, but is not let to hold a session forever.
    #[arg(long, default_value_t = 300.0)]
    command_timeout: f64,
    /// Host name in the greeting and the EHLO reply.
    #[arg(long, default_value = "localhost")]
    hostname: String,
    /// Write only the message, without the X-Sink-* header lines.
    #[arg(long)]
    no_headers: bool,
    /// fsync each message before answering 250 (slower; the loop waits for the disk).
    #[arg(long)]
    fsync: bool,
    /// Readiness backend: auto, select, poll, epoll or uring (io_uring, Linux).
    #[arg(long, default_value = "auto", value_parser = common::parse_backend)]
    backend: Backend,
    /// listen(2) backlog.
    #[arg(long, default_value_t = 1024)]
    backlog: i32,
    /// Seconds to flush queued output on SIGINT/SIGTERM before closing.
    #[arg(long, default_value_t = 5.0)]
    grace: f64,
    /// Offer STARTTLS (RFC 3207) with --tls-cert and --tls-key; clients may still stay plain.
    #[command(flatten)]
    tls: tls_flags::TlsFlags,
}

/// Longest command line, in bytes.
const MAX_COMMAND: usize = 4096;
/// Most recipients per message.
const MAX_RCPTS: usize = 1000;

/// Where messages go, and what was served.
struct Sink {
    dir: PathBuf,
    tmp_dir: PathBuf,
    headers: bool,
    fsync: bool,
    max_size: u64,
    hostname: String,
    command_timeout: Duration,
    seq: Cell<u64>,
    connections: Cell<u64>,
    /// STARTTLS is offered when set.
    tls: Option<sockloop::tls::TlsAcceptor>,
    messages: Cell<u64>,
    bytes: Cell<u64>,
}

impl Sink {
    /// Starts a message: a new file under a temporary name, with the header lines.
    fn spool(&self, from: &str, rcpts: &[String]) -> io::Result<Spool> {
        let seq = self.seq.get() + 1;
        self.seq.set(seq);
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        let name = format!("{}.{:06}.{}.{seq}.eml", now.as_secs(), now.subsec_micros(), std::process::id());
        let tmp = self.tmp_dir.join(&name);
        let file = fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        let mut spool = Spool { file: Some(BufWriter::with_capacity(64 * 1024, file)), tmp, name, len: 0 };
        if self.headers {
            let to: Vec<String> = rcpts.iter().map(|r| format!("<{r}>")).collect();
            let head = format!("X-Sink-Mail-From: <{from}>\r\nX-Sink-Rcpt-To: {}\r\n", to.join(", "));
            spool.file.as_mut().expect("just opened").write_all(head.as_bytes())?;
        }
        Ok(spool)
    }

    /// Finishes a message: flushed (and synced with `--fsync`), then renamed into DIR in one
    /// step, so DIR only ever holds complete messages. Returns the file's name.
    fn commit(&self, mut spool: Spool) -> io::Result<String> {
        let file = spool.file.take().expect("an open spool");
        let file = file.into_inner().map_err(|e| e.into_error())?;
        if self.fsync {
            file.sync_data()?;
        }
        drop(file);
        let renamed = fs::rename(&spool.tmp, self.dir.join(&spool.name));
        if let Err(e) = renamed {
            let _ = fs::remove_file(&spool.tmp);
            return Err(e);
        }
        self.messages.set(self.messages.get() + 1);
        self.bytes.set(self.bytes.get() + spool.len);
        Ok(std::mem::take(&mut spool.name))
    }
}

/// A message being received, written straight to its temporary file (so a session holds a
/// 64 KiB buffer whatever the message size). Dropped unfinished, the file is removed.
struct Spool {
    file: Option<BufWriter<File>>,
    tmp: PathBuf,
    name: String,
    /// Message bytes written so far.
    len: u64,
}

impl Drop for Spool {
    fn drop(&mut self) {
        if let Some(f) = self.file.take() {
            drop(f.into_parts().0);
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    Command,
    Data,
    /// QUIT, a timeout or a fatal error: ignore whatever else arrives.
    Done,
}

/// One SMTP session.
struct Session {
    sink: Rc<Sink>,
    phase: Phase,
    line: Vec<u8>,
    /// When the first byte of the command line being collected arrived, and the timer for it.
    line_started: Option<Instant>,
    command_timer: Option<(TimerId, Instant)>,
    greeted: bool,
    from: Option<String>,
    rcpts: Vec<String>,
    /// The message being received (DATA), unless it was dropped.
    spool: Option<Spool>,
    /// The message passed the size limit: its bytes are dropped (552 at its end).
    oversized: bool,
    /// Writing the message failed (451 at its end).
    write_error: Option<io::Error>,
    /// Bytes of the current DATA line, and whether it began with a dot (already removed).
    line_len: usize,
    line_dot: bool,
    /// The session runs over TLS (after STARTTLS).
    in_tls: bool,
    /// STARTTLS was answered: the rest of that read was sent in plain text before the
    /// handshake and is dropped (no command injection across the upgrade).
    tls_pending: bool,
}

impl Session {
    fn reset(&mut self) {
        self.from = None;
        self.rcpts.clear();
        self.spool = None;
        self.oversized = false;
        self.write_error = None;
        self.line_len = 0;
    }

    fn command(&mut self, line: &[u8], chat: &mut ChatContext<'_>) -> io::Result<()> {
        let cmd = match command::parse(line) {
            Ok(cmd) => cmd,
            Err(r) => return chat.push(format!("{} {}\r\n", r.code, r.text).as_bytes()),
        };
        let sink = self.sink.clone();
        let reply: String = match cmd {
            Command::Helo(domain) => {
                self.reset();
                self.greeted = true;
                format!("250 {} Hello {domain}\r\n", sink.hostname)
            }
            Command::Ehlo(domain) => {
                self.reset();
                self.greeted = true;
                let starttls = if sink.tls.is_some() && !self.in_tls { "250-STARTTLS\r\n" } else { "" };
                format!(
                    "250-{} Hello {domain}\r\n250-SIZE {}\r\n250-8BITMIME\r\n250-PIPELINING\r\n{starttls}250 HELP\r\n",
                    sink.hostname, sink.max_size
                )
            }
            Command::Mail { from, size, body_8bit: _ } => {
                if !self.greeted {
                    "503 5.5.1 Error: send HELO/EHLO first\r\n".into()
                } else if self.from.is_some() {
                    "503 5.5.1 Error: nested MAIL command\r\n".into()
                } else if size.is_some_and(|n| n > sink.max_size) {
                    "552 5.3.4 Message size exceeds fixed maximum message size\r\n".into()
                } else {
                    self.from = Some(from);
                    "250 2.1.0 Ok\r\n".into()
                }
            }
            Command::Rcpt(to) => {
                if self.from.is_none() {
                    "503 5.5.1 Error: need MAIL command\r\n".into()
                } else if self.rcpts.len() >= MAX_RCPTS {
                    "452 4.5.3 Error: too many recipients\r\n".into()
                } else {
                    self.rcpts.push(to);
                    "250 2.1.5 Ok\r\n".into()
                }
            }
            Command::Data => {
                if self.from.is_none() {
                    "503 5.5.1 Error: need MAIL command\r\n".into()
                } else if self.rcpts.is_empty() {
                    "503 5.5.1 Error: need RCPT command\r\n".into()
                } else {
                    let from = self.from.clone().unwrap_or_default();
                    match sink.spool(&from, &self.rcpts) {
                        Ok(spool) => {
                            self.phase = Phase::Data;
                            self.spool = Some(spool);
                            self.oversized = false;
                            self.write_error = None;
                            self.line_len = 0;
                            // Lines are streamed to the file as they come; one longer than the
                            // size limit is an oversized message.
                            chat.set_terminator(b"\r\n");
                            chat.set_max_record(
                                usize::try_from(sink.max_size).unwrap_or(usize::MAX).saturating_add(1),
                            );
                            "354 End data with <CR><LF>.<CR><LF>\r\n".into()
                        }
                        Err(e) => {
                            eprintln!("cannot create a message file in {}: {e}", sink.tmp_dir.display());
                            "451 4.3.0 Local error in processing\r\n".into()
                        }
                    }
                }
            }
            Command::Rset => {
                self.reset();
                "250 2.0.0 Ok\r\n".into()
            }
            Command::Noop => "250 2.0.0 Ok\r\n".into(),
            Command::Vrfy => {
                "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery\r\n".into()
            }
            Command::Expn => "502 5.5.1 EXPN not implemented\r\n".into(),
            Command::Help => {
                "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP\r\n".into()
            }
            Command::StartTls => match &sink.tls {
                None => "502 5.5.1 STARTTLS not offered\r\n".into(),
                Some(_) if self.in_tls => "503 5.5.1 Error: TLS already active\r\n".into(),
                Some(tls) => {
                    // RFC 3207 section 4.2: forget the session, expect a new EHLO.
                    chat.push(b"220 2.0.0 Ready to start TLS\r\n")?;
                    chat.channel.start_tls_server(tls)?;
                    self.reset();
                    self.greeted = false;
                    self.in_tls = true;
                    self.tls_pending = true;
                    return Ok(());
                }
            },
            Command::Quit => {
                self.phase = Phase::Done;
                chat.push(format!("221 2.0.0 {} closing connection\r\n", sink.hostname).as_bytes())?;
                chat.channel.close_when_done();
                return Ok(());
            }
        };
        chat.push(reply.as_bytes())
    }

    /// Message bytes (dot-unstuffed), to the spool unless the message was already refused.
    fn write(&mut self, data: &[u8]) {
        if data.is_empty() || self.oversized || self.write_error.is_some() {
            return;
        }
        let Some(spool) = self.spool.as_mut() else { return };
        spool.len += data.len() as u64;
        if spool.len > self.sink.max_size {
            self.oversized = true;
            self.spool = None; // removes the file
            return;
        }
        if let Err(e) = spool.file.as_mut().expect("an open spool").write_all(data) {
            self.write_error = Some(e);
            self.spool = None;
        }
    }

    /// A piece of a DATA line: a leading dot is removed (RFC 5321 section 4.5.2).
    fn data_piece(&mut self, data: &[u8]) {
        let mut piece = data;
        if self.line_len == 0 {
            self.line_dot = piece.first() == Some(&b'.');
            if self.line_dot {
                piece = &piece[1..];
            }
        }
        self.line_len += data.len();
        self.write(piece);
    }

    /// The end of a DATA line: a lone dot ends the message.
    fn data_line_end(&mut self, chat: &mut ChatContext<'_>) -> io::Result<()> {
        let lone_dot = self.line_dot && self.line_len == 1;
        self.line_len = 0;
        self.line_dot = false;
        if lone_dot {
            return self.end_of_data(chat);
        }
        self.write(b"\r\n");
        Ok(())
    }

    fn end_of_data(&mut self, chat: &mut ChatContext<'_>) -> io::Result<()> {
        self.phase = Phase::Command;
        chat.set_terminator(b"\n");
        chat.set_max_record(MAX_COMMAND);
        let reply = if self.oversized {
            "552 5.3.4 Message size exceeds fixed maximum message size\r\n".to_string()
        } else if let Some(e) = self.write_error.take() {
            eprintln!("cannot write a message into {}: {e}", self.sink.tmp_dir.display());
            "451 4.3.0 Local error in processing\r\n".to_string()
        } else {
            match self.spool.take().map(|spool| self.sink.commit(spool)) {
                Some(Ok(name)) => format!("250 2.0.0 Ok: queued as {name}\r\n"),
                Some(Err(e)) => {
                    eprintln!("cannot write a message into {}: {e}", self.sink.dir.display());
                    "451 4.3.0 Local error in processing\r\n".to_string()
                }
                None => "451 4.3.0 Local error in processing\r\n".to_string(),
            }
        };
        self.reset();
        chat.push(reply.as_bytes())
    }
}

impl ChatHandler for Session {
    /// Arms the command-line timer once a line has begun (collect_incoming_data has no context).
    fn after_input(&mut self, chat: &mut ChatContext<'_>) -> io::Result<()> {
        if std::mem::take(&mut self.tls_pending) {
            self.line.clear();
            self.line_started = None;
        }
        if self.phase == Phase::Command && self.line_started.is_some() && self.command_timer.is_none() {
            let timeout = self.sink.command_timeout;
            self.command_timer = Some((chat.lp.set_timeout(chat.token(), timeout), Instant::now() + timeout));
        }
        Ok(())
    }

    fn collect_incoming_data(&mut self, data: &[u8]) {
        if self.tls_pending {
            return;
        }
        match self.phase {
            Phase::Command => {
                if self.line_started.is_none() {
                    self.line_started = Some(Instant::now());
                }
                self.line.extend_from_slice(data)
            }
            Phase::Data => self.data_piece(data),
            Phase::Done => {}
        }
    }

    fn found_terminator(&mut self, chat: &mut ChatContext<'_>) -> io::Result<()> {
        if self.tls_pending {
            return Ok(());
        }
        match self.phase {
            Phase::Done => Ok(()),
            Phase::Data => self.data_line_end(chat),
            Phase::Command => {
                self.line_started = None;
                if let Some((id, _)) = self.command_timer.take() {
                    chat.lp.cancel(id);
                }
                let mut line = std::mem::take(&mut self.line);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                let r = self.command(&line, chat);
                line.clear();
                self.line = line; // at most MAX_COMMAND bytes: keep the allocation
                r
            }
        }
    }

    fn handle_error(&mut self, err: io::Error, chat: &mut ChatContext<'_>) {
        if InputLimit::is(&err) {
            let reply: &[u8] = if self.phase == Phase::Data {
                b"552 5.3.4 Message size exceeds fixed maximum message size\r\n"
            } else {
                b"500 5.5.2 Line too long\r\n"
            };
            self.phase = Phase::Done;
            self.line = Vec::new();
            self.spool = None;
            let _ = chat.push(reply);
            chat.channel.close_when_done();
            return;
        }
        eprintln!("smtp_sink: closing a client: {err}");
        chat.channel.close();
    }

    fn handle_shutdown(&mut self, chat: &mut ChatContext<'_>) -> io::Result<()> {
        // RFC 5321 section 3.8: a server shutting down answers 421 and closes; a message being
        // received is dropped (its spool file removed).
        if self.phase != Phase::Done {
            self.phase = Phase::Done;
            self.spool = None;
            let reply =
                format!("421 4.3.2 {} Service shutting down, closing connection\r\n", self.sink.hostname);
            chat.push(reply.as_bytes())?;
        }
        chat.channel.close_when_done();
        Ok(())
    }

    fn handle_timeout(&mut self, chat: &mut ChatContext<'_>) -> io::Result<()> {
        let now = Instant::now();
        let command_due = self.command_timer.is_some_and(|(_, due)| due <= now);
        if command_due {
            self.command_timer = None;
            if self.phase != Phase::Command || self.line_started.is_none() {
                return Ok(()); // the line was finished meanwhile
            }
        }
        if self.phase != Phase::Done {
            self.phase = Phase::Done;
            self.spool = None;
            let what = if command_due { "command line" } else { "idle" };
            let reply = format!("421 4.4.2 {} Error: {what} timeout exceeded\r\n", self.sink.hostname);
            chat.push(reply.as_bytes())?;
        }
        chat.channel.close_when_done();
        Ok(())
    }
}

struct Server {
    sink: Rc<Sink>,
    idle: Option<Duration>,
}

impl Dispatcher for Server {
    fn handle_accepted(&mut self, sock: Socket, _addr: SockAddr, cx: &mut Context<'_>) -> io::Result<()> {
        sock.set_nodelay(true)?;
        let session = Session {
            sink: self.sink.clone(),
            phase: Phase::Command,
            line: Vec::new(),
            line_started: None,
            command_timer: None,
            greeted: false,
            from: None,
            rcpts: Vec::new(),
            spool: None,
            oversized: false,
            write_error: None,
            line_len: 0,
            line_dot: false,
            in_tls: false,
            tls_pending: false,
        };
        let mut chat = AsyncChat::new(session);
        chat.set_terminator(b"\n");
        chat.set_max_record(MAX_COMMAND);
        let mut channel = Channel::from(sock);
        let greeting = format!("220 {} ESMTP sockloop smtp_sink\r\n", self.sink.hostname);
        chat.push(&mut channel, greeting.as_bytes())?;
        let token = cx.lp.add(channel, chat)?;
        cx.lp.set_idle_timeout(token, self.idle);
        self.sink.connections.set(self.sink.connections.get() + 1);
        Ok(())
    }
}

fn main() -> io::Result<()> {
    let args = Args::parse();
    fs::create_dir_all(&args.dir)?;
    let dir = fs::canonicalize(&args.dir)?;
    let tmp_dir = match args.tmp_dir {
        Some(t) => t,
        None => {
            let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            dir.parent().unwrap_or(&dir).join(format!(".{name}.smtp_sink.tmp"))
        }
    };
    fs::create_dir_all(&tmp_dir)?;
    let sink = Rc::new(Sink {
        dir,
        tmp_dir,
        headers: !args.no_headers,
        fsync: args.fsync,
        max_size: args.max_size,
        hostname: args.hostname,
        command_timeout: Duration::from_secs_f64(args.command_timeout),
        seq: Cell::new(0),
        connections: Cell::new(0),
        tls: args.tls.acceptor(&[])?,
        messages: Cell::new(0),
        bytes: Cell::new(0),
    });
    common::serve(
        args.backend,
        args.bind,
        args.backlog,
        args.grace,
        Server { sink: sink.clone(), idle: args.idle_timeout.map(Duration::from_secs_f64) },
    )?;
    println!(
        "served {} connections, accepted {} messages ({} bytes)",
        sink.connections.get(),
        sink.messages.get(),
        sink.bytes.get()
    );
    Ok(())
}
