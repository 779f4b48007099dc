//! `poll(2)`: asyncore's `use_poll=True` backend.
//!
//! Unlike asyncore, which rebuilt its poll set every pass, the `pollfd` array is kept between
//! waits and edited in place: a change of interest touches one entry. A descriptor with no
//! interest stays in the array with a negative fd, which poll skips (otherwise it would still
//! report hang-ups).
#![allow(unsafe_code)]

use super::{Event, Interest, Poller};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
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

    /// Appends a new entry for `fd` and returns its position.
    fn insert(&mut self, fd: BorrowedFd<'_>, token: u64) -> io::Result<usize> {
        if !crate::sys::is_open(fd) {
            return Err(super::not_open());
        }
        let raw = fd.as_raw_fd();
        let slot = raw as usize; // a BorrowedFd is never negative
        if self.index.len() <= slot {
            self.index.resize(slot + 1, NOT_HERE);
        }
        self.index[slot] = self.fds.len() as u32;
        self.fds.push(libc::pollfd { fd: -1, events: 0, revents: 0 });
        self.owners.push((raw, token));
        Ok(self.fds.len() - 1)
    }
}

impl Poller for Poll {
    fn set_interest(&mut self, fd: BorrowedFd<'_>, token: u64, interest: Interest) -> io::Result<()> {
        let pos = match self.position(fd.as_raw_fd()) {
            Some(pos) => pos,
            None => self.insert(fd, token)?,
        };
        self.owners[pos].1 = token;
        let entry = &mut self.fds[pos];
        entry.events = poll_events(interest);
        entry.fd = if interest.is_empty() { -1 } else { fd.as_raw_fd() };
        entry.revents = 0;
        Ok(())
    }

    fn remove(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let raw = fd.as_raw_fd();
        let Some(pos) = self.position(raw) else { return Ok(()) };
        self.fds.swap_remove(pos);
        self.owners.swap_remove(pos);
        self.index[raw as usize] = NOT_HERE;
        if let Some(&(moved, _)) = self.owners.get(pos) {
            self.index[moved as usize] = pos as u32;
        }
        Ok(())
    }

    fn wait(&mut self, events: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<()> {
        let ms = crate::sys::timeout_ms(timeout);
        // SAFETY: `fds` is a live, initialised slice of pollfd and we pass its exact length;
        // poll writes only the `revents` fields inside it.
        let rc = unsafe { libc::poll(self.fds.as_mut_ptr(), self.fds.len() as libc::nfds_t, ms) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        if rc == 0 {
            return Ok(());
        }
        for (pfd, &(_, token)) in self.fds.iter_mut().zip(&self.owners) {
            let re = std::mem::take(&mut pfd.revents);
            if re == 0 {
                continue;
            }
            events.push(Event::from_poll_bits(token, re));
        }
        Ok(())
    }
}
