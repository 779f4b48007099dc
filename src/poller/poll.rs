//! `poll(2)`: asyncore's `use_poll=True` backend.
//!
//! Unlike asyncore, which rebuilt its poll set every pass, the `pollfd` array is kept between
//! waits and edited in place: `reregister` touches one entry. A descriptor with no interest stays
//! in the array with a negative fd, which poll skips (otherwise it would still report hang-ups).

use super::{check, deadline, remaining, timeout_ms, Event, Interest, Poller};
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

const NOT_HERE: u32 = u32::MAX;

pub(crate) struct Poll {
    fds: Vec<libc::pollfd>,
    /// Descriptor and token of each `fds` entry (the fd is kept here too, since `fds` may hold
    /// its negated form).
    owners: Vec<(RawFd, u64)>,
    /// Position in `fds` per descriptor number.
    index: Vec<u32>,
}

fn poll_events(interest: Interest) -> libc::c_short {
    let mut ev = 0;
    if interest.read {
        ev |= libc::POLLIN | libc::POLLPRI;
    }
    if interest.write {
        ev |= libc::POLLOUT;
    }
    ev
}

impl Poll {
    pub fn new() -> Poll {
        Poll { fds: Vec::new(), owners: Vec::new(), index: Vec::new() }
    }

    fn position(&self, fd: RawFd) -> Option<usize> {
        let i = *self.index.get(usize::try_from(fd).ok()?)?;
        (i != NOT_HERE).then_some(i as usize)
    }

    fn set(&mut self, pos: usize, fd: RawFd, interest: Interest) {
        let entry = &mut self.fds[pos];
        entry.events = poll_events(interest);
        entry.fd = if interest.is_empty() { -1 } else { fd };
        entry.revents = 0;
    }
}

impl Poller for Poll {
    fn register(&mut self, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        let slot = usize::try_from(fd)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "negative descriptor"))?;
        if self.index.len() <= slot {
            self.index.resize(slot + 1, NOT_HERE);
        }
        if self.index[slot] != NOT_HERE {
            return self.reregister(fd, token, interest);
        }
        self.index[slot] = self.fds.len() as u32;
        self.fds.push(libc::pollfd { fd, events: 0, revents: 0 });
        self.owners.push((fd, token));
        self.set(self.fds.len() - 1, fd, interest);
        Ok(())
    }

    fn reregister(&mut self, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        let pos = self.position(fd).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        self.owners[pos].1 = token;
        self.set(pos, fd, interest);
        Ok(())
    }

    fn deregister(&mut self, fd: RawFd) -> io::Result<()> {
        let Some(pos) = self.position(fd) else { return Ok(()) };
        self.fds.swap_remove(pos);
        self.owners.swap_remove(pos);
        self.index[fd as usize] = NOT_HERE;
        if let Some(&(moved, _)) = self.owners.get(pos) {
            self.index[moved as usize] = pos as u32;
        }
        Ok(())
    }

    fn wait(&mut self, events: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<()> {
        let until = deadline(timeout);
        let n = loop {
            let ms = timeout_ms(remaining(until));
            // SAFETY: `fds` is a live, initialised slice of pollfd and we pass its exact length.
            let rc = unsafe { libc::poll(self.fds.as_mut_ptr(), self.fds.len() as libc::nfds_t, ms) };
            if !check(rc)? {
                break rc as usize;
            }
            if until.is_some_and(|d| d <= std::time::Instant::now()) {
                return Ok(());
            }
        };
        if n == 0 {
            return Ok(());
        }
        for (pfd, &(_, token)) in self.fds.iter_mut().zip(&self.owners) {
            let re = std::mem::take(&mut pfd.revents);
            if re == 0 {
                continue;
            }
            events.push(Event {
                token,
                readable: re & libc::POLLIN != 0,
                writable: re & libc::POLLOUT != 0,
                priority: re & libc::POLLPRI != 0,
                hangup: re & libc::POLLHUP != 0,
                error: re & libc::POLLERR != 0,
                invalid: re & libc::POLLNVAL != 0,
            });
        }
        Ok(())
    }
}
