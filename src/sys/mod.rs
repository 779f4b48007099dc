//! The system-call layer: the few calls that neither the standard library nor socket2 wrap.
//!
//! Everything here goes through `rustix` where it covers the call (fcntl, eventfd, pipe, read,
//! write), so the `unsafe` left in the crate is where no safe wrapper exists: reading SIGPIPE's
//! disposition (`sigaction`), handing socket2 an initialised buffer as `MaybeUninit`, and, in
//! the poller backends, `select(2)` and `poll(2)` over raw descriptor tables.
#![allow(unsafe_code)]

mod wake_fd;

pub(crate) use wake_fd::WakeFd;

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

/// Sets or clears `O_NONBLOCK` on any descriptor (pipes and ttys for `file_dispatcher`).
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    use rustix::fs::OFlags;
    let flags = rustix::fs::fcntl_getfl(fd)?;
    let new = if on { flags | OFlags::NONBLOCK } else { flags - OFlags::NONBLOCK };
    if new != flags {
        rustix::fs::fcntl_setfl(fd, new)?;
    }
    Ok(())
}

/// Makes SIGPIPE ignored if it is at its default action (which kills the process). Sockets use
/// `MSG_NOSIGNAL`, but `write(2)` on a pipe whose reader left has no such flag, so the first
/// file channel sets this once. A handler the application installed is left alone.
pub(crate) fn ignore_default_sigpipe() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: the first sigaction has a null new action, so it only writes the current
        // disposition into `old`, a zeroed (valid) sigaction owned by this frame; `signal`
        // then installs SIG_IGN, which runs no code in signal context.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction == libc::SIG_DFL
            {
                libc::signal(libc::SIGPIPE, libc::SIG_IGN);
            }
        }
    });
}

/// Views an initialised byte buffer as the `MaybeUninit` slice socket2's receive calls take.
pub(crate) fn as_uninit(buf: &mut [u8]) -> &mut [MaybeUninit<u8>] {
    // SAFETY: MaybeUninit<u8> has the layout of u8, every initialised u8 is a valid
    // MaybeUninit<u8>, and the receive calls only ever write initialised bytes into it, so the
    // caller's slice stays initialised.
    unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) }
}

/// Whether `fd` names an open descriptor (`F_GETFD` succeeds).
pub(crate) fn is_open(fd: BorrowedFd<'_>) -> bool {
    rustix::io::fcntl_getfd(fd).is_ok()
}

/// Milliseconds for `poll`/`epoll_wait`, rounded up so a short timer never turns into a busy
/// loop; `-1` waits forever.
pub(crate) fn timeout_ms(timeout: Option<Duration>) -> i32 {
    match timeout {
        None => -1,
        Some(d) => d.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32,
    }
}

/// The deadline of a wait, for retrying it after `EINTR` with the time that is left.
#[derive(Clone, Copy)]
pub(crate) struct Deadline(Option<Instant>);

impl Deadline {
    pub fn after(timeout: Option<Duration>) -> Deadline {
        Deadline(timeout.and_then(|d| Instant::now().checked_add(d)))
    }

    /// The time left (`None`: no limit).
    pub fn remaining(self) -> Option<Duration> {
        self.0.map(|d| d.saturating_duration_since(Instant::now()))
    }

    pub fn passed(self) -> bool {
        self.0.is_some_and(|d| d <= Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_round_up_to_the_next_millisecond() {
        assert_eq!(timeout_ms(Some(Duration::from_micros(1))), 1);
        assert_eq!(timeout_ms(Some(Duration::from_micros(1500))), 2);
        assert_eq!(timeout_ms(Some(Duration::ZERO)), 0);
        assert_eq!(timeout_ms(Some(Duration::from_secs(u64::MAX))), i32::MAX);
        assert_eq!(timeout_ms(None), -1);
    }

    #[test]
    fn nonblocking_flag_round_trips() {
        use std::os::fd::AsFd;
        let (r, _w) = std::io::pipe().unwrap();
        set_nonblocking(r.as_fd(), true).unwrap();
        let flags = rustix::fs::fcntl_getfl(&r).unwrap();
        assert!(flags.contains(rustix::fs::OFlags::NONBLOCK));
        set_nonblocking(r.as_fd(), false).unwrap();
        assert!(!rustix::fs::fcntl_getfl(&r).unwrap().contains(rustix::fs::OFlags::NONBLOCK));
        assert!(is_open(r.as_fd()));
    }
}
