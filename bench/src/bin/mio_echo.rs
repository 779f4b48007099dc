//! A hand-written mio echo server, the way mio's examples write one: edge-triggered
//! readiness, a slab of connections, `TCP_NODELAY`, read until `WouldBlock` into one shared
//! 64 KiB buffer, write at once and keep only the unsent bytes per connection (reading pauses
//! while more than 1 MiB is unsent). Prints `listening on HOST:PORT` once ready.

use clap::Parser;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use std::io::{self, Read, Write};
use std::net::SocketAddr;

const LISTENER: Token = Token(usize::MAX);
const SOFT_LIMIT: usize = 1 << 20;

#[derive(Parser)]
#[command(about = "hand-written mio echo server (edge-triggered, slab, buffered unsent data)")]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
}

struct Conn {
    stream: TcpStream,
    unsent: Vec<u8>,
    /// Reading stopped at the soft limit before `WouldBlock`: resume after a flush.
    paused: bool,
}

enum Step {
    Open,
    Close,
}

fn flush(c: &mut Conn) -> io::Result<Step> {
    while !c.unsent.is_empty() {
        match c.stream.write(&c.unsent) {
            Ok(0) => return Ok(Step::Close),
            Ok(n) => {
                c.unsent.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Step::Open)
}

fn echo(c: &mut Conn, buf: &mut [u8]) -> io::Result<Step> {
    c.paused = false;
    loop {
        if c.unsent.len() > SOFT_LIMIT {
            c.paused = true;
            return Ok(Step::Open);
        }
        let n = match c.stream.read(buf) {
            Ok(0) => return Ok(Step::Close),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Step::Open),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let mut sent = 0;
        if c.unsent.is_empty() {
            loop {
                match c.stream.write(&buf[sent..n]) {
                    Ok(k) => {
                        sent += k;
                        if sent == n || k == 0 {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        c.unsent.extend_from_slice(&buf[sent..n]);
    }
}

fn main() -> io::Result<()> {
    let args = Args::parse();
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut listener = TcpListener::bind(args.bind)?;
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
    println!("listening on {}", listener.local_addr()?);
    io::stdout().flush()?;
    let mut conns: Slab<Conn> = Slab::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in events.iter() {
            if ev.token() == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            stream.set_nodelay(true)?;
                            let entry = conns.vacant_entry();
                            poll.registry().register(
                                &mut stream,
                                Token(entry.key()),
                                Interest::READABLE | Interest::WRITABLE,
                            )?;
                            entry.insert(Conn { stream, unsent: Vec::new(), paused: false });
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            eprintln!("accept: {e}");
                            break;
                        }
                    }
                }
                continue;
            }
            let key = ev.token().0;
            let Some(c) = conns.get_mut(key) else { continue };
            let mut step = Ok(Step::Open);
            if ev.is_writable() {
                step = flush(c);
            }
            let resume = c.paused && c.unsent.len() <= SOFT_LIMIT;
            if matches!(step, Ok(Step::Open)) && (ev.is_readable() || resume) {
                step = echo(c, &mut buf);
            }
            if !matches!(step, Ok(Step::Open)) {
                let mut c = conns.remove(key);
                let _ = poll.registry().deregister(&mut c.stream);
            }
        }
    }
}
