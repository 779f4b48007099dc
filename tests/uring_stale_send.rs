//! io_uring only (issue 15, phase 3): a send still in flight when its channel closes completes
//! for that channel's output, never for a newcomer that got the same descriptor number. A test
//! binary of its own, with one test, so no other test takes descriptor numbers meanwhile and
//! the newcomer really gets the closed channel's number.

mod support;

use sockloop::{Backend, Channel, Socket};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use support::*;

const SIZE: usize = 2 << 20;

/// A socket with a small send buffer, so a peer that does not read fills it soon.
fn small_buffer(s: UnixStream) -> Socket {
    let s = Socket::from(s);
    s.set_send_buffer_size(32 << 10).unwrap();
    s
}

/// Drives the loop until the channel's `send` refused more and a whole 50 ms pass then accepts
/// nothing: the socket is full and the ring's last send waits in the kernel.
fn fill(lp: &mut sockloop::Loop, who: &str, seen: &Pumped) {
    drive(lp, &format!("{who}'s send to refuse more"), |_| seen.refused.get() > 0);
    let mut held = seen.accepted.get();
    drive(lp, &format!("{who}'s socket to stay full"), |lp| {
        lp.poll(Some(std::time::Duration::from_millis(50))).unwrap();
        let now = seen.accepted.get();
        std::mem::replace(&mut held, now) == now
    });
    assert!(seen.accepted.get() < SIZE, "{who}: everything was accepted with nobody reading");
}

/// Reads everything from `peer` until end of stream, on a thread.
fn reader(peer: UnixStream) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        peer.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut out = Vec::new();
        io::Read::read_to_end(&mut &peer, &mut out)
            .unwrap_or_else(|e| panic!("after {} bytes: {e}", out.len()));
        out
    })
}

#[test]
fn a_stale_send_completion_is_not_delivered_to_a_newcomer_on_the_same_descriptor() {
    if !Backend::all().contains(&Backend::Uring) {
        eprintln!("io_uring is not available here: skipped");
        return;
    }
    let mut lp = new_loop(Backend::Uring);
    // A: its peer does not read, so its last send stays in flight on the ring.
    let (a, a_peer) = UnixStream::pair().unwrap();
    let a_fd = a.as_raw_fd();
    let (pump_a, seen_a) = Pump::new(pattern(SIZE, 0));
    let ta = lp.add(Channel::from(small_buffer(a)), pump_a).unwrap();
    fill(&mut lp, "A", &seen_a);
    lp.channel_mut(ta).expect("A").close();
    drive(&mut lp, "A to leave the map", |lp| !lp.contains(ta));

    // B gets A's descriptor number: pairs are made (and kept) until one end has it.
    let mut kept = Vec::new();
    let (b, b_peer) = loop {
        let (x, y) = UnixStream::pair().unwrap();
        if x.as_raw_fd() == a_fd {
            break (x, y);
        }
        if y.as_raw_fd() == a_fd {
            break (y, x);
        }
        assert!(kept.len() < 256, "descriptor {a_fd} never came back");
        kept.push((x, y));
    };
    drop(kept);
    let (pump_b, seen_b) = Pump::new(pattern(SIZE, 100));
    let tb = lp.add(Channel::from(small_buffer(b)), pump_b).unwrap();
    fill(&mut lp, "B", &seen_b);

    // Now A's peer reads: A's send in flight completes (with A's descriptor number in its
    // user data), and the rest of what A's `send` accepted follows, then the end of stream.
    let got_a = drive_join(&mut lp, "A's peer to read to the end", reader(a_peer));
    assert_eq!(
        got_a.len(),
        seen_a.accepted.get(),
        "A's peer got {} of {} bytes",
        got_a.len(),
        seen_a.accepted.get()
    );
    assert_eq!(got_a, pattern(got_a.len(), 0), "A's output was lost or reordered");
    // B is untouched by A's completions: all of it arrives, in order.
    let r = reader(b_peer);
    drive(&mut lp, "B to be accepted whole", |_| seen_b.accepted.get() == SIZE);
    lp.channel_mut(tb).expect("B").close_when_done();
    let got_b = drive_join(&mut lp, "B's peer to read to the end", r);
    assert_eq!(got_b.len(), SIZE, "B's peer got {} of {SIZE} bytes", got_b.len());
    assert!(got_b == pattern(SIZE, 100), "B's output was lost, doubled or reordered");
}
