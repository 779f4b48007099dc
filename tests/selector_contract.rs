//! The one contract of `poller::Selector` (src/poller/mod.rs), checked over every backend:
//! `set_interest` on an unknown descriptor starts watching it and on a known one changes what
//! is watched; a descriptor that is not open fails with `EBADF`; `remove` of an unknown
//! descriptor, or twice, is `Ok`; a wake from another thread arrives as `WAKE_TOKEN` and is
//! drained; `WAKE_TOKEN` cannot be used for a descriptor.

mod support;

use sockloop::poller::{Event, Interest, Selector};
use sockloop::Backend;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

/// How long an expected event may take. Only reached on failure.
const DEADLINE: Duration = Duration::from_secs(10);
/// How long a wait runs to show that nothing is reported.
const QUIET: Duration = Duration::from_millis(50);

const WRITE: Interest = Interest { read: false, write: true };

fn selector(backend: Backend) -> Selector {
    let sel = Selector::new(backend).expect("create selector");
    assert_eq!(sel.backend(), backend);
    sel
}

/// Waits until an event for `token` arrives (failing after [`DEADLINE`]) and returns it.
fn event_for(sel: &mut Selector, token: u64, what: &str) -> Event {
    let end = Instant::now() + DEADLINE;
    let mut events = Vec::new();
    loop {
        events.clear();
        let left = end.saturating_duration_since(Instant::now());
        sel.wait(&mut events, Some(left.min(Duration::from_millis(100)))).expect("wait");
        if let Some(ev) = events.iter().find(|e| e.token == token) {
            return *ev;
        }
        assert!(Instant::now() < end, "no event for token {token} ({what}) within {DEADLINE:?}");
    }
}

/// The events of one wait of `timeout`.
fn wait_once(sel: &mut Selector, timeout: Duration) -> Vec<Event> {
    let mut events = Vec::new();
    sel.wait(&mut events, Some(timeout)).expect("wait");
    events
}

fn tokens(events: &[Event]) -> Vec<u64> {
    events.iter().map(|e| e.token).collect()
}

/// set_interest on a descriptor the selector does not know starts watching it.
fn unknown_fd_is_watched(backend: Backend) {
    let mut sel = selector(backend);
    let (a, mut b) = UnixStream::pair().unwrap();
    sel.set_interest(a.as_fd(), 7, Interest::READ).expect("set_interest on an unknown fd");
    assert_eq!(tokens(&wait_once(&mut sel, Duration::ZERO)), [] as [u64; 0], "nothing to read yet");
    b.write_all(b"x").unwrap();
    let ev = event_for(&mut sel, 7, "data to read");
    assert!(ev.readable, "{ev:?}");
    // And for output: a fresh descriptor with write interest is reported writable.
    let (c, _d) = UnixStream::pair().unwrap();
    sel.set_interest(c.as_fd(), 8, WRITE).expect("set_interest on another unknown fd");
    let ev = event_for(&mut sel, 8, "room to write");
    assert!(ev.writable && !ev.readable, "{ev:?}");
}

/// set_interest on a known descriptor changes what it is watched for (and under which token).
fn known_fd_interest_is_changed(backend: Backend) {
    let mut sel = selector(backend);
    let (a, mut b) = UnixStream::pair().unwrap();
    sel.set_interest(a.as_fd(), 7, Interest::READ).unwrap();
    b.write_all(b"x").unwrap(); // left unread: level-triggered, it stays readable
    assert!(event_for(&mut sel, 7, "data to read").readable);

    sel.set_interest(a.as_fd(), 7, Interest::NONE).expect("set_interest NONE on a known fd");
    for _ in 0..3 {
        let evs = wait_once(&mut sel, QUIET);
        assert!(evs.is_empty(), "events after the interest went to NONE: {evs:?}");
    }

    sel.set_interest(a.as_fd(), 7, Interest::READ).expect("set_interest READ again");
    assert!(event_for(&mut sel, 7, "data to read, watched again").readable);

    // Write only: the unread input is no longer reported, room to write is.
    sel.set_interest(a.as_fd(), 7, WRITE).unwrap();
    let ev = event_for(&mut sel, 7, "room to write");
    assert!(ev.writable && !ev.readable, "{ev:?}");

    // A new token for a known descriptor replaces the old one.
    sel.set_interest(a.as_fd(), 9, Interest::READ).unwrap();
    let ev = event_for(&mut sel, 9, "data to read under the new token");
    assert!(ev.readable, "{ev:?}");
    let evs = wait_once(&mut sel, Duration::ZERO);
    assert!(!tokens(&evs).contains(&7), "the old token is still reported: {evs:?}");
}

/// Serialises the tests that close a descriptor on purpose and then name its number, so no
/// two of them (one per backend, on parallel threads) can hand the number to each other.
static CLOSED_FD: Mutex<()> = Mutex::new(());

/// A duplicate of `fd` with a high number (below select's FD_SETSIZE and the descriptor
/// limit): the kernel hands out the lowest free number, so nothing else in this process
/// reuses a high one between a close and the calls after it.
fn high_fd(fd: &impl AsFd) -> OwnedFd {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current.unwrap_or(u64::MAX);
    let at = 900.min(soft.saturating_sub(32)) as i32;
    rustix::io::fcntl_dupfd_cloexec(fd, at).expect("dup to a high number")
}

/// A descriptor that is not open fails with EBADF, for every interest, on every backend.
fn closed_fd_fails_with_ebadf(backend: Backend) {
    let _one_at_a_time = CLOSED_FD.lock().unwrap_or_else(|e| e.into_inner());
    let mut sel = selector(backend);
    let (a, _b) = UnixStream::pair().unwrap();
    let high = high_fd(&a);
    let raw = high.as_raw_fd();
    drop(high);
    // SAFETY: `raw` was closed on purpose just above, to check the error the selector gives for
    // a descriptor that is not open; no code reads from or writes to it, and the selector only
    // passes the number to the kernel, which answers EBADF.
    let closed = unsafe { BorrowedFd::borrow_raw(raw) };
    for (interest, token) in [(Interest::READ, 3), (Interest::NONE, 4), (WRITE, 5)] {
        let err = sel.set_interest(closed, token, interest).expect_err("set_interest on a closed fd");
        assert_eq!(err.raw_os_error(), Some(libc::EBADF), "{interest:?}: {err:?}");
    }
    // The failed calls left nothing behind: waits are clean, the selector still works.
    assert!(wait_once(&mut sel, Duration::ZERO).is_empty());
    sel.set_interest(a.as_fd(), 6, WRITE).unwrap();
    assert!(event_for(&mut sel, 6, "room to write after the failures").writable);
}

/// remove of a descriptor the selector never knew is Ok.
fn remove_unknown_is_ok(backend: Backend) {
    let mut sel = selector(backend);
    let (a, _b) = UnixStream::pair().unwrap();
    sel.remove(a.as_fd()).expect("remove of an unknown fd");
    // Known but never watched (NONE) is removable too.
    let (c, _d) = UnixStream::pair().unwrap();
    sel.set_interest(c.as_fd(), 1, Interest::NONE).unwrap();
    sel.remove(c.as_fd()).expect("remove of a fd known with no interest");
    assert!(wait_once(&mut sel, Duration::ZERO).is_empty());
}

/// remove twice is Ok, a removed descriptor is no longer reported, and it can be watched again.
fn remove_twice_is_ok(backend: Backend) {
    let mut sel = selector(backend);
    let (a, mut b) = UnixStream::pair().unwrap();
    sel.set_interest(a.as_fd(), 7, Interest::READ).unwrap();
    b.write_all(b"x").unwrap();
    assert!(event_for(&mut sel, 7, "data to read").readable);
    sel.remove(a.as_fd()).expect("first remove");
    sel.remove(a.as_fd()).expect("second remove");
    let evs = wait_once(&mut sel, QUIET);
    assert!(evs.is_empty(), "a removed fd is still reported: {evs:?}");
    sel.set_interest(a.as_fd(), 8, Interest::READ).expect("watching it again");
    assert!(event_for(&mut sel, 8, "data to read after re-adding").readable);
}

/// A wake from another thread ends a blocking wait with WAKE_TOKEN; the next zero-timeout wait
/// reports nothing more (the wake was drained). Twice, to show it re-arms.
fn wake_from_another_thread(backend: Backend) {
    let mut sel = selector(backend);
    let waker = sel.waker().expect("waker");
    for round in 0..2 {
        let start = Arc::new(Barrier::new(2));
        let (w, s) = (waker.clone(), start.clone());
        let t = std::thread::spawn(move || {
            s.wait();
            w.wake().expect("wake");
            w.wake().expect("a second wake coalesces"); // coalesces with the first
        });
        start.wait();
        let t0 = Instant::now();
        let ev = event_for(&mut sel, Selector::WAKE_TOKEN, "the wake");
        assert!(t0.elapsed() < DEADLINE, "round {round}");
        assert!(ev.readable, "round {round}: {ev:?}");
        t.join().unwrap();
        // Whatever of the two wakes the first wait did not see may show once more; after that,
        // nothing.
        let mut evs = wait_once(&mut sel, Duration::ZERO);
        if tokens(&evs) == [Selector::WAKE_TOKEN] {
            evs = wait_once(&mut sel, Duration::ZERO);
        }
        assert!(evs.is_empty(), "round {round}: the wake was not drained: {evs:?}");
        assert!(wait_once(&mut sel, Duration::ZERO).is_empty(), "round {round}: still reported");
    }
}

/// set_interest with WAKE_TOKEN is refused and watches nothing.
fn wake_token_is_refused(backend: Backend) {
    let mut sel = selector(backend);
    let (a, mut b) = UnixStream::pair().unwrap();
    let err =
        sel.set_interest(a.as_fd(), Selector::WAKE_TOKEN, Interest::READ).expect_err("WAKE_TOKEN refused");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    b.write_all(b"x").unwrap();
    let evs = wait_once(&mut sel, QUIET);
    assert!(evs.is_empty(), "the refused fd is watched after all: {evs:?}");
    // The descriptor is still unknown: a real token watches it.
    sel.set_interest(a.as_fd(), 1, Interest::READ).unwrap();
    assert!(event_for(&mut sel, 1, "data to read").readable);
    let mut byte = [0u8; 1];
    (&a).read_exact(&mut byte).unwrap();
}

/// Level-triggered: input left unread is reported by every wait, not only the first.
fn unread_input_is_reported_again(backend: Backend) {
    let mut sel = selector(backend);
    let (a, mut b) = UnixStream::pair().unwrap();
    sel.set_interest(a.as_fd(), 7, Interest::READ).unwrap();
    b.write_all(b"xy").unwrap();
    for round in 0..3 {
        let ev = event_for(&mut sel, 7, "unread input");
        assert!(ev.readable, "round {round}: {ev:?}");
    }
    // Read one byte of two: still readable. Read the other: quiet.
    let mut byte = [0u8; 1];
    (&a).read_exact(&mut byte).unwrap();
    assert!(event_for(&mut sel, 7, "one byte left").readable);
    (&a).read_exact(&mut byte).unwrap();
    let evs = wait_once(&mut sel, QUIET);
    assert!(evs.is_empty(), "drained, still reported: {evs:?}");
}

/// A readiness seen for a descriptor that is then removed and closed never reaches the next
/// descriptor given the same number, even when the old one was ready at the time of removal
/// (io_uring: its poll had completed, or was cancelled, with the completion still queued).
fn stale_readiness_never_reaches_a_reused_number(backend: Backend) {
    let _one_at_a_time = CLOSED_FD.lock().unwrap_or_else(|e| e.into_inner());
    let mut sel = selector(backend);
    for round in 0..3 {
        let (a, mut b) = UnixStream::pair().unwrap();
        let old = high_fd(&a);
        drop(a);
        sel.set_interest(old.as_fd(), 1, Interest::READ).unwrap();
        // Arm it (nothing to read yet), then make it ready without waiting again.
        assert!(wait_once(&mut sel, Duration::ZERO).is_empty(), "round {round}");
        b.write_all(b"x").unwrap();
        let raw = old.as_raw_fd();
        sel.remove(old.as_fd()).unwrap();
        drop(old);
        // The same number, now a descriptor with nothing to read.
        let (c, _d) = UnixStream::pair().unwrap();
        let new = rustix::io::fcntl_dupfd_cloexec(&c, raw).unwrap();
        assert_eq!(new.as_raw_fd(), raw, "round {round}: the number was not reused");
        sel.set_interest(new.as_fd(), 2, Interest::READ).unwrap();
        for _ in 0..2 {
            let evs = wait_once(&mut sel, QUIET);
            assert!(evs.is_empty(), "round {round}: a stale readiness was delivered: {evs:?}");
        }
        sel.remove(new.as_fd()).unwrap();
    }
}

/// A selector built and waited on by one thread keeps working when another thread waits on it
/// (a loop built on one thread and run on another; the Python package's released GIL).
fn waits_from_another_thread(backend: Backend) {
    let mut sel = selector(backend);
    let waker = sel.waker().unwrap();
    let (a, mut b) = UnixStream::pair().unwrap();
    sel.set_interest(a.as_fd(), 7, Interest::READ).unwrap();
    assert!(wait_once(&mut sel, Duration::ZERO).is_empty());
    b.write_all(b"x").unwrap();
    let mut sel = std::thread::spawn(move || {
        assert!(event_for(&mut sel, 7, "input, on another thread").readable);
        waker.wake().unwrap();
        assert!(event_for(&mut sel, Selector::WAKE_TOKEN, "a wake, on another thread").readable);
        sel
    })
    .join()
    .unwrap();
    // And back on the first thread.
    assert!(event_for(&mut sel, 7, "input, back on the first thread").readable);
    sel.remove(a.as_fd()).unwrap();
}

/// Plain data is never reported as urgent (io_uring: a poll completed by a wake-up carries the
/// wake-up's mask, POLLIN|POLLPRI for any data), however the arrivals fall between the waits:
/// a writer keeps 16 sockets busy while the selector reads them.
fn plain_data_is_never_urgent(backend: Backend) {
    let mut sel = selector(backend);
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for i in 0..16 {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        sel.set_interest(a.as_fd(), i, Interest::READ).unwrap();
        ours.push(a);
        theirs.push(b);
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sent = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for b in &mut theirs {
                    match b.write(b"data") {
                        Ok(n) => sent += n as u64,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => panic!("write: {e}"),
                    }
                }
                std::thread::yield_now();
            }
            sent
        })
    };
    let mut got = 0u64;
    let mut buf = [0u8; 4096];
    let mut events = Vec::new();
    let end = Instant::now() + Duration::from_millis(300);
    while Instant::now() < end {
        events.clear();
        sel.wait(&mut events, Some(Duration::from_millis(50))).unwrap();
        for ev in &events {
            assert!(!ev.priority, "plain data reported as urgent: {ev:?}");
            if ev.readable {
                match (&ours[ev.token as usize]).read(&mut buf) {
                    Ok(n) => got += n as u64,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("read: {e}"),
                }
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = writer.join().unwrap();
    assert!(got > 0 && got <= sent, "read {got} of {sent} bytes");
}

backend_tests!(
    unknown_fd_is_watched,
    known_fd_interest_is_changed,
    closed_fd_fails_with_ebadf,
    remove_unknown_is_ok,
    remove_twice_is_ok,
    wake_from_another_thread,
    wake_token_is_refused,
    unread_input_is_reported_again,
    stale_readiness_never_reaches_a_reused_number,
    waits_from_another_thread,
    plain_data_is_never_urgent,
);

/// `parse` and `name` know uring; where the kernel refuses io_uring, asking for it fails with an
/// error that names io_uring.
#[test]
fn uring_is_named_and_refusal_is_clear() {
    assert_eq!(Backend::parse("uring"), Some(Backend::Uring));
    assert_eq!(Backend::Uring.name(), "uring");
    match Selector::new(Backend::Uring) {
        Ok(sel) => {
            assert!(Backend::all().contains(&Backend::Uring));
            assert_eq!(sel.backend(), Backend::Uring);
        }
        Err(e) => {
            assert!(!Backend::all().contains(&Backend::Uring));
            assert!(e.to_string().contains("io_uring"), "{e}");
        }
    }
}
