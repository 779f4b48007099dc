//! The TLS rule of interest, beside the plain one (`event_loop/interest.rs`) and, like it, a
//! pure function with a table test. The engine's needs come first:
//!
//! | engine | read | write | ready now (no wait) |
//! |---|---|---|---|
//! | handshaking, `Connected(Open)` | the engine waits for the peer (`wants_read`) | TLS bytes queued | no |
//! | handshaking, any other state | as the plain rule | as the plain rule | no |
//! | established | as the plain rule | as the plain rule (queued = TLS records) | plaintext or the peer's `close_notify` already decrypted, and the plain rule reads |
//!
//! During the handshake the application's `readable()`/`writable()` are not asked at all: a
//! handshake never spins on a writable socket with nothing to write (pyftpdlib issue 347) and
//! never sleeps while its own bytes wait. Once established, plaintext rustls already decrypted
//! makes the channel "ready now": the loop delivers a read event without asking the
//! descriptor, which may never become readable again for bytes already read.

use crate::channel::{Peer, State};
use crate::event_loop::interest::{interest, Inputs};
use crate::poller::Interest;

/// The engine's side of the inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Engine {
    pub handshaking: bool,
    /// rustls' `wants_read`: it waits for the peer.
    pub wants_read: bool,
    /// Decrypted plaintext (or an end of stream) is buffered for the application.
    pub buffered: bool,
}

/// What to watch, and whether a read event is due at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TlsInterest {
    pub watch: Interest,
    pub ready: bool,
}

/// The rule in the table above. `app.queued` counts TLS bytes: the channel queues records, not
/// plaintext.
pub(crate) fn tls_interest(app: Inputs, engine: Engine) -> TlsInterest {
    if engine.handshaking {
        let watch = match app.state {
            State::Connected(Peer::Open) => Interest { read: engine.wants_read, write: app.queued },
            _ => interest(app),
        };
        return TlsInterest { watch, ready: false };
    }
    let watch = interest(app);
    TlsInterest { watch, ready: engine.buffered && watch.read }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> impl Iterator<Item = (Inputs, Engine)> {
        State::ALL.into_iter().flat_map(|state| {
            (0..512u16).map(move |bits| {
                let b = |n: u16| bits & (1 << n) != 0;
                (
                    Inputs {
                        state,
                        queued: b(0),
                        over_soft_limit: b(1),
                        paused: b(2),
                        readable: b(3),
                        writable: b(4),
                        holds_output: b(5),
                    },
                    Engine { handshaking: b(6), wants_read: b(7), buffered: b(8) },
                )
            })
        })
    }

    /// The module's table, written out again per row.
    fn expected(app: Inputs, e: Engine) -> (bool, bool, bool) {
        let plain = interest(app);
        match (e.handshaking, app.state) {
            (true, State::Connected(Peer::Open)) => (e.wants_read, app.queued, false),
            (true, _) => (plain.read, plain.write, false),
            (false, _) => (plain.read, plain.write, e.buffered && plain.read),
        }
    }

    #[test]
    fn tls_interest_matches_the_table_for_every_combination() {
        let mut n = 0;
        for (app, e) in all() {
            let got = tls_interest(app, e);
            assert_eq!((got.watch.read, got.watch.write, got.ready), expected(app, e), "{app:?} {e:?}");
            n += 1;
        }
        assert_eq!(n, 10 * 512);
    }

    #[test]
    fn a_handshake_ignores_the_application_and_never_spins() {
        for (app, e) in all().filter(|(a, e)| e.handshaking && a.state == State::Connected(Peer::Open)) {
            let got = tls_interest(app, e);
            // Writable exactly while handshake bytes are queued, whatever writable() says.
            assert_eq!(got.watch.write, app.queued, "{app:?} {e:?}");
            assert_eq!(got.watch.read, e.wants_read, "{app:?} {e:?}");
            assert!(!got.ready);
        }
    }

    #[test]
    fn buffered_plaintext_is_ready_only_when_the_application_would_read() {
        for (app, e) in all().filter(|(_, e)| !e.handshaking) {
            let got = tls_interest(app, e);
            if got.ready {
                assert!(e.buffered && app.readable && !app.paused, "{app:?} {e:?}");
            }
            if e.buffered && interest(app).read {
                assert!(got.ready, "{app:?} {e:?}");
            }
        }
    }
}
