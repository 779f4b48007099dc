//! The channel's side of io_uring stream mode (issue 15; the poller's side is
//! `poller/uring.rs`): input the ring already received, which `recv` hands out without a
//! syscall, and output `send` accepted, which the loop hands to the ring when the handler
//! returns.
//!
//! What lasts for the life of the channel is a word of bits and the count of bytes the ring
//! owes, in the channel itself (they fit its padding); the input and the staged output are
//! boxes that exist only while they hold something, so an idle channel in stream mode costs
//! nothing more than one that is not.

use super::{Channel, Io, Peer, State, STREAM_SEND_CAP};
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};

/// The ring receives and sends for this channel.
pub(super) const STREAM: u8 = 1;
/// The ring no longer does (the channel started TLS): once the held input is handed out,
/// input is read from the socket again.
pub(super) const LEFT: u8 = 1 << 1;
/// `shutdown(Write)` was asked while output was owed, so the ring half-closes after it.
pub(super) const SHUT: u8 = 1 << 2;
/// ... and that half-close was handed to the ring.
pub(super) const SHUT_HANDED: u8 = 1 << 3;

/// What the ring received for the channel and `recv` has not handed out yet.
#[derive(Default)]
pub(crate) struct RingIn {
    pub bytes: Vec<u8>,
    pub pos: usize,
    pub end: bool,
    pub error: Option<i32>,
}

impl RingIn {
    /// Hands out what is held: bytes, else the error, else the end (`Ok(0)`). `None` when
    /// nothing is held.
    pub(super) fn take(&mut self, buf: &mut [u8]) -> Option<io::Result<usize>> {
        if self.pos < self.bytes.len() {
            let n = (self.bytes.len() - self.pos).min(buf.len());
            buf[..n].copy_from_slice(&self.bytes[self.pos..self.pos + n]);
            self.pos += n;
            return Some(Ok(n));
        }
        if let Some(errno) = self.error.take() {
            return Some(Err(io::Error::from_raw_os_error(errno)));
        }
        if self.end {
            return Some(Ok(0));
        }
        None
    }

    /// Whether it still holds anything to hand out.
    fn holds(&self) -> bool {
        self.pos < self.bytes.len() || self.end || self.error.is_some()
    }
}

/// Output `send` accepted (bounded with what the ring still owes by [`STREAM_SEND_CAP`],
/// past which it would block as a full socket does), not yet handed to the ring, or a send's
/// error.
#[derive(Default)]
pub(crate) struct RingOut {
    /// Accepted, not yet handed to the ring.
    pub staged: Vec<u8>,
    /// A send on the ring failed with this errno: later sends fail with it, as the socket's
    /// would after such an error.
    pub error: Option<i32>,
}

impl RingOut {
    /// Accepts what fits of `data` beside the `owed` bytes the ring still has to send, as a
    /// non-blocking socket's send would; `shut`: a half-close was asked.
    pub(super) fn accept(&mut self, data: &[u8], owed: usize, shut: bool) -> io::Result<usize> {
        if let Some(errno) = self.error {
            return Err(io::Error::from_raw_os_error(errno));
        }
        if shut {
            return Err(io::Error::from_raw_os_error(libc::EPIPE)); // as after shutdown(Write)
        }
        let room = STREAM_SEND_CAP.saturating_sub(self.staged.len() + owed);
        if room == 0 && !data.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = room.min(data.len());
        self.staged.extend_from_slice(&data[..n]);
        Ok(n)
    }
}

impl Channel {
    fn ring_is(&self, bits: u8) -> bool {
        self.ring_bits.get() & bits == bits
    }

    fn ring_mark(&self, bits: u8) {
        self.ring_bits.set(self.ring_bits.get() | bits);
    }

    /// Whether the loop may let the ring receive for this channel: a connected, plain (not
    /// TLS) stream socket, and for TCP only when its dispatcher needs no urgent data
    /// (`urgent`: [`Dispatcher::urgent_data`](crate::Dispatcher::urgent_data)), since a receive
    /// on the ring reads past the urgent mark. Unix streams have no urgent data.
    pub(crate) fn ring_eligible(&self, urgent: bool) -> bool {
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            return false;
        }
        let Io::Socket(s) = &self.io else { return false };
        matches!(self.state, State::Connected(Peer::Open))
            && s.r#type().is_ok_and(|t| t == socket2::Type::STREAM)
            && (!urgent || s.local_addr().is_ok_and(|a| a.family() == libc::AF_UNIX as libc::sa_family_t))
    }

    /// Puts the channel in io_uring stream mode.
    pub(crate) fn set_ring_mode(&mut self) {
        self.ring_mark(STREAM);
    }

    /// Whether the channel is, or was, in stream mode.
    pub(crate) fn ring_mode(&self) -> bool {
        self.ring_is(STREAM)
    }

    /// Whether the ring receives and sends for this channel: stream mode, not left (both
    /// directions leave together, at STARTTLS).
    pub(crate) fn ring_sends(&self) -> bool {
        self.ring_bits.get() & (STREAM | LEFT) == STREAM
    }

    /// A TLS engine was attached while the ring receives for this channel: the loop must take
    /// it out of stream mode (`ring_leave`) before the engine reads the socket.
    pub(crate) fn ring_leave_due(&self) -> bool {
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            return self.ring_sends();
        }
        false
    }

    /// The ring stopped receiving for this channel: `bytes` (what it received and had not
    /// handed over, after what the channel holds), then the end or error, then the socket.
    pub(crate) fn ring_leave(&mut self, bytes: Vec<u8>, end: bool, error: Option<i32>) {
        self.ring_mark(LEFT);
        if bytes.is_empty() && !end && error.is_none() {
            return;
        }
        let r = self.ring_in.get_or_insert_with(Box::default);
        r.bytes.extend_from_slice(&bytes);
        r.end |= end;
        r.error = r.error.or(error);
    }

    /// Lets `fetch` (the selector's `move_received`) append what the ring received to the
    /// channel's input and say whether the stream ended or failed behind it. The input's box
    /// exists only while it holds something: it is made only when something arrived.
    pub(crate) fn ring_receive(&mut self, fetch: impl FnOnce(RawFd, &mut Vec<u8>) -> (bool, Option<i32>)) {
        if !self.ring_sends() {
            return;
        }
        let fd = self.as_fd().as_raw_fd();
        let mut fresh = Vec::new(); // no allocation unless the poller fills it
        let into = match self.ring_in.as_deref_mut() {
            Some(r) => &mut r.bytes,
            None => &mut fresh,
        };
        let (end, error) = fetch(fd, into);
        let r = match self.ring_in.as_deref_mut() {
            Some(r) => r,
            None if fresh.is_empty() && !end && error.is_none() => return,
            None => self.ring_in.insert(Box::new(RingIn { bytes: fresh, ..RingIn::default() })),
        };
        r.end |= end;
        r.error = r.error.or(error);
    }

    /// Frees the input's box once everything in it was handed out.
    pub(super) fn ring_tidy(&mut self) {
        if self.ring_in.as_ref().is_some_and(|r| !r.holds()) {
            self.ring_in = None;
        }
    }

    /// What `recv` hands out from the ring's input: `None` when the socket is to be read
    /// instead (not in stream mode, or left it and the held input is all out).
    pub(super) fn ring_take(&mut self, buf: &mut [u8]) -> Option<io::Result<usize>> {
        if !self.ring_mode() {
            return None;
        }
        let taken = self.ring_in.as_deref_mut().and_then(|r| r.take(buf));
        self.ring_tidy();
        match taken {
            Some(res) => Some(res),
            None if self.ring_is(LEFT) => None,
            None => Some(Err(io::ErrorKind::WouldBlock.into())),
        }
    }

    /// Hands what the channel staged (and a half-close asked) to the ring through `stage`
    /// (the selector's `stage_send`: fd, staged bytes, half-close; it returns what the ring
    /// still owes and a send's error), and keeps its answer. Asks nothing when nothing is
    /// staged, owed or asked. The staging box goes once it is empty, so a channel that is not
    /// sending holds none.
    pub(crate) fn ring_hand_over(
        &mut self,
        stage: impl FnOnce(RawFd, &mut Vec<u8>, bool) -> (usize, Option<i32>),
    ) {
        if !self.ring_sends() {
            return;
        }
        let shut = self.ring_is(SHUT) && !self.ring_is(SHUT_HANDED);
        if self.ring_out.is_none() && self.ring_owed == 0 && !shut {
            return;
        }
        if shut {
            self.ring_mark(SHUT_HANDED);
        }
        let fd = self.as_fd().as_raw_fd();
        let mut none = Vec::new();
        let staged = self.ring_out.as_deref_mut().map_or(&mut none, |o| &mut o.staged);
        let (owed, error) = stage(fd, staged, shut);
        self.ring_owed = u32::try_from(owed).unwrap_or(u32::MAX);
        match self.ring_out.as_deref_mut() {
            Some(out) => {
                out.error = out.error.or(error);
                if out.staged.is_empty() && out.error.is_none() {
                    self.ring_out = None;
                }
            }
            None if error.is_some() => self.ring_out = Some(Box::new(RingOut { staged: Vec::new(), error })),
            None => {}
        }
    }

    /// The ring sent everything and the channel writes the socket itself from now on.
    pub(crate) fn ring_out_release(&mut self) {
        self.ring_out = None;
        self.ring_owed = 0;
    }

    /// Output accepted for the ring and not yet sent.
    pub(super) fn ring_pending(&self) -> usize {
        match self.ring_sends() {
            true => self.ring_owed as usize + self.ring_out.as_deref().map_or(0, |o| o.staged.len()),
            false => 0,
        }
    }

    /// What [`RingOut::accept`] needs: owed bytes and a half-close asked.
    pub(super) fn ring_owed(&self) -> (usize, bool) {
        (self.ring_owed as usize, self.ring_is(SHUT))
    }

    /// The ring still owes output: `shutdown(Write)` is asked of the ring, to follow it. Says
    /// whether it was (else the socket is shut down at once).
    pub(super) fn ring_shutdown_after_output(&self) -> bool {
        if self.ring_sends() && self.ring_pending() > 0 {
            self.ring_mark(SHUT);
            return true;
        }
        false
    }

    /// The errno a send on the ring failed with, while the ring sends for the channel.
    pub(super) fn ring_error(&self) -> Option<i32> {
        self.ring_out.as_deref().filter(|_| self.ring_sends()).and_then(|r| r.error)
    }

    /// One write of `data`: accepted for the ring in stream mode, else on the descriptor.
    pub(super) fn write_out(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.ring_sends() {
            let (owed, shut) = self.ring_owed();
            return self.ring_out.get_or_insert_with(Box::default).accept(data, owed, shut);
        }
        self.io.write(data)
    }

    /// How many received bytes the channel holds from the ring, not yet handed out.
    pub(crate) fn ring_held(&self) -> usize {
        self.ring_in.as_ref().map_or(0, |r| r.bytes.len() - r.pos)
    }

    /// Received bytes are waiting to be handed out (a read is due without a wait).
    pub(crate) fn ring_has_input(&self) -> bool {
        self.ring_in.as_ref().is_some_and(|r| r.holds())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Channel;
    use std::io;

    #[test]
    fn input_and_output_boxes_exist_only_while_they_hold_bytes() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut ch = Channel::from(a);
        ch.set_ring_mode();
        let mut buf = [0u8; 8];
        let would_block = ch.recv(&mut buf).unwrap_err();
        assert_eq!(would_block.kind(), io::ErrorKind::WouldBlock, "nothing received: the socket is not read");
        ch.ring_receive(|_, into| {
            into.extend_from_slice(b"abc");
            (false, None)
        });
        assert_eq!(ch.ring_held(), 3);
        assert_eq!(ch.recv(&mut buf).unwrap(), 3);
        assert!(ch.ring_in.is_none(), "handed out: the input's box went");
        ch.ring_receive(|_, _| (false, None));
        assert!(ch.ring_in.is_none(), "nothing received: no box");
        assert_eq!(ch.send(b"xyz").unwrap(), 3);
        assert!(ch.ring_out.is_some());
        ch.ring_hand_over(|_, staged, shut| {
            assert_eq!((staged.as_slice(), shut), (&b"xyz"[..], false));
            staged.clear();
            (3, None)
        });
        assert!(ch.ring_out.is_none(), "handed over: the staging box went");
        assert_eq!(ch.pending_output(), 3, "what the ring owes still counts");
    }
    #[test]
    fn stream_mode_adds_nothing_to_an_idle_channel() {
        // The lasting part (bits and owed count) sits in the channel's padding: a channel in
        // stream mode is no larger than it was before stream mode existed (128 bytes here).
        let size = std::mem::size_of::<super::Channel>();
        assert!(size <= 128, "Channel is {size} B");
    }
}
