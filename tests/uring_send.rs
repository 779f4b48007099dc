//! Output on the io_uring backend (issue 15, phase 3), over every backend: what `send`
//! accepted arrives whole and in order, also when the channel closes or half-closes right
//! after; a full peer holds `send` back without the loop spinning; a peer that resets mid-send
//! ends that channel only; and a peer that always has data does not starve another
//! connection. On io_uring a connected stream channel's `send` goes to the ring (copied, sent
//! with the pass's one `io_uring_enter`), so each of these fails there if a send were lost,
//! reordered, cut off by the FIN, or applied to the wrong channel; on the other backends they
//! pin down the behaviour the ring must keep.

mod support;

use sockloop::channel::{Peer, State};
use sockloop::{Backend, Channel, Context, Dispatcher, Socket};
use std::cell::Cell;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

/// The first byte where `got` differs from `pattern(.., 0)`, if any.
fn first_difference(got: &[u8]) -> Option<usize> {
    got.iter().enumerate().position(|(i, &b)| b != (i % 251) as u8)
}

/// A peer thread that reads until end of stream and returns everything.
fn reader(peer: Socket) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || read_to_end(&peer))
}

// ---------------------------------------------------------------------------------------------
// 1. A large send arrives intact and in order; a full peer holds it back without a spin

const LARGE: usize = 6 << 20;

fn a_large_send_arrives_intact_and_in_order(backend: Backend) {
    each_family(&[Family::V4, Family::Unix], |family| {
        let mut lp = new_loop(backend);
        let (ours, peer) = connected_pair(family);
        ours.set_send_buffer_size(64 << 10).unwrap();
        peer.set_recv_buffer_size(64 << 10).unwrap();
        let (pump, seen) = Pump::new(pattern(LARGE, 0));
        let t = lp.add(Channel::from(ours), pump).unwrap();
        // The peer reads nothing yet: the channel fills what the socket (and on io_uring the
        // ring's bound) takes, then `send` refuses, and the loop waits instead of spinning.
        drive(&mut lp, "send to refuse more", |_| seen.refused.get() > 0);
        // TCP may still move a little from the send buffer to the peer's: wait until a whole
        // 50 ms pass accepts nothing more.
        let mut held = seen.accepted.get();
        drive(&mut lp, "the socket to stay full", |lp| {
            lp.poll(Some(Duration::from_millis(50))).unwrap();
            let now = seen.accepted.get();
            std::mem::replace(&mut held, now) == now
        });
        assert!(held < LARGE, "{family:?}: everything was accepted with nobody reading");
        let writes = seen.writes.get();
        assert_quiet(&mut lp);
        assert!(
            seen.writes.get() <= writes + 1,
            "{family:?}: write events kept coming while nothing could be sent"
        );
        assert_eq!(seen.accepted.get(), held, "{family:?}: more was accepted with nobody reading");
        // Now the peer reads: the write events resume as the socket drains, to the end.
        let r = reader(peer);
        drive(&mut lp, "every byte to be accepted", |_| seen.accepted.get() == LARGE);
        lp.channel_mut(t).expect("the pump's channel").close_when_done();
        let got = drive_join(&mut lp, "the peer to read to the end", r);
        assert_eq!(got.len(), LARGE, "{family:?}: the peer got {} of {LARGE} bytes", got.len());
        assert_eq!(first_difference(&got), None, "{family:?}: lost or reordered output");
        assert!(seen.errors.borrow().is_empty(), "{family:?}: {:?}", seen.errors.borrow());
        assert!(!lp.contains(t));
    });
}

// ---------------------------------------------------------------------------------------------
// 2. Closing right after sending: every byte, then the FIN

/// No handlers of its own: the test sends through the channel from outside.
struct Nop;
impl Dispatcher for Nop {
    fn writable(&self) -> bool {
        false
    }
    fn urgent_data(&self) -> bool {
        false
    }
}

fn close_when_done_after_a_large_send_delivers_every_byte_then_fin(backend: Backend) {
    each_family(&[Family::V4, Family::Unix], |family| {
        let mut lp = new_loop(backend);
        let (ours, peer) = connected_pair(family);
        ours.set_send_buffer_size(64 << 10).unwrap();
        peer.set_recv_buffer_size(64 << 10).unwrap();
        let t = lp.add(Channel::from(ours), Nop).unwrap();
        {
            let ch = lp.channel_mut(t).expect("the channel");
            ch.send_all(&pattern(LARGE, 0)).unwrap();
            assert!(ch.pending_output() > 0, "{family:?}: everything went at once");
            ch.close_when_done();
        }
        let got = drive_join(&mut lp, "the peer to read to the end", reader(peer));
        assert_eq!(got.len(), LARGE, "{family:?}: the peer got {} of {LARGE} bytes", got.len());
        assert_eq!(first_difference(&got), None, "{family:?}: lost or reordered output");
        drive(&mut lp, "the drained channel to close", |lp| !lp.contains(t));
    });
}

/// `send` then `close()` at once, in the same handler: what `send` accepted is still sent
/// before the FIN (the kernel's buffer on the readiness backends; on io_uring the ring keeps
/// sending through a duplicate of the descriptor after the channel is gone).
fn close_after_send_still_sends_what_send_accepted(backend: Backend) {
    each_family(&[Family::V4, Family::Unix], |family| {
        let mut lp = new_loop(backend);
        let (ours, peer) = connected_pair(family);
        let t = lp.add(Channel::from(ours), Nop).unwrap();
        let data = pattern(40 << 10, 0);
        let accepted = {
            let ch = lp.channel_mut(t).expect("the channel");
            let mut at = 0;
            while at < data.len() {
                let n = ch.send(&data[at..]).unwrap();
                if n == 0 {
                    break;
                }
                at += n;
            }
            ch.close();
            at
        };
        assert!(accepted > 0);
        let got = drive_join(&mut lp, "the peer to read to the end", reader(peer));
        assert_eq!(got.len(), accepted, "{family:?}: the peer got {} of {accepted} bytes", got.len());
        assert_eq!(first_difference(&got), None, "{family:?}: lost or reordered output");
        assert!(!lp.contains(t));
    });
}

/// `shutdown(Write)` right after `send`: the peer gets every byte, then the end of stream,
/// while the channel stays open and still reads what the peer answers.
fn half_close_after_send_sends_everything_first(backend: Backend) {
    each_family(&[Family::V4, Family::Unix], |family| {
        let mut lp = new_loop(backend);
        let (ours, peer) = connected_pair(family);
        let keep = Counts::new();
        let t = lp.add(Channel::from(ours), Probe::stream(&keep)).unwrap();
        let data = pattern(48 << 10, 0);
        {
            let ch = lp.channel_mut(t).expect("the channel");
            let mut at = 0;
            while at < data.len() {
                let n = ch.send(&data[at..]).unwrap();
                assert!(n > 0, "{family:?}: a fresh socket refused 48 KiB");
                at += n;
            }
            ch.shutdown(Shutdown::Write).unwrap();
        }
        let r = std::thread::spawn(move || {
            let got = read_to_end(&peer);
            write_all(&peer, b"bye");
            (got, peer)
        });
        let (got, _peer) = drive_join(&mut lp, "the peer to read to the end", r);
        assert_eq!(got.len(), data.len(), "{family:?}: the FIN came after {} bytes", got.len());
        assert_eq!(first_difference(&got), None, "{family:?}: lost or reordered output");
        drive(&mut lp, "the peer's answer", |_| keep.data.borrow().as_slice() == b"bye");
        assert!(lp.contains(t), "{family:?}: a half-close closed the channel");
    });
}

// ---------------------------------------------------------------------------------------------
// 3. A peer that resets mid-send ends that channel only

fn a_peer_reset_mid_send_closes_only_that_channel(backend: Backend) {
    each_family(&Family::INET, |family| {
        let mut lp = new_loop(backend);
        let (ours, peer) = connected_pair(family);
        ours.set_send_buffer_size(64 << 10).unwrap();
        peer.set_recv_buffer_size(64 << 10).unwrap();
        let (pump, seen) = Pump::new(pattern(LARGE, 0));
        let t = lp.add(Channel::from(ours), pump).unwrap();
        let (other, other_peer) = connected_pair(family);
        let keep = Counts::new();
        let t2 = lp.add(Channel::from(other), Probe::stream(&keep)).unwrap();
        drive(&mut lp, "send to refuse more", |_| seen.refused.get() > 0);
        // The peer takes a little, then resets with output still coming.
        let got = read_exact(&peer, 16 << 10);
        assert_eq!(first_difference(&got), None);
        reset(peer);
        drive(&mut lp, "the reset channel to close", |lp| !lp.contains(t));
        assert_eq!(
            seen.closed.get(),
            Some(State::Connected(Peer::Gone)),
            "{family:?}: handle_close did not see the peer gone"
        );
        let errors = seen.errors.borrow();
        assert!(errors.is_empty(), "{family:?}: a reset is a disconnect, not an error: {errors:?}");
        // The other channel goes on both ways.
        write_all(&other_peer, b"ping");
        drive(&mut lp, "the other channel's input", |_| keep.data.borrow().as_slice() == b"ping");
        lp.channel_mut(t2).expect("the other channel").send_all(b"pong").unwrap();
        let answer = drive_join(&mut lp, "the other peer's read", {
            let p = other_peer.try_clone().unwrap();
            std::thread::spawn(move || read_exact(&p, 4))
        });
        assert_eq!(answer, b"pong");
        assert_eq!(keep.close.get() + keep.error.get(), 0, "{family:?}: the other channel was disturbed");
    });
}

// ---------------------------------------------------------------------------------------------
// 4. A peer that always has data does not starve another connection

/// Reads and drops everything, one `recv` (the loop's scratch buffer) per read event.
struct Sink(Rc<Cell<usize>>);
impl Dispatcher for Sink {
    fn writable(&self) -> bool {
        false
    }
    fn urgent_data(&self) -> bool {
        false
    }
    fn handle_read(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let n = cx.channel.recv(cx.scratch)?;
        self.0.set(self.0.get() + n);
        Ok(())
    }
}

/// Echoes what it reads with `send`.
struct Echo;
impl Dispatcher for Echo {
    fn writable(&self) -> bool {
        false
    }
    fn urgent_data(&self) -> bool {
        false
    }
    fn handle_read(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let n = cx.channel.recv(cx.scratch)?;
        let data = cx.scratch[..n].to_vec();
        cx.channel.send_all(&data)
    }
}

/// Round trips of the ping-pong connection, and the longest one allowed (generous: the test
/// must pass on a loaded two-core machine; a starved connection waits until the flood ends).
const ROUNDS: usize = 200;
const ANSWER_WITHIN: Duration = Duration::from_secs(3);

fn a_flooding_peer_does_not_starve_a_ping_pong(backend: Backend) {
    each_family(&[Family::V4, Family::Unix], |family| {
        let mut lp = new_loop(backend);
        let (flooded, flooder) = connected_pair(family);
        let taken = Rc::new(Cell::new(0));
        lp.add(Channel::from(flooded), Sink(taken.clone())).unwrap();
        let (pinged, pinger) = connected_pair(family);
        lp.add(Channel::from(pinged), Echo).unwrap();

        let stop = Arc::new(AtomicBool::new(false));
        let flooded_bytes = Arc::new(AtomicUsize::new(0));
        let flood = {
            let (stop, sent) = (stop.clone(), flooded_bytes.clone());
            std::thread::spawn(move || {
                let chunk = vec![7u8; 64 << 10];
                while !stop.load(Ordering::Relaxed) {
                    match (&flooder).write(&chunk) {
                        Ok(n) => sent.fetch_add(n, Ordering::Relaxed),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        // The write timed out while the loop was not reading: keep going.
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        Err(e) => panic!("flood write: {e}"),
                    };
                }
            })
        };
        // The ping-pong starts once the flood is on.
        drive(&mut lp, "the flood to start", |_| taken.get() >= 1 << 20);
        let pings = std::thread::spawn(move || {
            let mut slowest = Duration::ZERO;
            let mut buf = [0u8; 64];
            for round in 0..ROUNDS {
                let msg = [(round % 251) as u8; 64];
                let t0 = Instant::now();
                write_all(&pinger, &msg);
                (&pinger).read_exact(&mut buf).unwrap_or_else(|e| panic!("round {round}: {e}"));
                assert_eq!(buf, msg, "round {round}: a wrong answer");
                slowest = slowest.max(t0.elapsed());
            }
            slowest
        });
        let slowest = drive_join(&mut lp, "the ping-pong rounds", pings);
        stop.store(true, Ordering::Relaxed);
        drive_join(&mut lp, "the flood to stop", flood);
        assert!(
            slowest < ANSWER_WITHIN,
            "{family:?}: a round trip took {slowest:?} while the other connection flooded"
        );
        assert!(taken.get() >= 1 << 20, "{family:?}: the flood never ran ({} bytes)", taken.get());
    });
}

backend_tests!(
    a_large_send_arrives_intact_and_in_order,
    close_when_done_after_a_large_send_delivers_every_byte_then_fin,
    close_after_send_still_sends_what_send_accepted,
    half_close_after_send_sends_everything_first,
    a_peer_reset_mid_send_closes_only_that_channel,
    a_flooding_peer_does_not_starve_a_ping_pong,
);
