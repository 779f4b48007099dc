//! The descriptor behind every waker: an eventfd on Linux, a non-blocking pipe elsewhere.
//!
//! On epoll the eventfd is watched edge-triggered and never read: a wake costs the waking thread
//! one `write` and the loop nothing. On select and poll (level-triggered) the selector drains
//! it after it fired.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

#[derive(Debug)]
pub(crate) struct WakeFd {
    read: OwnedFd,
    /// The pipe's write end; `None` for an eventfd, which is written through `read`.
    write: Option<OwnedFd>,
}

impl WakeFd {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub fn new() -> io::Result<WakeFd> {
        use rustix::event::{eventfd, EventfdFlags};
        let fd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        Ok(WakeFd { read: fd, write: None })
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    pub fn new() -> io::Result<WakeFd> {
        let (read, write) = rustix::pipe::pipe()?;
        for fd in [&read, &write] {
            super::set_nonblocking(fd.as_fd(), true)?;
            rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)?;
        }
        Ok(WakeFd { read, write: Some(write) })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }

    pub fn raw(&self) -> std::os::fd::RawFd {
        self.read.as_raw_fd()
    }

    /// Makes the read side ready. A full pipe or a saturated counter already means "ready".
    pub fn wake(&self) -> io::Result<()> {
        let target = self.write.as_ref().unwrap_or(&self.read);
        match rustix::io::write(target, &1u64.to_ne_bytes()) {
            Ok(_) | Err(rustix::io::Errno::AGAIN) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Empties the read side so a level-triggered backend stops reporting it.
    pub fn drain(&self) {
        let mut buf = [0u8; 64];
        // An eventfd is emptied by one read; a pipe may hold several wakes.
        while matches!(rustix::io::read(&self.read, &mut buf), Ok(n) if n > 0) && self.write.is_some() {}
    }
}
