//! Where interest is decided: what the selector watches a channel for, and when a draining
//! channel is done. Both are pure functions of the channel's state, its queued output, the
//! loop's own bookkeeping and the dispatcher's answers, so the whole rule is the table below
//! and the tests at the end check it over every combination.
//!
//! | state | read | write |
//! |---|---|---|
//! | `Listening` | `readable()`, unless paused | never |
//! | `Fresh`, `Connected(Open)` | `readable()`, unless paused or over the soft limit | output queued, or `writable()` |
//! | `Connecting` | as `Fresh` | always (the connect's outcome is a write event) |
//! | `Connected(Ended)` | never (the peer sent everything) | output queued |
//! | `Draining(Open or Ended)` | never | output queued, or the dispatcher holds more |
//! | `Connected(Gone)`, `Draining(Gone)`, `Closed` | never | never |

use crate::channel::{Peer, State};
use crate::poller::Interest;

/// Everything interest depends on, gathered at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Inputs {
    pub state: State,
    /// The channel has output queued by `send_all`.
    pub queued: bool,
    /// The queued output is past the channel's soft limit (backpressure: stop reading).
    pub over_soft_limit: bool,
    /// `pause_reading` is in force.
    pub paused: bool,
    /// The dispatcher's `readable()`.
    pub readable: bool,
    /// The dispatcher's `writable()`.
    pub writable: bool,
    /// The dispatcher's `holds_output()` (asynchat's producers).
    pub holds_output: bool,
}

/// What the selector should watch the channel for.
pub(crate) fn interest(i: Inputs) -> Interest {
    let read_open = i.readable && !i.paused && !i.over_soft_limit;
    match i.state {
        State::Listening => Interest { read: i.readable && !i.paused, write: false },
        State::Fresh | State::Connected(Peer::Open) => {
            Interest { read: read_open, write: i.queued || i.writable }
        }
        State::Connecting => Interest { read: read_open, write: true },
        State::Connected(Peer::Ended) => Interest { read: false, write: i.queued },
        State::Draining(Peer::Open | Peer::Ended) => {
            Interest { read: false, write: i.queued || i.holds_output }
        }
        State::Connected(Peer::Gone) | State::Draining(Peer::Gone) | State::Closed => Interest::NONE,
    }
}

/// Whether a draining channel has nothing left to send (or nobody to send it to) and should be
/// closed now.
pub(crate) fn drained(i: Inputs) -> bool {
    match i.state {
        State::Draining(Peer::Gone) => true,
        State::Draining(_) => !i.queued && !i.holds_output,
        _ => false,
    }
}

/// Whether a write-ready channel's `handle_write` should run: `writable()` said so, or, while
/// draining, the dispatcher still holds output to move into the channel.
pub(crate) fn calls_handle_write(state: State, writable: bool, holds_output: bool) -> bool {
    match state {
        State::Draining(_) => holds_output,
        State::Closed | State::Listening => false,
        _ => writable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every combination of the inputs: 10 states x 2^6 flags.
    fn all_inputs() -> impl Iterator<Item = Inputs> {
        State::ALL.into_iter().flat_map(|state| {
            (0..64u8).map(move |bits| Inputs {
                state,
                queued: bits & 1 != 0,
                over_soft_limit: bits & 2 != 0,
                paused: bits & 4 != 0,
                readable: bits & 8 != 0,
                writable: bits & 16 != 0,
                holds_output: bits & 32 != 0,
            })
        })
    }

    /// The table in the module documentation, written out a second way: per state, the
    /// expected answers as a function of the inputs.
    fn expected(i: Inputs) -> (bool, bool) {
        let Inputs { state, queued, over_soft_limit, paused, readable, writable, holds_output } = i;
        match state {
            State::Closed => (false, false),
            State::Listening => (readable && !paused, false),
            State::Fresh => (readable && !paused && !over_soft_limit, queued || writable),
            State::Connecting => (readable && !paused && !over_soft_limit, true),
            State::Connected(Peer::Open) => (readable && !paused && !over_soft_limit, writable || queued),
            State::Connected(Peer::Ended) => (false, queued),
            State::Connected(Peer::Gone) => (false, false),
            State::Draining(Peer::Gone) => (false, false),
            State::Draining(_) => (false, queued || holds_output),
        }
    }

    #[test]
    fn interest_matches_the_table_for_every_combination() {
        let mut n = 0;
        for i in all_inputs() {
            let got = interest(i);
            assert_eq!((got.read, got.write), expected(i), "{i:?}");
            n += 1;
        }
        assert_eq!(n, 640);
    }

    #[test]
    fn nothing_is_watched_once_closed_or_gone() {
        for i in
            all_inputs().filter(|i| matches!(i.state, State::Closed) || i.state.peer() == Some(Peer::Gone))
        {
            assert!(interest(i).is_empty(), "{i:?}");
        }
    }

    #[test]
    fn a_draining_channel_closes_only_when_nothing_is_owed_or_the_peer_is_gone() {
        for i in all_inputs() {
            let want = match i.state {
                State::Draining(Peer::Gone) => true,
                State::Draining(_) => !i.queued && !i.holds_output,
                _ => false,
            };
            assert_eq!(drained(i), want, "{i:?}");
            // Never closed while output is owed to a peer that can still take it.
            if i.state.peer() != Some(Peer::Gone) && (i.queued || i.holds_output) {
                assert!(!drained(i), "{i:?}");
            }
        }
    }

    #[test]
    fn reading_stops_for_backpressure_pause_and_draining() {
        for i in all_inputs() {
            if i.paused || matches!(i.state, State::Draining(_)) {
                assert!(!interest(i).read, "{i:?}");
            }
            if i.over_soft_limit && i.state != State::Listening {
                assert!(!interest(i).read, "{i:?}");
            }
        }
    }

    #[test]
    fn handle_write_runs_for_writable_or_for_held_output_while_draining() {
        for state in State::ALL {
            for (writable, holds) in [(false, false), (true, false), (false, true), (true, true)] {
                let want = match state {
                    State::Draining(_) => holds,
                    State::Closed | State::Listening => false,
                    _ => writable,
                };
                assert_eq!(calls_handle_write(state, writable, holds), want, "{state:?} {writable} {holds}");
            }
        }
    }
}
