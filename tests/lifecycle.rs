//! The behaviours issue 11's reshape promises, over every backend: `close_when_done` loses
//! nothing wherever it is called from; a second `pause_reading` extends the first;
//! `handle_timeout` tells its timers apart; a timer borrows a dispatcher and its channel
//! together; the hard output limit carries [`OutputLimit`]; `default_map::run` keeps the
//! thread's loop when a panic propagates.

mod support;

use sockloop::channel::State;
use sockloop::chat::{AsyncChat, ChatContext, ChatHandler, SimpleProducer};
use sockloop::{
    default_map, Backend, Channel, Context, Dispatcher, Handler, Loop, OutputLimit, RunOptions, Socket,
    TimerId, Token,
};
use std::cell::{Cell, RefCell};
use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use support::*;

/// Drives `lp` in passes of at most 10 ms until `cond` holds, failing after `deadline`.
fn drive_within(lp: &mut Loop, deadline: Duration, what: &str, mut cond: impl FnMut(&mut Loop) -> bool) {
    let end = Instant::now() + deadline;
    while !cond(lp) {
        assert!(Instant::now() < end, "timed out after {deadline:?} waiting for {what}");
        lp.poll(Some(Duration::from_millis(10))).expect("poll");
    }
}

/// `n` bytes of a pattern whose period (251) is prime to every buffer size, so a lost, doubled
/// or reordered chunk shows up at the first byte that differs.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

// ---------------------------------------------------------------------------------------------
// 1. close_when_done loses nothing wherever it is called from

const PAYLOAD: usize = 4 << 20;
/// The peer has read this much before the close is asked for: the close lands mid-transfer.
const CLOSE_AFTER: usize = 256 << 10;

/// A chat protocol that only sends (its peer never writes).
struct Quiet;

impl ChatHandler for Quiet {
    fn collect_incoming_data(&mut self, _: &[u8]) {}
    fn found_terminator(&mut self, _: &mut ChatContext<'_>) -> io::Result<()> {
        Ok(())
    }
}

/// What the closer saw when it called `close_when_done`: whether producers were still queued
/// (otherwise the case would prove nothing), and the channel's state right after the call.
type Seen = Rc<Cell<Option<(bool, State)>>>;

fn close_now(chat: &mut AsyncChat<Quiet>, channel: &mut Channel, seen: &Seen) {
    let held = chat.holds_output();
    channel.close_when_done();
    seen.set(Some((held, channel.state())));
}

/// Another channel's dispatcher: on its first input it closes the chat channel through
/// `cx.lp.get_mut`.
struct Closer {
    target: Token,
    seen: Seen,
}

impl Dispatcher for Closer {
    fn writable(&self) -> bool {
        false
    }
    fn handle_read(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let n = cx.channel.recv(cx.scratch)?;
        if n > 0 && self.seen.get().is_none() {
            if let Some((chat, channel)) = cx.lp.get_mut::<AsyncChat<Quiet>>(self.target) {
                close_now(chat, channel, &self.seen);
            }
        }
        Ok(())
    }
}

/// A peer that reads steadily, in 16 KiB reads with a 1 ms rest every 256 KiB (pacing, not
/// synchronisation: it keeps the producer queued when the close comes), checking every byte
/// against [`pattern`], until end of stream. Returns how many bytes it read.
fn steady_reader(peer: Socket, progress: Arc<AtomicUsize>) -> JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 16 << 10];
        let mut total = 0usize;
        loop {
            let n = match (&peer).read(&mut buf) {
                Ok(0) => return total,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => panic!("the peer's read failed after {total} bytes: {e}"),
            };
            if let Some(i) = buf[..n].iter().enumerate().position(|(i, &b)| b != ((total + i) % 251) as u8) {
                panic!("byte {} differs from what was queued (lost or reordered output)", total + i);
            }
            let before = total;
            total += n;
            progress.store(total, Ordering::Release);
            if before / (256 << 10) != total / (256 << 10) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    })
}

#[derive(Clone, Copy, Debug)]
enum CloseFrom {
    /// A `call_later` callback, through `lp.get_mut`.
    Timer,
    /// A `lp.for_each_mut` sweep from outside the loop's passes.
    Sweep,
    /// Another channel's handler, through `cx.lp.get_mut`.
    OtherHandler,
}

fn close_when_done_sends_everything(backend: Backend, from: CloseFrom) {
    each_family(&[Family::V4, Family::Unix], |family| {
        let mut lp = new_loop(backend);
        let (ours, peer) = connected_pair(family);
        // Small kernel buffers (no TCP autotuning): most of the 4 MiB is still in the producer
        // when the close comes.
        ours.set_send_buffer_size(64 << 10).unwrap();
        peer.set_recv_buffer_size(64 << 10).unwrap();
        let t = lp.add(Channel::from(ours), AsyncChat::new(Quiet)).unwrap();
        {
            let (chat, channel) = lp.get_mut::<AsyncChat<Quiet>>(t).expect("the chat channel");
            let producer = SimpleProducer::with_buffer_size(pattern(PAYLOAD), 16 << 10);
            chat.push_with_producer(channel, producer).unwrap();
        }
        let (closer_side, closer_peer) = UnixStream::pair().unwrap();
        let seen: Seen = Rc::new(Cell::new(None));
        lp.add(Channel::from(closer_side), Closer { target: t, seen: seen.clone() }).unwrap();

        let progress = Arc::new(AtomicUsize::new(0));
        let reader = steady_reader(peer, progress.clone());
        drive(&mut lp, "the peer to get the first 256 KiB", |_| {
            progress.load(Ordering::Acquire) >= CLOSE_AFTER
        });
        match from {
            CloseFrom::Timer => {
                let seen = seen.clone();
                lp.call_later(Duration::ZERO, move |lp| {
                    if let Some((chat, channel)) = lp.get_mut::<AsyncChat<Quiet>>(t) {
                        close_now(chat, channel, &seen);
                    }
                });
            }
            CloseFrom::Sweep => lp.for_each_mut::<AsyncChat<Quiet>>(|token, chat, channel| {
                assert_eq!(token, t);
                close_now(chat, channel, &seen);
            }),
            CloseFrom::OtherHandler => std::io::Write::write_all(&mut &closer_peer, b"close it").unwrap(),
        }
        drive(&mut lp, "the close_when_done call", |_| seen.get().is_some());
        let (held, state) = seen.get().unwrap();
        assert!(
            held,
            "{family:?}: the producer was already empty when the close came; the case proves nothing"
        );
        assert!(matches!(state, State::Draining(_)), "{family:?}: close_when_done left {state:?}");
        assert!(lp.contains(t), "{family:?}: the channel closed before sending what it owes");

        let total = drive_join(&mut lp, "the peer to read to the end of stream", reader);
        assert_eq!(
            total, PAYLOAD,
            "{family:?}: the peer got {total} of {PAYLOAD} bytes before the end of stream"
        );
        assert!(!lp.contains(t), "{family:?}: the drained channel is still in the map");
        assert_eq!(lp.len(), 1, "{family:?}: only the closer's channel is left");
    });
}

/// From a `call_later` timer, through `lp.get_mut::<AsyncChat<_>>(token)`. (Before the
/// reshape this delivered about 350 KiB of the 4 MiB.)
fn close_when_done_from_a_timer_loses_nothing(backend: Backend) {
    close_when_done_sends_everything(backend, CloseFrom::Timer);
}

/// From a `for_each_mut` sweep over the map.
fn close_when_done_from_a_sweep_loses_nothing(backend: Backend) {
    close_when_done_sends_everything(backend, CloseFrom::Sweep);
}

/// From another channel's handler, through `cx.lp.get_mut`.
fn close_when_done_from_another_handler_loses_nothing(backend: Backend) {
    close_when_done_sends_everything(backend, CloseFrom::OtherHandler);
}

// ---------------------------------------------------------------------------------------------
// 2. A second pause_reading within the first one's delay extends it

/// Records when it first read something.
struct FirstRead {
    at: Rc<Cell<Option<Instant>>>,
}

impl Dispatcher for FirstRead {
    fn writable(&self) -> bool {
        false
    }
    fn handle_read(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let n = cx.channel.recv(cx.scratch)?;
        if n > 0 && self.at.get().is_none() {
            self.at.set(Some(Instant::now()));
        }
        Ok(())
    }
}

fn second_pause_extends_the_first(backend: Backend) {
    let pause = Duration::from_millis(300);
    let mut lp = new_loop(backend);
    let (ours, peer) = connected_pair(Family::Unix);
    let at = Rc::new(Cell::new(None));
    let t = lp.add(Channel::from(ours), FirstRead { at: at.clone() }).unwrap();
    let t0 = Instant::now();
    assert!(lp.pause_reading(t, pause));
    write_all(&peer, b"held back");
    drive(&mut lp, "100 ms to pass", |_| t0.elapsed() >= Duration::from_millis(100));
    assert_eq!(at.get(), None, "read during the first pause");
    let t1 = Instant::now();
    assert!(lp.pause_reading(t, pause));
    drive_within(&mut lp, Duration::from_secs(10), "the data to be read after the pauses", |_| {
        at.get().is_some()
    });
    let read = at.get().unwrap();
    let (since_first, second) = (read - t0, t1 - t0);
    assert!(
        since_first >= Duration::from_millis(350),
        "read {since_first:?} after the first pause: the second pause (at {second:?}) was cut short by the first one's timer"
    );
    assert!(read >= t1 + pause, "read {:?} after the second pause, before its {pause:?}", read - t1);
}

// ---------------------------------------------------------------------------------------------
// 3. handle_timeout tells its timers apart

/// Records which timer each `handle_timeout` is for, and stays open.
struct Timed {
    seen: Rc<RefCell<Vec<Handler>>>,
}

impl Dispatcher for Timed {
    fn writable(&self) -> bool {
        false
    }
    fn handle_read(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        cx.channel.recv(cx.scratch)?;
        Ok(())
    }
    fn handle_timeout(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        self.seen.borrow_mut().push(cx.handler());
        Ok(())
    }
}

fn handle_timeout_tells_its_timers_apart(backend: Backend) {
    let mut lp = new_loop(backend);
    let (ours, _peer) = connected_pair(Family::Unix);
    let seen = Rc::new(RefCell::new(Vec::new()));
    let t = lp.add(Channel::from(ours), Timed { seen: seen.clone() }).unwrap();
    let first: TimerId = lp.set_timeout(t, Duration::from_millis(20));
    let second: TimerId = lp.set_timeout(t, Duration::from_millis(60));
    let cancelled: TimerId = lp.set_timeout(t, Duration::from_millis(40));
    assert!(first != second && first != cancelled && second != cancelled, "three timers, three ids");
    assert!(lp.cancel(cancelled));
    assert!(lp.set_idle_timeout(t, Some(Duration::from_millis(150))));
    // The timers are due at 20 and 60 ms, the idle timeout at 150 ms: three calls, the last
    // for the idle timeout, whatever the handler is told.
    drive(&mut lp, "both timers and the idle timeout", |_| {
        let seen = seen.borrow();
        seen.len() >= 3 && seen.contains(&Handler::Idle)
    });
    let seen = seen.borrow().clone();
    let timers: Vec<Handler> = seen.iter().copied().filter(|h| *h != Handler::Idle).collect();
    assert_eq!(
        timers,
        [Handler::Timeout(first), Handler::Timeout(second)],
        "each set_timeout fires once, with its own id (the cancelled one never); all: {seen:?}"
    );
    assert!(seen.contains(&Handler::Idle), "the idle timeout says Handler::Idle: {seen:?}");
    assert!(lp.contains(t));
}

// ---------------------------------------------------------------------------------------------
// 4. From a timer, a dispatcher and its channel are borrowed together

struct Notes {
    notes: Vec<&'static str>,
}

impl Dispatcher for Notes {
    fn writable(&self) -> bool {
        false
    }
    fn handle_read(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        cx.channel.recv(cx.scratch)?;
        Ok(())
    }
}

fn a_timer_borrows_dispatcher_and_channel_together(backend: Backend) {
    // 1 MiB: more than the kernel takes at once, so the loop must flush the rest after the
    // timer queued it (it re-asks the channel's interest after get_mut).
    const N: usize = 1 << 20;
    each_family(&Family::ALL, |family| {
        let mut lp = new_loop(backend);
        let (ours, peer) = connected_pair(family);
        let t = lp.add(Channel::from(ours), Notes { notes: Vec::new() }).unwrap();
        let fired = Rc::new(Cell::new(false));
        let f = fired.clone();
        lp.call_later(Duration::from_millis(5), move |lp| {
            let (notes, channel) = lp.get_mut::<Notes>(t).expect("the timer finds the channel");
            notes.notes.push("written by the timer");
            channel.send_all(&pattern(N)).expect("send_all from the timer");
            f.set(true);
        });
        // The reader hands the peer back: dropping it would end the stream and close the channel.
        let reader = std::thread::spawn(move || (read_exact(&peer, N), peer));
        drive(&mut lp, "the timer", |_| fired.get());
        let (got, _peer) = drive_join(&mut lp, "the peer to get the timer's bytes", reader);
        assert!(got == pattern(N), "{family:?}: the peer got other bytes than the timer sent");
        let (notes, channel) = lp.get_mut::<Notes>(t).unwrap();
        assert_eq!(notes.notes, ["written by the timer"]);
        assert_eq!(channel.pending_output(), 0);
    });
}

// ---------------------------------------------------------------------------------------------
// 5. The hard output limit carries OutputLimit

/// Sends until the hard limit stops it; records what `handle_error` got.
struct Flood {
    error: Rc<RefCell<Option<(io::Error, Handler)>>>,
}

impl Dispatcher for Flood {
    fn writable(&self) -> bool {
        true
    }
    fn handle_write(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let chunk = [0x5a; 4096];
        // At most 64 MiB: far more than any kernel buffer plus the limit.
        for _ in 0..(64 << 20) / chunk.len() {
            cx.channel.send_all(&chunk)?;
        }
        Ok(())
    }
    fn handle_error(&mut self, err: io::Error, cx: &mut Context<'_>) {
        *self.error.borrow_mut() = Some((err, cx.failed_handler()));
        cx.channel.close();
    }
}

fn hard_output_limit_carries_output_limit(backend: Backend) {
    const LIMIT: usize = 40_000;
    each_family(&[Family::V4, Family::Unix], |family| {
        let mut lp = new_loop(backend);
        let (ours, peer) = connected_pair(family); // the peer never reads
        let mut ch = Channel::from(ours);
        ch.set_output_limits(LIMIT, LIMIT);
        let error = Rc::new(RefCell::new(None));
        let t = lp.add(ch, Flood { error: error.clone() }).unwrap();
        drive(&mut lp, "handle_error", |_| error.borrow().is_some());
        let (err, failed) = error.borrow_mut().take().unwrap();
        assert_eq!(failed, Handler::Write, "{family:?}: {err}");
        assert!(OutputLimit::is(&err), "{family:?}: not an OutputLimit: {err:?}");
        let limit = *OutputLimit::of(&err).unwrap();
        assert_eq!(limit.limit, LIMIT, "{family:?}: {err}");
        assert!(limit.wanted > LIMIT && limit.wanted <= LIMIT + 4096, "{family:?}: {limit:?}");
        assert_eq!(err.kind(), io::ErrorKind::OutOfMemory);
        drive(&mut lp, "the channel to leave the map", |lp| !lp.contains(t));
        drop(peer);
    });
}

// ---------------------------------------------------------------------------------------------
// 6. default_map::run keeps the thread's loop when a panic propagates

struct Bomb;

impl Dispatcher for Bomb {
    fn writable(&self) -> bool {
        false
    }
    fn handle_read(&mut self, _cx: &mut Context<'_>) -> io::Result<()> {
        panic!("Bomb::handle_read panicked on purpose")
    }
}

/// Not per backend: the default map is on `Backend::Auto`. Each test runs on its own thread,
/// so this thread's default map is this test's alone.
#[test]
fn default_map_run_keeps_the_loop_when_a_panic_propagates() {
    default_map::with(|lp| lp.set_catch_panics(false)).unwrap();
    let listener = Channel::tcp_listener("127.0.0.1:0".parse().unwrap(), 8).unwrap();
    let survivor = default_map::add(listener, sockloop::Ignore).unwrap();
    let (ours, peer) = UnixStream::pair().unwrap();
    let bomb = default_map::add(Channel::from(ours), Bomb).unwrap();
    assert_eq!(default_map::len(), 2);
    std::io::Write::write_all(&mut &peer, b"x").unwrap();

    let opts = RunOptions::new().timeout(Duration::from_millis(100)).count(300);
    let res = catch_unwind(AssertUnwindSafe(|| default_map::run(opts)));
    let payload = res.expect_err("the handler's panic propagates out of default_map::run");
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    assert_eq!(msg, "Bomb::handle_read panicked on purpose");

    let (len, has_survivor, has_bomb) =
        default_map::with(|lp| (lp.len(), lp.contains(survivor), lp.contains(bomb)))
            .expect("the thread's default loop is usable after the panic");
    assert!(has_survivor, "the channel added before the panic is gone: the thread's loop was lost");
    assert!(!has_bomb, "the panicking channel is still in the map");
    assert_eq!(len, 1);
    // It runs again, and still has the survivor.
    default_map::run(RunOptions::new().timeout(Duration::ZERO).count(1)).unwrap();
    assert_eq!(default_map::len(), 1);
    default_map::close_all();
    assert_eq!(default_map::len(), 0);
}

backend_tests!(
    close_when_done_from_a_timer_loses_nothing,
    close_when_done_from_a_sweep_loses_nothing,
    close_when_done_from_another_handler_loses_nothing,
    second_pause_extends_the_first,
    handle_timeout_tells_its_timers_apart,
    a_timer_borrows_dispatcher_and_channel_together,
    hard_output_limit_carries_output_limit,
);
