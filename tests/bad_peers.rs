//! Issue 2, "Bad input": a peer that resets mid-write, half-closes, or connects and vanishes; a
//! connect to a closed port (connect.rs: `connect_refused`); a handler that returns `Err` or
//! panics. Each reaches the seed's handler, every other channel keeps being served, nothing
//! spins, nothing panics out of the loop (unless asked to with `set_catch_panics(false)`).

mod support;

use sockloop::{Backend, Channel, Context, Dispatcher, HandlerPanic, Loop};
use std::io;
use std::rc::Rc;
use support::*;

/// A peer thread that echoes one message through the server at `ep` and returns what came back.
fn echo_once(lp: &mut Loop, ep: &Endpoint, msg: &'static [u8]) -> Vec<u8> {
    let ep = ep.detached();
    let h = std::thread::spawn(move || {
        let s = peer_connect(&ep);
        write_all(&s, msg);
        read_exact(&s, msg.len())
    });
    drive_join(lp, "an echo round trip", h)
}

/// Writes without end while the peer takes it.
struct Firehose(Rc<Counts>);

impl Dispatcher for Firehose {
    fn readable(&self) -> bool {
        false
    }
    fn handle_write(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        self.0.write.set(self.0.write.get() + 1);
        let chunk = [b'f'; 32 * 1024];
        while cx.channel.send(&chunk)? > 0 {}
        Ok(())
    }
    fn handle_close(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        self.0.close.set(self.0.close.get() + 1);
        cx.channel.close();
        Ok(())
    }
    fn handle_error(&mut self, err: io::Error, cx: &mut Context<'_>) {
        self.0.error.set(self.0.error.get() + 1);
        self.0.errors.borrow_mut().push(err);
        cx.channel.close();
    }
}

// A peer that resets while we are writing to it: handle_close, no handle_error; an echo client
// on the same loop is served before and after; nothing spins afterwards.
fn peer_resets_mid_write(backend: Backend) {
    each_family(&Family::INET, |family| {
        let mut lp = new_loop(backend);
        let (ep, stats) = echo_server(&mut lp, family);
        let (ours, peer) = connected_pair(family);
        let c = Counts::new();
        let t = lp.add(Channel::from(ours), Firehose(c.clone())).unwrap();
        assert_eq!(echo_once(&mut lp, &ep, b"before"), b"before");
        let h = std::thread::spawn(move || {
            let got = read_exact(&peer, 200_000);
            reset(peer);
            got
        });
        let got = drive_join(&mut lp, "the peer to read and reset", h);
        assert!(got.iter().all(|&b| b == b'f'));
        drive(&mut lp, "the firehose to end", |lp| !lp.contains(t));
        assert_eq!(c.close.get(), 1);
        assert_eq!(c.error.get(), 0, "{:?}", c.errors.borrow());
        assert_eq!(echo_once(&mut lp, &ep, b"after"), b"after");
        drive(&mut lp, "the echo channels to close", |lp| lp.len() == 1);
        assert!(stats.errors.borrow().is_empty());
        assert_quiet(&mut lp);
    });
}

// A peer that sends, then half-closes (shutdown(SHUT_WR)): the echo sends back everything it
// owes, then closes. 2 MiB, more than the socket buffers hold, so the tail is queued output.
fn half_close_gets_everything_back(backend: Backend) {
    each_family(&Family::ALL, |family| {
        let mut lp = new_loop(backend);
        let (ep, stats) = echo_server(&mut lp, family);
        let data = Rng(77).bytes(2 << 20);
        let ep2 = ep.detached();
        let sent = data.clone();
        let h = std::thread::spawn(move || {
            let s = peer_connect(&ep2);
            let w = s.try_clone().unwrap();
            let writer = std::thread::spawn(move || {
                write_all(&w, &sent);
                w.shutdown(std::net::Shutdown::Write).unwrap();
            });
            let back = read_to_end(&s);
            writer.join().unwrap();
            back
        });
        let back = drive_join(&mut lp, "the echo of a half-closed peer", h);
        assert_eq!(back.len(), data.len());
        assert!(back == data, "every byte echoed in order");
        drive(&mut lp, "the echo channel to close", |lp| lp.len() == 1);
        assert_eq!(stats.closed.get(), 1);
        assert!(stats.errors.borrow().is_empty());
        assert_quiet(&mut lp);
    });
}

// Peers that connect and vanish (close without a byte, or reset for TCP): each accepted channel
// gets handle_close, the listener stays, nothing spins.
fn connect_and_vanish(backend: Backend) {
    each_family(&Family::ALL, |family| {
        let mut lp = new_loop(backend);
        let (ep, stats) = echo_server(&mut lp, family);
        for i in 0..10 {
            let s = peer_connect(&ep);
            if family.is_inet() && i % 2 == 1 {
                reset(s);
            } else {
                drop(s);
            }
        }
        drive(&mut lp, "ten accepts and closes", |lp| stats.accepted.get() == 10 && lp.len() == 1);
        assert!(stats.errors.borrow().is_empty(), "{:?}", stats.errors.borrow());
        assert_eq!(echo_once(&mut lp, &ep, b"next"), b"next");
        drive(&mut lp, "the last close", |lp| lp.len() == 1);
        assert_quiet(&mut lp);
    });
}

// A handler that returns Err or panics reaches handle_error (which closes that channel), and the
// other channels keep being served.
fn failing_handler_others_keep_being_served(backend: Backend) {
    each_family(&Family::ALL, |family| {
        for trigger in [&b"boom"[..], &b"panic"[..]] {
            let mut lp = new_loop(backend);
            let (ep, stats) = echo_server(&mut lp, family);
            let ep2 = ep.detached();
            let trig = trigger.to_vec();
            let h = std::thread::spawn(move || {
                let good = peer_connect(&ep2);
                let bad = peer_connect(&ep2);
                write_all(&good, b"one");
                assert_eq!(read_exact(&good, 3), b"one");
                write_all(&bad, &trig);
                let rest = read_to_end(&bad); // closed by handle_error
                write_all(&good, b"two");
                assert_eq!(read_exact(&good, 3), b"two");
                rest
            });
            let rest = drive_join(&mut lp, "the good client to be served around the bad one", h);
            assert!(rest.is_empty(), "nothing echoed to the failing channel");
            let errors = stats.errors.borrow();
            assert_eq!(errors.len(), 1, "{errors:?}");
            if trigger == b"panic" {
                assert!(HandlerPanic::is(&errors[0]), "{:?}", errors[0]);
            } else {
                assert!(!HandlerPanic::is(&errors[0]));
                assert_eq!(errors[0].to_string(), "echo failed on purpose");
            }
            drop(errors);
            drive(&mut lp, "the clients' channels to close", |lp| lp.len() == 1);
            assert_quiet(&mut lp);
        }
    });
}

// set_catch_panics(false): a handler's panic propagates out of the loop to the caller. The
// panicking channel is gone from the map afterwards and the loop still works.
fn catch_panics_false_propagates(backend: Backend) {
    each_family(&Family::ALL, |family| {
        let mut lp = new_loop(backend);
        lp.set_catch_panics(false);
        let (ep, _stats) = echo_server(&mut lp, family);
        let (ours, peer) = connected_pair(family);
        let c = Counts::new();
        let t = lp.add(Channel::from(ours), Probe::failing(&c, Fail::PanicRead)).unwrap();
        write_all(&peer, b"x");
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            drive(&mut lp, "the panic", |_| false);
        }));
        let payload = res.expect_err("the panic propagates");
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        assert_eq!(msg, "handle_read panicked on purpose");
        assert_eq!(c.read.get(), 1);
        assert_eq!(c.error.get(), 0, "not caught: handle_error never ran");
        assert!(!lp.contains(t), "the panicking channel is gone from the map");
        assert!(read_to_end(&peer).is_empty(), "and its socket is closed");
        // The loop goes on serving the rest.
        assert_eq!(echo_once(&mut lp, &ep, b"alive"), b"alive");
        drive(&mut lp, "the echo channel to close", |lp| lp.len() == 1);
        assert_quiet(&mut lp);
    });
}

backend_tests!(
    peer_resets_mid_write,
    half_close_gets_everything_back,
    connect_and_vanish,
    failing_handler_others_keep_being_served,
    catch_panics_false_propagates
);
