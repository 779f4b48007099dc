//! `select(2)`: asyncore's default backend, kept for portability and for comparison.
//!
//! The interest table is indexed by descriptor, and the three `fd_set`s are rebuilt from it on
//! every wait (select overwrites them). Descriptors at or above `FD_SETSIZE` cannot be put in an
//! `fd_set` without writing out of bounds, so `register` refuses them with a clear error.

use super::{check, deadline, remaining, Event, Interest, Poller};
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

pub(crate) struct Select {
    /// `(token, interest)` per descriptor number; `None` where nothing is registered.
    table: Vec<Option<(u64, Interest)>>,
}

impl Select {
    pub fn new() -> Select {
        Select { table: Vec::new() }
    }

    fn slot(&mut self, fd: RawFd) -> io::Result<&mut Option<(u64, Interest)>> {
        if fd < 0 || fd as usize >= libc::FD_SETSIZE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "descriptor {fd} is outside select()'s range 0..{}; use the poll or epoll backend",
                    libc::FD_SETSIZE
                ),
            ));
        }
        let i = fd as usize;
        if self.table.len() <= i {
            self.table.resize(i + 1, None);
        }
        Ok(&mut self.table[i])
    }
}

/// An empty `fd_set`.
fn empty_set() -> libc::fd_set {
    // SAFETY: fd_set is a plain array of integers, for which all-zero bytes is a valid value;
    // FD_ZERO then puts it in the documented empty state.
    unsafe {
        let mut set: libc::fd_set = std::mem::zeroed();
        libc::FD_ZERO(&mut set);
        set
    }
}

impl Poller for Select {
    fn register(&mut self, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        *self.slot(fd)? = Some((token, interest));
        Ok(())
    }

    fn reregister(&mut self, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        self.register(fd, token, interest)
    }

    fn deregister(&mut self, fd: RawFd) -> io::Result<()> {
        if let Ok(slot) = self.slot(fd) {
            *slot = None;
        }
        while matches!(self.table.last(), Some(None)) {
            self.table.pop();
        }
        Ok(())
    }

    fn wait(&mut self, events: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<()> {
        let until = deadline(timeout);
        loop {
            let (mut r, mut w, mut e) = (empty_set(), empty_set(), empty_set());
            let mut nfds = 0;
            for (fd, slot) in self.table.iter().enumerate() {
                let Some((_, interest)) = slot else { continue };
                let fd = fd as RawFd; // < FD_SETSIZE, checked at register
                                      // SAFETY (all three FD_SETs): 0 <= fd < FD_SETSIZE, so the bit is inside the set.
                if interest.read {
                    unsafe { libc::FD_SET(fd, &mut r) };
                }
                if interest.write {
                    unsafe { libc::FD_SET(fd, &mut w) };
                }
                if !interest.is_empty() {
                    unsafe { libc::FD_SET(fd, &mut e) };
                    nfds = fd + 1;
                }
            }
            let mut tv = remaining(until).map(|d| libc::timeval {
                tv_sec: d.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
                tv_usec: d.subsec_micros() as libc::suseconds_t,
            });
            let tv_ptr = tv.as_mut().map_or(std::ptr::null_mut(), |t| t as *mut libc::timeval);
            // SAFETY: the three sets and the optional timeval are live locals for the whole call,
            // and nfds bounds the descriptors select may look at to those we set.
            let rc = unsafe { libc::select(nfds, &mut r, &mut w, &mut e, tv_ptr) };
            if check(rc)? {
                if until.is_some_and(|d| d <= std::time::Instant::now()) {
                    return Ok(());
                }
                continue;
            }
            if rc == 0 {
                return Ok(());
            }
            for fd in 0..nfds {
                let Some((token, _)) = self.table[fd as usize] else { continue };
                // SAFETY: 0 <= fd < nfds <= FD_SETSIZE, and the sets are initialised.
                let (rd, wr, ex) =
                    unsafe { (libc::FD_ISSET(fd, &r), libc::FD_ISSET(fd, &w), libc::FD_ISSET(fd, &e)) };
                if rd || wr || ex {
                    events.push(Event {
                        token,
                        readable: rd,
                        writable: wr,
                        priority: ex,
                        ..Event::default()
                    });
                }
            }
            return Ok(());
        }
    }
}
