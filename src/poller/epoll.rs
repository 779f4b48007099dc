//! `epoll(7)`, level-triggered, interest kept in the kernel.
//!
//! `epoll_ctl` runs only when a channel's interest changes. A descriptor with no interest is
//! taken out of the kernel set (`EPOLL_CTL_DEL`), because epoll reports hang-ups and errors even
//! for an empty event mask and a level-triggered hang-up would wake every wait.
//!
//! epoll refuses regular files and some character devices with `EPERM`; asyncore's
//! `file_dispatcher` works over such files, so they are kept on a side list and reported ready
//! for whatever they are interested in on every wait (which is what select and poll say of them).
#![cfg(any(target_os = "linux", target_os = "android"))]

use super::{Event, Interest, Poller};
use rustix::event::epoll::{self, EventData, EventFlags};
use rustix::event::Timespec;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

/// Where a known descriptor lives.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    Absent,
    /// Known, empty interest, not in the kernel set.
    Idle,
    Kernel,
    /// A regular file (epoll said EPERM): always ready.
    AlwaysReady,
}

pub(crate) struct Epoll {
    epfd: OwnedFd,
    places: Vec<Place>,
    always_ready: Vec<(RawFd, u64, Interest)>,
}

fn flags(interest: Interest) -> EventFlags {
    let mut f = EventFlags::empty();
    if interest.read {
        f |= EventFlags::IN | EventFlags::PRI;
    }
    if interest.write {
        f |= EventFlags::OUT;
    }
    f
}

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        let epfd = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        Ok(Epoll { epfd, places: Vec::new(), always_ready: Vec::new() })
    }

    fn place(&mut self, fd: RawFd) -> &mut Place {
        let i = fd as usize; // a BorrowedFd is never negative
        if self.places.len() <= i {
            self.places.resize(i + 1, Place::Absent);
        }
        &mut self.places[i]
    }
}

impl Poller for Epoll {
    fn set_interest(&mut self, fd: BorrowedFd<'_>, token: u64, interest: Interest) -> io::Result<()> {
        let raw = fd.as_raw_fd();
        let data = EventData::new_u64(token);
        let next = match (*self.place(raw), interest.is_empty()) {
            (Place::AlwaysReady, _) => {
                self.always_ready.retain(|e| e.0 != raw);
                self.always_ready.push((raw, token, interest));
                Place::AlwaysReady
            }
            (Place::Kernel, true) => {
                epoll::delete(&self.epfd, fd)?;
                Place::Idle
            }
            (Place::Kernel, false) => {
                epoll::modify(&self.epfd, fd, data, flags(interest))?;
                Place::Kernel
            }
            (Place::Absent | Place::Idle, true) => {
                if !crate::sys::is_open(fd) {
                    return Err(super::not_open());
                }
                Place::Idle
            }
            (Place::Absent | Place::Idle, false) => match epoll::add(&self.epfd, fd, data, flags(interest)) {
                Ok(()) => Place::Kernel,
                Err(rustix::io::Errno::PERM) => {
                    self.always_ready.push((raw, token, interest));
                    Place::AlwaysReady
                }
                Err(e) => return Err(e.into()),
            },
        };
        *self.place(raw) = next;
        Ok(())
    }

    fn remove(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let raw = fd.as_raw_fd();
        match std::mem::replace(self.place(raw), Place::Absent) {
            Place::Kernel => Ok(epoll::delete(&self.epfd, fd)?),
            Place::AlwaysReady => {
                self.always_ready.retain(|e| e.0 != raw);
                Ok(())
            }
            Place::Absent | Place::Idle => Ok(()),
        }
    }

    fn watch_waker(&mut self, fd: BorrowedFd<'_>, token: u64) -> io::Result<bool> {
        epoll::add(&self.epfd, fd, EventData::new_u64(token), EventFlags::IN | EventFlags::ET)?;
        *self.place(fd.as_raw_fd()) = Place::Kernel;
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
        let ms = crate::sys::timeout_ms(timeout);
        let ts = (ms >= 0)
            .then(|| Timespec { tv_sec: (ms / 1000).into(), tv_nsec: ((ms % 1000) * 1_000_000).into() });
        EVENTS.with_borrow_mut(|buf| {
            buf.clear();
            epoll::wait(&self.epfd, rustix::buffer::spare_capacity(buf), ts.as_ref())?;
            events.extend(buf.drain(..).map(event));
            Ok(())
        })
    }
}

thread_local! {
    /// The kernel's event records, per thread: rustix's record holds a raw pointer, so it
    /// cannot live in a `Send` poller, and one buffer per waiting thread is all that is needed.
    static EVENTS: std::cell::RefCell<Vec<epoll::Event>> = std::cell::RefCell::new(Vec::with_capacity(1024));
}

fn event(ev: epoll::Event) -> Event {
    let bits = ev.flags;
    Event {
        token: ev.data.u64(),
        readable: bits.contains(EventFlags::IN),
        writable: bits.contains(EventFlags::OUT),
        priority: bits.contains(EventFlags::PRI),
        hangup: bits.contains(EventFlags::HUP),
        error: bits.contains(EventFlags::ERR),
        invalid: false,
    }
}
