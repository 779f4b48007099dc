//! [`State`]: where a channel is in its life, as one value instead of asyncore's flags.

/// Where a [`Channel`](crate::Channel) is in its life. asyncore kept this as flags on the
/// dispatcher (`accepting`, `connected`, `connecting`, plus what a close had done); one value
/// means no impossible mix can be represented.
///
/// ```
/// use sockloop::channel::{Peer, State};
/// let ch = sockloop::Channel::tcp_listener("127.0.0.1:0".parse().unwrap(), 8)?;
/// assert_eq!(ch.state(), State::Listening);
/// let (a, _b) = std::os::unix::net::UnixStream::pair()?;
/// assert_eq!(sockloop::Channel::from(a).state(), State::Connected(Peer::Open));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Neither listening nor connected: just created or bound, or an unconnected datagram
    /// socket.
    Fresh,
    /// A listening socket (asyncore's `accepting`).
    Listening,
    /// A non-blocking connect is in progress (asyncore's `connecting`).
    Connecting,
    /// Connected (asyncore's `connected`); the peer's side as given.
    Connected(Peer),
    /// `close_when_done` was called: no more reading, and the loop closes the channel once
    /// everything owed is sent (its own buffer and what its dispatcher still holds).
    Draining(Peer),
    /// `close()` was called: the loop drops the channel when the running handler returns.
    Closed,
}

/// The peer's side of a connected channel.
///
/// ```
/// let (a, b) = std::os::unix::net::UnixStream::pair()?;
/// let mut ch = sockloop::Channel::from(a);
/// drop(b);
/// assert_eq!(ch.recv(&mut [0u8; 8])?, 0);
/// assert_eq!(ch.state(), sockloop::channel::State::Connected(sockloop::channel::Peer::Ended));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Peer {
    /// Both directions are open.
    Open,
    /// The peer ended its stream (`recv` gave 0): nothing more to read; output can still be
    /// sent to a half-closed peer.
    Ended,
    /// The connection is gone (reset, broken pipe): nothing can be read or sent.
    Gone,
}

impl State {
    /// Every state, for tables that cover them all.
    ///
    /// ```
    /// assert_eq!(sockloop::channel::State::ALL.len(), 10);
    /// ```
    pub const ALL: [State; 10] = [
        State::Fresh,
        State::Listening,
        State::Connecting,
        State::Connected(Peer::Open),
        State::Connected(Peer::Ended),
        State::Connected(Peer::Gone),
        State::Draining(Peer::Open),
        State::Draining(Peer::Ended),
        State::Draining(Peer::Gone),
        State::Closed,
    ];

    /// The peer's side, for connected and draining channels.
    ///
    /// ```
    /// use sockloop::channel::{Peer, State};
    /// assert_eq!(State::Draining(Peer::Ended).peer(), Some(Peer::Ended));
    /// assert_eq!(State::Listening.peer(), None);
    /// ```
    pub fn peer(self) -> Option<Peer> {
        match self {
            State::Connected(p) | State::Draining(p) => Some(p),
            _ => None,
        }
    }

    /// The state after the peer ended its stream.
    pub(crate) fn peer_ended(self) -> State {
        match self {
            State::Connected(Peer::Open) => State::Connected(Peer::Ended),
            State::Draining(Peer::Open) => State::Draining(Peer::Ended),
            other => other,
        }
    }

    /// The state after a disconnect error. A socket that was not connected yet still owes its
    /// dispatcher a `handle_close` (asyncore: `ENOTCONN` is a disconnect), so it counts as a
    /// connection that is gone.
    pub(crate) fn peer_gone(self) -> State {
        match self {
            State::Closed => State::Closed,
            State::Draining(_) => State::Draining(Peer::Gone),
            _ => State::Connected(Peer::Gone),
        }
    }

    /// The state after `close_when_done`.
    pub(crate) fn draining(self, queued: bool) -> State {
        match self {
            State::Connected(p) | State::Draining(p) => State::Draining(p),
            State::Closed => State::Closed,
            // Nothing was ever connected: only output already queued is owed.
            _ if queued => State::Draining(Peer::Open),
            _ => State::Closed,
        }
    }
}
