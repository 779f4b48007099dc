//! The load generator: many connections driven from one thread over mio (epoll), strict
//! ping-pong (a connection sends its next message only after the whole previous one came
//! back), every echoed byte compared with what was sent.
//!
//! Each connection has its own random pattern; message `k` is the pattern shifted by `k`, so
//! consecutive messages differ and a stale, duplicated or reordered byte is caught. Reads ask
//! for exactly the bytes still owed; a short read means the socket is drained (epoll reports the
//! next arrival as a new edge), so the generator spends one `recv` per arrival.

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How many connections are being opened at once (stays under the servers' backlog of 1024).
const CONNECT_BATCH: usize = 250;
/// A run with no progress for this long is a failure (a stalled or crashed server).
const STALL: Duration = Duration::from_secs(10);

struct Conn {
    stream: TcpStream,
    size: usize,
    pattern: Vec<u8>,
    seq: usize,
    sent: usize,
    recvd: usize,
    busy: bool,
    connected: bool,
    /// Takes part in timed runs (idle connections only do their first round trip).
    active: bool,
    started: Instant,
}

impl Conn {
    fn msg(&self) -> &[u8] {
        let off = self.seq % 251;
        &self.pattern[off..off + self.size]
    }
}

/// What one timed run measured.
#[derive(Debug, Default)]
pub struct RunStats {
    /// Round trips completed inside the window.
    pub round_trips: u64,
    /// Round trips completed in all, including those finishing after the window closed.
    pub round_trips_total: u64,
    /// The window's real length.
    pub elapsed: Duration,
    /// Per round trip, nanoseconds (only when recording).
    pub latencies_ns: Vec<u64>,
    /// Server CPU (utime+stime, µs) at the window's start and end, when a pid was given.
    pub cpu_us: Option<(u64, u64)>,
}

/// The client side: one mio `Poll`, many connections.
pub struct Client {
    addr: SocketAddr,
    poll: Poll,
    events: Events,
    conns: Vec<Conn>,
    buf: Vec<u8>,
    tokens: Vec<usize>,
    rng: u64,
}

impl Client {
    /// A client for the server at `addr` (no connection yet).
    pub fn new(addr: SocketAddr) -> io::Result<Client> {
        Ok(Client {
            addr,
            poll: Poll::new()?,
            events: Events::with_capacity(4096),
            conns: Vec::new(),
            buf: vec![0u8; 256 * 1024],
            tokens: Vec::with_capacity(4096),
            rng: 0x9E37_79B9_7F4A_7C15,
        })
    }

    /// Number of open connections.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    fn next_rand(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Opens `n` connections exchanging `size`-byte messages, `CONNECT_BATCH` at a time; each
    /// does one verified round trip before this returns (so the server has accepted it and set
    /// it up). `active` ones take part in later [`Client::run`]s.
    pub fn open(&mut self, n: usize, size: usize, active: bool, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut left = n;
        while left > 0 {
            let k = left.min(CONNECT_BATCH);
            let first = self.conns.len();
            for _ in 0..k {
                let mut stream = TcpStream::connect(self.addr)?;
                let idx = self.conns.len();
                self.poll.registry().register(
                    &mut stream,
                    Token(idx),
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                let mut pattern = vec![0u8; size + 251];
                for chunk in pattern.chunks_mut(8) {
                    let r = self.next_rand().to_le_bytes();
                    chunk.copy_from_slice(&r[..chunk.len()]);
                }
                self.conns.push(Conn {
                    stream,
                    size,
                    pattern,
                    seq: 0,
                    sent: 0,
                    recvd: 0,
                    busy: true,
                    connected: false,
                    active,
                    started: Instant::now(),
                });
            }
            let mut pending = k;
            while pending > 0 {
                if Instant::now() > deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("opening connections: {pending} of a batch of {k} not done"),
                    ));
                }
                self.poll.poll(&mut self.events, Some(Duration::from_millis(100)))?;
                let mut tokens = self.ready_tokens();
                for &idx in &tokens {
                    if idx < first {
                        continue;
                    }
                    if self.step(idx)?.is_some() {
                        pending -= 1;
                    }
                }
                tokens.clear();
                self.tokens = tokens;
            }
            left -= k;
        }
        Ok(())
    }

    fn ready_tokens(&mut self) -> Vec<usize> {
        let mut tokens = std::mem::take(&mut self.tokens);
        tokens.extend(self.events.iter().map(|e| e.token().0));
        tokens
    }

    /// Starts the connection's next message and writes what the socket takes.
    fn start(&mut self, idx: usize) -> io::Result<()> {
        let c = &mut self.conns[idx];
        c.seq += 1;
        c.sent = 0;
        c.recvd = 0;
        c.busy = true;
        c.started = Instant::now();
        Self::write_some(c)
    }

    fn write_some(c: &mut Conn) -> io::Result<()> {
        while c.sent < c.size {
            let off = c.seq % 251;
            match c.stream.write(&c.pattern[off + c.sent..off + c.size]) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "server stopped reading")),
                Ok(n) => c.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Handles readiness of one connection; returns its round-trip time when one completed.
    fn step(&mut self, idx: usize) -> io::Result<Option<Duration>> {
        let c = &mut self.conns[idx];
        if !c.connected {
            if let Some(e) = c.stream.take_error()? {
                return Err(e);
            }
            match c.stream.peer_addr() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(None),
                Err(e) => return Err(e),
            }
            c.connected = true;
            c.stream.set_nodelay(true)?;
            c.started = Instant::now();
        }
        if !c.busy {
            return Ok(None);
        }
        Self::write_some(c)?;
        loop {
            let want = (c.size - c.recvd).min(self.buf.len());
            if want == 0 {
                break;
            }
            let n = match c.stream.read(&mut self.buf[..want]) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection",
                    ))
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let off = c.seq % 251 + c.recvd;
            if self.buf[..n] != c.pattern[off..off + n] {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("echo mismatch on connection {idx}, message {}, offset {}", c.seq, c.recvd),
                ));
            }
            c.recvd += n;
            if n < want {
                break; // drained: the next arrival is a new edge
            }
        }
        if c.recvd == c.size {
            debug_assert_eq!(c.msg().len(), c.size);
            c.busy = false;
            return Ok(Some(c.started.elapsed()));
        }
        Ok(None)
    }

    /// Ping-pong on every active connection for `window`; completions after the window are
    /// drained (not counted) so the next run starts clean. With `pid`, the server's CPU time
    /// is read at the window's edges.
    pub fn run(&mut self, window: Duration, record: bool, pid: Option<u32>) -> io::Result<RunStats> {
        let mut st = RunStats::default();
        if record {
            st.latencies_ns.reserve(1 << 20);
        }
        let cpu0 = pid.map(crate::sys::cpu_micros).transpose()?;
        let t0 = Instant::now();
        let end = t0 + window;
        let mut busy = 0usize;
        for idx in 0..self.conns.len() {
            if self.conns[idx].active {
                self.start(idx)?;
                busy += 1;
            }
        }
        let mut open = true;
        let mut last_progress = t0;
        while busy > 0 {
            self.poll.poll(&mut self.events, Some(Duration::from_millis(50)))?;
            let mut now = Instant::now();
            if open && now >= end {
                open = false;
                st.elapsed = now - t0;
                if let (Some(p), Some(c0)) = (pid, cpu0) {
                    st.cpu_us = Some((c0, crate::sys::cpu_micros(p)?));
                }
            }
            let mut tokens = self.ready_tokens();
            for &idx in &tokens {
                if idx >= self.conns.len() {
                    continue;
                }
                if let Some(rtt) = self.step(idx)? {
                    last_progress = now;
                    st.round_trips_total += 1;
                    if open {
                        st.round_trips += 1;
                        if record {
                            st.latencies_ns.push(rtt.as_nanos() as u64);
                        }
                        now = Instant::now();
                        if now < end && self.conns[idx].active {
                            self.start(idx)?;
                            continue;
                        }
                    }
                    busy -= 1;
                }
            }
            tokens.clear();
            self.tokens = tokens;
            if now.duration_since(last_progress) > STALL {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no round trip completed for 10 s"));
            }
        }
        if open {
            st.elapsed = t0.elapsed();
            if let (Some(p), Some(c0)) = (pid, cpu0) {
                st.cpu_us = Some((c0, crate::sys::cpu_micros(p)?));
            }
        }
        Ok(st)
    }
}
