//! `epoll(7)`, level-triggered, interest kept in the kernel.
//!
//! `epoll_ctl` runs only when a channel's interest changes. A descriptor with no interest is
//! removed from the kernel set (`EPOLL_CTL_DEL`), because epoll reports hang-ups and errors even
//! for an empty event mask and a level-triggered hang-up would wake every wait.
//!
//! epoll refuses regular files and some character devices with `EPERM`; asyncore's
//! `file_dispatcher` works over such files, so they are kept on a side list and reported ready
//! for whatever they are interested in on every wait (which is what select and poll say of them).
#![cfg(any(target_os = "linux", target_os = "android"))]

use super::{check, deadline, remaining, timeout_ms, Event, Interest, Poller};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Where a registered descriptor lives.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    Absent,
    /// Known, empty interest, not in the kernel set.
    Idle(u64),
    Kernel,
    /// A regular file (epoll said EPERM): always ready.
    AlwaysReady,
}

pub(crate) struct Epoll {
    epfd: OwnedFd,
    buf: Vec<libc::epoll_event>,
    places: Vec<Place>,
    always_ready: Vec<(RawFd, u64, Interest)>,
}

fn epoll_bits(interest: Interest) -> u32 {
    let mut ev = 0;
    if interest.read {
        ev |= (libc::EPOLLIN | libc::EPOLLPRI) as u32;
    }
    if interest.write {
        ev |= libc::EPOLLOUT as u32;
    }
    ev
}

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes no pointers; a non-negative result is a new descriptor
        // that nothing else owns, so OwnedFd may take it.
        let epfd = unsafe {
            let fd = libc::epoll_create1(libc::EPOLL_CLOEXEC);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            OwnedFd::from_raw_fd(fd)
        };
        Ok(Epoll { epfd, buf: Vec::with_capacity(1024), places: Vec::new(), always_ready: Vec::new() })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        let mut ev = libc::epoll_event { events: epoll_bits(interest), u64: token };
        // SAFETY: `ev` is a live epoll_event for the duration of the call; epoll_ctl only reads it.
        let rc = unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), op, fd, &mut ev) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn place(&mut self, fd: RawFd) -> io::Result<&mut Place> {
        let i = usize::try_from(fd)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "negative descriptor"))?;
        if self.places.len() <= i {
            self.places.resize(i + 1, Place::Absent);
        }
        Ok(&mut self.places[i])
    }

    /// Puts `fd` where `interest` says it belongs, from wherever it is now.
    fn settle(&mut self, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        let now = *self.place(fd)?;
        let next = match (now, interest.is_empty()) {
            (Place::AlwaysReady, _) => {
                self.always_ready.retain(|e| e.0 != fd);
                self.always_ready.push((fd, token, interest));
                Place::AlwaysReady
            }
            (Place::Kernel, true) => {
                self.ctl(libc::EPOLL_CTL_DEL, fd, token, interest)?;
                Place::Idle(token)
            }
            (Place::Kernel, false) => {
                self.ctl(libc::EPOLL_CTL_MOD, fd, token, interest)?;
                Place::Kernel
            }
            (Place::Absent | Place::Idle(_), true) => Place::Idle(token),
            (Place::Absent | Place::Idle(_), false) => {
                match self.ctl(libc::EPOLL_CTL_ADD, fd, token, interest) {
                    Ok(()) => Place::Kernel,
                    Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                        self.always_ready.push((fd, token, interest));
                        Place::AlwaysReady
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        *self.place(fd)? = next;
        Ok(())
    }
}

impl Poller for Epoll {
    fn register(&mut self, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        self.settle(fd, token, interest)
    }

    fn reregister(&mut self, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        self.settle(fd, token, interest)
    }

    fn deregister(&mut self, fd: RawFd) -> io::Result<()> {
        let place = std::mem::replace(self.place(fd)?, Place::Absent);
        match place {
            Place::Kernel => self.ctl(libc::EPOLL_CTL_DEL, fd, 0, Interest::NONE),
            Place::AlwaysReady => {
                self.always_ready.retain(|e| e.0 != fd);
                Ok(())
            }
            Place::Absent | Place::Idle(_) => Ok(()),
        }
    }

    fn register_waker(&mut self, fd: RawFd, token: u64) -> io::Result<bool> {
        let mut ev = libc::epoll_event { events: (libc::EPOLLIN | libc::EPOLLET) as u32, u64: token };
        // SAFETY: `ev` is a live epoll_event for the duration of the call; epoll_ctl only reads it.
        let rc = unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        *self.place(fd)? = Place::Kernel;
        Ok(false)
    }

    fn wait(&mut self, events: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<()> {
        // Files are always ready: report them, and do not block if any wants something.
        let mut file_ready = false;
        for &(_, token, interest) in &self.always_ready {
            if !interest.is_empty() {
                file_ready = true;
                events.push(Event {
                    token,
                    readable: interest.read,
                    writable: interest.write,
                    ..Event::default()
                });
            }
        }
        let timeout = if file_ready { Some(Duration::ZERO) } else { timeout };
        let until = deadline(timeout);
        let cap = self.buf.capacity() as libc::c_int;
        let n = loop {
            let ms = timeout_ms(remaining(until));
            // SAFETY: `buf` has room for `cap` events; the kernel writes at most that many and
            // returns how many, which we then pass to set_len.
            let rc = unsafe { libc::epoll_wait(self.epfd.as_raw_fd(), self.buf.as_mut_ptr(), cap, ms) };
            if !check(rc)? {
                break rc as usize;
            }
            if until.is_some_and(|d| d <= std::time::Instant::now()) {
                return Ok(());
            }
        };
        // SAFETY: epoll_wait initialised the first `n` entries (n <= capacity).
        unsafe { self.buf.set_len(n) };
        for ev in self.buf.drain(..) {
            let bits = ev.events;
            let has = |flag: libc::c_int| bits & flag as u32 != 0;
            events.push(Event {
                token: ev.u64,
                readable: has(libc::EPOLLIN),
                writable: has(libc::EPOLLOUT),
                priority: has(libc::EPOLLPRI),
                hangup: has(libc::EPOLLHUP),
                error: has(libc::EPOLLERR),
                invalid: false,
            });
        }
        Ok(())
    }
}
