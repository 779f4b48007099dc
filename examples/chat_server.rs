//! A line-based multi-user chat on asynchat ([`AsyncChat`]).
//!
//! ```text
//! cargo run --release --example chat_server -- --bind 127.0.0.1:0
//! ```
//! Prints `listening on HOST:PORT` once ready. A client's first line is its nick; each later
//! line goes to every other joined client as `NICK: line`; joins and departures are announced
//! to the others as `* NICK joined` / `* NICK left`. Lines end with `\n` (a `\r` before it is
//! dropped) and are at most `--max-line` bytes: a longer one gets an error line and the client
//! is closed.
//!
//! The broadcast reaches the other channels through the loop's map (`cx.for_each_mut`). A
//! client that never reads is bounded by its channel's output hard limit (`--output-limit`):
//! once more than that is queued for it, it is closed with an error on stderr and its
//! departure announced, while everyone else goes on. SIGINT/SIGTERM: stop accepting, flush
//! (`--grace`, 5 s), print totals, exit 0.

#[path = "common/mod.rs"]
mod common;

use clap::Parser;
use sockloop::chat::{AsyncChat, ChatContext, ChatHandler, InputLimit};
use sockloop::{Backend, Channel, Context, Dispatcher, SockAddr, Socket};
use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "A line-based multi-user chat server on sockloop's asynchat")]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:7000")]
    bind: SocketAddr,
    /// Readiness backend: auto, select, poll, epoll or uring (io_uring, Linux).
    #[arg(long, default_value = "auto", value_parser = common::parse_backend)]
    backend: Backend,
    /// listen(2) backlog.
    #[arg(long, default_value_t = 1024)]
    backlog: i32,
    /// Longest line (and nick) accepted, in bytes.
    #[arg(long, default_value_t = 4096)]
    max_line: usize,
    /// Bytes that may be queued for a client that does not read before it is closed.
    #[arg(long, default_value_t = 1 << 20)]
    output_limit: usize,
    /// Close a client after this many seconds without traffic (default: never).
    #[arg(long)]
    idle_timeout: Option<f64>,
    /// Seconds to flush queued output on SIGINT/SIGTERM before closing.
    #[arg(long, default_value_t = 5.0)]
    grace: f64,
    /// Do not print a line per join and departure.
    #[arg(long)]
    quiet: bool,
}

#[derive(Default)]
struct Stats {
    connections: Cell<u64>,
    lines: Cell<u64>,
    dropped_slow: Cell<u64>,
}

fn bump(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

/// One chat client: its nick once given, and the line being collected.
struct Member {
    nick: Option<String>,
    line: Vec<u8>,
    /// The departure was announced (announce once).
    gone: bool,
    quiet: bool,
    stats: Rc<Stats>,
}

type Chat = AsyncChat<Member>;

/// Sends `msg` to every joined member but the running one. Members whose output would pass
/// their hard limit are closed and their departures announced in turn, to the running member
/// too when `me_joined`.
fn broadcast(chat: &mut ChatContext<'_>, msg: Vec<u8>, me_joined: bool, stats: &Stats, quiet: bool) {
    let mut queue = vec![msg];
    let mut first = true;
    while let Some(msg) = queue.pop() {
        if !first && me_joined {
            let _ = chat.push(&msg);
        }
        first = false;
        let mut dropped: Vec<String> = Vec::new();
        chat.lp.for_each_mut::<Chat>(|token, chat, channel| {
            if chat.handler.nick.is_none() || chat.handler.gone || channel.is_closed() || channel.is_closing()
            {
                return;
            }
            if let Err(e) = chat.push(channel, &msg) {
                let nick = chat.handler.nick.clone().unwrap_or_default();
                eprintln!("closing {nick} ({token:?}): {e}");
                dropped.push(nick);
                chat.handler.gone = true;
                channel.discard_output();
                channel.close();
            }
        });
        for nick in dropped {
            bump(&stats.dropped_slow);
            if !quiet {
                println!("{nick} dropped: too much unread output");
            }
            queue.push(format!("* {nick} left\r\n").into_bytes());
        }
    }
}

impl Member {
    fn depart(&mut self, chat: &mut ChatContext<'_>) {
        if self.gone {
            return;
        }
        self.gone = true;
        if let Some(nick) = self.nick.clone() {
            if !self.quiet {
                println!("{nick} left");
            }
            let stats = self.stats.clone();
            broadcast(chat, format!("* {nick} left\r\n").into_bytes(), false, &stats, self.quiet);
        }
    }
}

impl ChatHandler for Member {
    fn collect_incoming_data(&mut self, data: &[u8]) {
        self.line.extend_from_slice(data);
    }

    fn found_terminator(&mut self, chat: &mut ChatContext<'_>) -> io::Result<()> {
        let mut line = std::mem::take(&mut self.line);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        match &self.nick {
            None => {
                let nick = String::from_utf8_lossy(&line).trim().to_string();
                if nick.is_empty() || nick.contains(':') {
                    return chat.push(b"! a nick is one non-empty line without ':'\r\n");
                }
                if !self.quiet {
                    println!("{nick} joined");
                }
                self.nick = Some(nick.clone());
                chat.push(format!("* welcome, {nick}\r\n").as_bytes())?;
                let stats = self.stats.clone();
                broadcast(chat, format!("* {nick} joined\r\n").into_bytes(), true, &stats, self.quiet);
            }
            Some(nick) => {
                let mut msg = Vec::with_capacity(nick.len() + line.len() + 4);
                msg.extend_from_slice(nick.as_bytes());
                msg.extend_from_slice(b": ");
                msg.extend_from_slice(&line);
                msg.extend_from_slice(b"\r\n");
                bump(&self.stats.lines);
                let stats = self.stats.clone();
                broadcast(chat, msg, true, &stats, self.quiet);
            }
        }
        Ok(())
    }

    fn handle_close(&mut self, chat: &mut ChatContext<'_>) -> io::Result<()> {
        self.depart(chat);
        chat.channel.close();
        Ok(())
    }

    fn handle_error(&mut self, err: io::Error, chat: &mut ChatContext<'_>) {
        if InputLimit::is(&err) {
            eprintln!("closing {:?}: {err}", self.nick.as_deref().unwrap_or("(no nick)"));
            let _ = chat.push(format!("! line too long ({err}); bye\r\n").as_bytes());
            self.depart(chat);
            chat.channel.close_when_done();
            return;
        }
        eprintln!("closing {:?}: {err}", self.nick.as_deref().unwrap_or("(no nick)"));
        self.depart(chat);
        chat.channel.close();
    }

    fn handle_shutdown(&mut self, chat: &mut ChatContext<'_>) -> io::Result<()> {
        self.gone = true; // no departures announced to a room that is closing
        chat.push(b"* server shutting down; bye\r\n")?;
        chat.channel.close_when_done();
        Ok(())
    }

    fn handle_timeout(&mut self, chat: &mut ChatContext<'_>) -> io::Result<()> {
        let _ = chat.push(b"! idle timeout; bye\r\n");
        self.depart(chat);
        chat.channel.close_when_done();
        Ok(())
    }
}

struct Server {
    max_line: usize,
    output_limit: usize,
    idle: Option<Duration>,
    quiet: bool,
    stats: Rc<Stats>,
}

impl Dispatcher for Server {
    fn handle_accepted(&mut self, sock: Socket, _addr: SockAddr, cx: &mut Context<'_>) -> io::Result<()> {
        sock.set_nodelay(true)?;
        let mut ch = Channel::from(sock);
        // Over the soft limit the loop stops reading from the client; past the hard limit a
        // broadcast to it fails and closes it.
        ch.set_output_limits(self.output_limit / 2, self.output_limit);
        let member = Member {
            nick: None,
            line: Vec::new(),
            gone: false,
            quiet: self.quiet,
            stats: self.stats.clone(),
        };
        let mut chat = AsyncChat::new(member);
        chat.set_terminator(b"\n");
        chat.set_max_record(self.max_line + 1); // the '\r' before '\n' is not content
        bump(&self.stats.connections);
        let token = cx.lp.add(ch, chat)?;
        if self.idle.is_some() {
            cx.lp.set_idle_timeout(token, self.idle);
        }
        if let Some((chat, channel)) = cx.lp.get_mut::<Chat>(token) {
            chat.push(channel, b"* hello; your nick?\r\n")?;
        }
        Ok(())
    }
}

fn main() -> io::Result<()> {
    let args = Args::parse();
    let stats = Rc::new(Stats::default());
    common::serve(
        args.backend,
        args.bind,
        args.backlog,
        args.grace,
        Server {
            max_line: args.max_line,
            output_limit: args.output_limit,
            idle: args.idle_timeout.map(Duration::from_secs_f64),
            quiet: args.quiet,
            stats: stats.clone(),
        },
    )?;
    println!(
        "served {} connections, relayed {} lines, dropped {} slow readers",
        stats.connections.get(),
        stats.lines.get(),
        stats.dropped_slow.get()
    );
    Ok(())
}
