//! `select(2)`: asyncore's default backend, kept for portability and for comparison.
//!
//! The interest table is indexed by descriptor, and the three descriptor sets are rebuilt from
//! it on every wait (select overwrites them). asyncore's select could not take descriptors at
//! or above `FD_SETSIZE` (1024), and neither does this one: `set_interest` refuses them with a
//! clear error instead of letting a server fail later.
#![allow(unsafe_code)]

use super::{Event, Interest, Poller};
use rustix::event::{fd_set_insert, fd_set_num_elements, FdSetElement, FdSetIter, Timespec};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

/// asyncore's limit, the size of a C `fd_set`.
const FD_SETSIZE: usize = libc::FD_SETSIZE;

pub(crate) struct Select {
    /// `(token, interest)` per descriptor number; `None` where nothing is known.
    table: Vec<Option<(u64, Interest)>>,
    /// The read, write and exceptional sets, kept to avoid allocating per wait.
    sets: [Vec<FdSetElement>; 3],
    /// What the sets said per descriptor after a wait: bit 0 read, 1 write, 2 exceptional.
    ready: Vec<u8>,
}

impl Select {
    pub fn new() -> Select {
        Select { table: Vec::new(), sets: Default::default(), ready: Vec::new() }
    }

    fn slot(&mut self, fd: RawFd) -> io::Result<&mut Option<(u64, Interest)>> {
        let i = fd as usize; // a BorrowedFd is never negative
        if i >= FD_SETSIZE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("descriptor {fd} is outside select()'s range 0..{FD_SETSIZE}; use the poll or epoll backend"),
            ));
        }
        if self.table.len() <= i {
            self.table.resize(i + 1, None);
        }
        Ok(&mut self.table[i])
    }
}

impl Poller for Select {
    fn set_interest(&mut self, fd: BorrowedFd<'_>, token: u64, interest: Interest) -> io::Result<()> {
        let slot = self.slot(fd.as_raw_fd())?;
        if slot.is_none() && !crate::sys::is_open(fd) {
            return Err(super::not_open());
        }
        *slot = Some((token, interest));
        Ok(())
    }

    fn remove(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        if let Some(slot) = self.table.get_mut(fd.as_raw_fd() as usize) {
            *slot = None;
        }
        while matches!(self.table.last(), Some(None)) {
            self.table.pop();
        }
        Ok(())
    }

    fn wait(&mut self, events: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<()> {
        let nfds = self.table.len() as RawFd; // <= FD_SETSIZE, checked in set_interest
        let words = fd_set_num_elements(self.table.len(), nfds).max(1);
        for set in &mut self.sets {
            set.clear();
            set.resize(words, FdSetElement::default());
        }
        let [r, w, e] = &mut self.sets;
        for (fd, slot) in self.table.iter().enumerate() {
            let Some((_, interest)) = slot else { continue };
            let fd = fd as RawFd;
            if interest.read {
                fd_set_insert(r, fd);
            }
            if interest.write {
                fd_set_insert(w, fd);
            }
            if !interest.is_empty() {
                fd_set_insert(e, fd);
            }
        }
        let ts = timeout.map(|d| Timespec {
            tv_sec: d.as_secs().min(i64::MAX as u64) as _,
            tv_nsec: d.subsec_nanos().into(),
        });
        // SAFETY: every descriptor put in the sets is one the table knows, and the table only
        // holds descriptors that were open when set and are removed before they are closed
        // (the Poller contract); the sets have room for `nfds` descriptors.
        let n = unsafe { rustix::event::select(nfds, Some(r), Some(w), Some(e), ts.as_ref())? };
        if n == 0 {
            return Ok(());
        }
        self.ready.clear();
        self.ready.resize(self.table.len(), 0);
        for (bit, set) in self.sets.iter().enumerate() {
            for fd in FdSetIter::new(set) {
                if let Some(flags) = self.ready.get_mut(fd as usize) {
                    *flags |= 1 << bit;
                }
            }
        }
        for (fd, &flags) in self.ready.iter().enumerate() {
            let Some(Some((token, _))) = self.table.get(fd).filter(|_| flags != 0) else { continue };
            events.push(Event {
                token: *token,
                readable: flags & 1 != 0,
                writable: flags & 2 != 0,
                priority: flags & 4 != 0,
                ..Event::default()
            });
        }
        Ok(())
    }
}
