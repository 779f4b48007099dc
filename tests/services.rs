//! Loop services (issue 6): timers, idle timeouts, the cross-thread waker, signals and graceful
//! shutdown, over every backend.

mod support;

use sockloop::{Backend, Channel, Context, Dispatcher, Ignore, Loop, RunOptions, Token};
use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(20);

fn timers_fire_in_deadline_order_and_cancelled_ones_never(backend: Backend) {
    let mut lp = Loop::with_backend(backend).unwrap();
    let order = Rc::new(RefCell::new(Vec::new()));
    let base = Instant::now();
    let mut cancelled = Vec::new();
    for (i, ms) in [(3, 30u64), (1, 10), (4, 40), (2, 20), (0, 0)] {
        let o = order.clone();
        lp.call_at(base + Duration::from_millis(ms), move |_| o.borrow_mut().push(i));
        let o = order.clone();
        cancelled.push(lp.call_at(base + Duration::from_millis(ms + 1), move |_| o.borrow_mut().push(99)));
    }
    for id in cancelled {
        assert!(lp.cancel(id));
    }
    lp.run().unwrap(); // no channels: runs until the timers are done
    assert_eq!(*order.borrow(), vec![0, 1, 2, 3, 4], "{backend:?}");
    assert_eq!(lp.pending_timers(), 0);
}

fn the_next_deadline_caps_the_wait(backend: Backend) {
    let mut lp = Loop::with_backend(backend).unwrap();
    // An idle listener keeps the loop waiting; the run timeout (30 s) is not what ends
    // the first wait: the 50 ms timer is.
    lp.add(Channel::tcp_listener("127.0.0.1:0".parse().unwrap(), 1).unwrap(), Ignore).unwrap();
    let fired = Rc::new(Cell::new(None));
    let f = fired.clone();
    let start = Instant::now();
    lp.call_later(Duration::from_millis(50), move |_| f.set(Some(Instant::now())));
    lp.run_with(RunOptions::new().timeout(Duration::from_secs(30)).count(1)).unwrap();
    let at = fired.get().unwrap_or_else(|| panic!("{backend:?}: the timer did not fire in the first pass"));
    assert!(at.duration_since(start) >= Duration::from_millis(50), "{backend:?}: fired early");
    assert!(start.elapsed() < Duration::from_secs(10), "{backend:?}: waited for the run timeout");
}

fn a_zero_delay_timer_scheduled_by_a_timer_runs_on_the_next_pass(backend: Backend) {
    let mut lp = Loop::with_backend(backend).unwrap();
    lp.add(Channel::tcp_listener("127.0.0.1:0".parse().unwrap(), 1).unwrap(), Ignore).unwrap();
    let ran = Rc::new(Cell::new(0));
    let r = ran.clone();
    lp.call_later(Duration::ZERO, move |lp| {
        r.set(1);
        let r2 = r.clone();
        lp.call_later(Duration::ZERO, move |_| r2.set(2));
    });
    let one_pass = RunOptions::new().timeout(Duration::from_secs(5)).count(1);
    lp.run_with(one_pass).unwrap();
    assert_eq!(ran.get(), 1, "{backend:?}: the inner timer ran in the same pass");
    let start = Instant::now();
    lp.run_with(one_pass).unwrap();
    assert_eq!(ran.get(), 2, "{backend:?}");
    assert!(start.elapsed() < Duration::from_secs(4), "{backend:?}: the due timer did not cut the wait");
}

fn call_every_repeats_until_cancelled_from_inside(backend: Backend) {
    let mut lp = Loop::with_backend(backend).unwrap();
    let n = Rc::new(Cell::new(0));
    let id = Rc::new(Cell::new(None));
    let (n2, id2) = (n.clone(), id.clone());
    let timer = lp.call_every(Duration::from_millis(1), move |lp| {
        n2.set(n2.get() + 1);
        if n2.get() == 5 {
            assert!(lp.cancel(id2.get().unwrap()));
        }
    });
    id.set(Some(timer));
    lp.run().unwrap(); // ends when the cancelled timer leaves nothing pending
    assert_eq!(n.get(), 5, "{backend:?}");
}

/// Counts its timeouts and reads whatever arrives.
#[derive(Default)]
struct Idle {
    timeouts: Rc<RefCell<Vec<Instant>>>,
    set_on_read: Option<Duration>,
}

impl Dispatcher for Idle {
    fn writable(&self) -> bool {
        false
    }
    fn handle_read(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let mut buf = [0u8; 64];
        cx.channel.recv(&mut buf)?;
        if let Some(d) = self.set_on_read.take() {
            cx.lp.set_idle_timeout(cx.token(), Some(d));
            cx.lp.set_timeout(cx.token(), Duration::from_secs(3600)); // a plain timer, cancelled by close
        }
        Ok(())
    }
    fn handle_timeout(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        self.timeouts.borrow_mut().push(Instant::now());
        cx.channel.close();
        Ok(())
    }
}

fn idle_timeouts_count_from_the_last_event(backend: Backend) {
    let mut lp = Loop::with_backend(backend).unwrap();
    let idle = Duration::from_millis(300);
    let (a, mut b) = UnixStream::pair().unwrap();
    let timeouts = Rc::new(RefCell::new(Vec::new()));
    let t = lp.add(Channel::from(a), Idle { timeouts: timeouts.clone(), set_on_read: None }).unwrap();
    let start = Instant::now();
    assert!(lp.set_idle_timeout(t, Some(idle)));
    // Traffic 200 ms in (a loop timer writes from the peer side) resets the idle clock.
    let last_write = Rc::new(Cell::new(start));
    let lw = last_write.clone();
    let mut peer = b.try_clone().unwrap();
    lp.call_later(Duration::from_millis(200), move |_| {
        peer.write_all(b"x").unwrap();
        lw.set(Instant::now());
    });
    let deadline = Instant::now() + LONG;
    while lp.contains(t) && Instant::now() < deadline {
        lp.poll(Some(Duration::from_millis(100))).unwrap();
    }
    let fired = *timeouts.borrow().first().unwrap_or_else(|| panic!("{backend:?}: no timeout"));
    assert_eq!(timeouts.borrow().len(), 1, "{backend:?}");
    assert!(fired.duration_since(last_write.get()) >= idle, "{backend:?}: fired before idle after the write");
    assert!(fired.duration_since(start) >= Duration::from_millis(200) + idle, "{backend:?}");
    let mut rest = Vec::new();
    b.read_to_end(&mut rest).unwrap(); // closed: end of stream
}

/// Records `(thread, seq)` per closure posted through the waker.
#[derive(Default)]
struct Recorder {
    next: Vec<u64>,
    total: u64,
    out_of_order: u64,
}
impl Dispatcher for Recorder {
    fn readable(&self) -> bool {
        false
    }
    fn writable(&self) -> bool {
        false
    }
}

fn a_million_closures_from_eight_threads_each_run_once_in_order(backend: Backend) {
    const THREADS: usize = 8;
    const EACH: u64 = 125_000;
    let mut lp = Loop::with_backend(backend).unwrap();
    let (a, _b) = UnixStream::pair().unwrap();
    let token: Token =
        lp.add(Channel::from(a), Recorder { next: vec![0; THREADS], ..Default::default() }).unwrap();
    let waker = lp.waker().unwrap();
    let threads: Vec<_> = (0..THREADS)
        .map(|id| {
            let w = waker.clone();
            std::thread::spawn(move || {
                for seq in 0..EACH {
                    w.call_soon(move |lp| {
                        let r = lp.get_mut::<Recorder>(token).unwrap().0;
                        if r.next[id] != seq {
                            r.out_of_order += 1;
                        }
                        r.next[id] = seq + 1;
                        r.total += 1;
                        if r.total == THREADS as u64 * EACH {
                            lp.stop();
                        }
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    let start = Instant::now();
    lp.run_with(RunOptions::new().timeout(Duration::from_secs(1)).until_stopped().count(100_000)).unwrap();
    for t in threads {
        t.join().unwrap();
    }
    let r = lp.get_mut::<Recorder>(token).unwrap().0;
    assert_eq!(r.total, THREADS as u64 * EACH, "{backend:?} after {:?}", start.elapsed());
    assert_eq!(r.out_of_order, 0, "{backend:?}");
    assert!(r.next.iter().all(|&n| n == EACH));
    // Nothing more was queued: a further pass runs nothing twice.
    lp.run_with(RunOptions::new().timeout(Duration::ZERO).count(1)).unwrap();
    assert_eq!(lp.get_mut::<Recorder>(token).unwrap().0.total, THREADS as u64 * EACH);
}

fn signals_reach_their_handler_on_the_loop_thread(backend: Backend) {
    // SIGHUP is used by this test only (SIGINT/SIGTERM are exercised on the example servers).
    // A raised signal reaches every loop watching it: one backend at a time, so each loop
    // counts only its own.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut lp = Loop::with_backend(backend).unwrap();
    let hits = Rc::new(Cell::new(0));
    let h = hits.clone();
    let loop_thread = std::thread::current().id();
    lp.on_signal(libc::SIGHUP, move |lp| {
        assert_eq!(std::thread::current().id(), loop_thread);
        h.set(h.get() + 1);
        lp.stop();
    })
    .unwrap();
    // An idle channel keeps the loop in its wait when the signal interrupts it.
    lp.add(Channel::tcp_listener("127.0.0.1:0".parse().unwrap(), 1).unwrap(), Ignore).unwrap();
    let sender = std::thread::spawn(|| signal_hook::low_level::raise(libc::SIGHUP).unwrap());
    let start = Instant::now();
    lp.run_with(RunOptions::new().timeout(Duration::from_secs(1)).count(200)).unwrap();
    sender.join().unwrap();
    assert_eq!(hits.get(), 1, "{backend:?}");
    assert!(start.elapsed() < LONG);
}

/// A channel whose output was queued up front and that never reads.
struct Sender;
impl Dispatcher for Sender {
    fn writable(&self) -> bool {
        false
    }
    fn readable(&self) -> bool {
        false
    }
}

fn graceful_shutdown_flushes_queued_output_then_ends_the_loop(backend: Backend) {
    let mut lp = Loop::with_backend(backend).unwrap();
    let listener = Channel::tcp_listener("127.0.0.1:0".parse().unwrap(), 8).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    lp.add(listener, Ignore).unwrap();
    let (a, b) = UnixStream::pair().unwrap();
    let payload: Vec<u8> = (0..8 << 20).map(|i| (i % 251) as u8).collect();
    let mut ch = Channel::from(a);
    ch.send_all(&payload).unwrap();
    assert!(ch.pending_output() > 0, "the kernel took 8 MiB at once");
    lp.add(ch, Sender).unwrap();
    lp.shutdown(Duration::from_secs(60));
    // The listener closed at once: new connections are refused.
    assert!(std::net::TcpStream::connect(addr).is_err(), "{backend:?}");
    let reader = std::thread::spawn(move || {
        let mut b = b;
        let mut got = Vec::new();
        b.read_to_end(&mut got).unwrap();
        got
    });
    let start = Instant::now();
    lp.run().unwrap();
    assert!(lp.is_empty());
    assert!(start.elapsed() < LONG);
    assert_eq!(reader.join().unwrap(), payload, "{backend:?}");
}

fn graceful_shutdown_gives_up_on_a_peer_that_never_reads_at_the_deadline(backend: Backend) {
    let mut lp = Loop::with_backend(backend).unwrap();
    let (a, _b) = UnixStream::pair().unwrap();
    let mut ch = Channel::from(a);
    ch.send_all(&vec![7u8; 4 << 20]).unwrap();
    lp.add(ch, Sender).unwrap();
    let start = Instant::now();
    lp.shutdown(Duration::from_millis(200));
    lp.run().unwrap();
    assert!(lp.is_empty(), "{backend:?}");
    assert!(start.elapsed() >= Duration::from_millis(200), "{backend:?}: gave up early");
}

fn output_a_closed_channel_was_accepted_reaches_the_peer_before_run_returns(backend: Backend) {
    let mut lp = Loop::with_backend(backend).unwrap();
    let (a, b) = UnixStream::pair().unwrap();
    // Fill the kernel's buffer first, so whatever the channel accepts must wait for the peer.
    a.set_nonblocking(true).unwrap();
    let mut filled = 0;
    loop {
        match (&a).write(&[1u8; 16 << 10]) {
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    let (go, started) = std::sync::mpsc::channel();
    let (done, got) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        started.recv().unwrap();
        let mut all = Vec::new();
        let mut b = b;
        b.read_to_end(&mut all).unwrap();
        done.send(all.len()).unwrap();
    });
    // A timer, not a handler: a full socket is not writable on the readiness backends.
    let token = lp.add(Channel::from(a), Sender).unwrap();
    let sent = Rc::new(Cell::new(0));
    let s = sent.clone();
    lp.call_later(Duration::ZERO, move |lp| {
        // On io_uring the channel accepts what its ring may owe (64 KiB), all of it waiting.
        let ch = lp.channel_mut(token).unwrap();
        while let Ok(n @ 1..) = ch.send(&[7u8; 16 << 10]) {
            s.set(s.get() + n);
        }
        assert!(lp.close_channel(token));
        go.send(()).unwrap();
    });
    lp.run().unwrap();
    // The loop is still alive: no drop of the poller may be what delivers the rest.
    let got = got.recv_timeout(LONG).expect("the peer never saw the end of the stream");
    assert_eq!(got, filled + sent.get(), "{backend:?}");
    drop(lp);
    reader.join().unwrap();
}

fn timers_can_be_scheduled_and_cancelled_from_handlers(backend: Backend) {
    struct Arm {
        fired: Rc<Cell<u32>>,
    }
    impl Dispatcher for Arm {
        fn writable(&self) -> bool {
            false
        }
        fn handle_read(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
            let mut buf = [0u8; 8];
            let n = cx.channel.recv(&mut buf)?;
            let f = self.fired.clone();
            let keep = cx.lp.call_later(Duration::from_millis(5), move |_| f.set(f.get() + 1));
            let f = self.fired.clone();
            let drop_it = cx.lp.call_later(Duration::from_millis(5), move |_| f.set(f.get() + 100));
            assert!(cx.lp.cancel(drop_it));
            let _ = (keep, n);
            cx.channel.close();
            Ok(())
        }
    }
    let mut lp = Loop::with_backend(backend).unwrap();
    let fired = Rc::new(Cell::new(0));
    let (a, mut b) = UnixStream::pair().unwrap();
    lp.add(Channel::from(a), Arm { fired: fired.clone() }).unwrap();
    b.write_all(b"go").unwrap();
    lp.run().unwrap(); // the channel closes; the loop runs on until the timer fired
    assert_eq!(fired.get(), 1, "{backend:?}");
}

backend_tests!(
    timers_fire_in_deadline_order_and_cancelled_ones_never,
    the_next_deadline_caps_the_wait,
    a_zero_delay_timer_scheduled_by_a_timer_runs_on_the_next_pass,
    call_every_repeats_until_cancelled_from_inside,
    idle_timeouts_count_from_the_last_event,
    a_million_closures_from_eight_threads_each_run_once_in_order,
    signals_reach_their_handler_on_the_loop_thread,
    graceful_shutdown_flushes_queued_output_then_ends_the_loop,
    graceful_shutdown_gives_up_on_a_peer_that_never_reads_at_the_deadline,
    output_a_closed_channel_was_accepted_reaches_the_peer_before_run_returns,
    timers_can_be_scheduled_and_cancelled_from_handlers
);
