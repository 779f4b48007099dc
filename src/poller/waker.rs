//! The descriptor behind the cross-thread waker: an eventfd on Linux, a non-blocking pipe
//! elsewhere.
//!
//! On epoll the eventfd is registered edge-triggered and never read: a wake costs the waking
//! thread one `write` and the loop nothing. On select and poll (level-triggered) the loop drains
//! it after it fired.

use std::io;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
use std::os::fd::AsFd;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

#[derive(Debug)]
pub(crate) struct WakerFd {
    read: OwnedFd,
    /// The pipe's write end; `None` for an eventfd, which is written through `read`.
    write: Option<OwnedFd>,
}

impl WakerFd {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub fn new() -> io::Result<WakerFd> {
        // SAFETY: eventfd takes no pointers; a non-negative result is a fresh descriptor we own.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nothing else.
        Ok(WakerFd { read: unsafe { OwnedFd::from_raw_fd(fd) }, write: None })
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    pub fn new() -> io::Result<WakerFd> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` has room for the two descriptors pipe writes.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe succeeded, so both are fresh descriptors owned by nothing else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        for fd in [&read, &write] {
            super::set_nonblocking(fd.as_fd(), true)?;
            // SAFETY: F_SETFD on a descriptor we own; no memory is passed.
            unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
        }
        Ok(WakerFd { read, write: Some(write) })
    }

    pub fn fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// Makes the read side ready. A full pipe or a saturated counter already means "ready".
    pub fn wake(&self) -> io::Result<()> {
        let target = self.write.as_ref().unwrap_or(&self.read);
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local to a descriptor we own.
        let rc = unsafe { libc::write(target.as_raw_fd(), (&one as *const u64).cast(), 8) };
        if rc < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::WouldBlock {
                return Err(err);
            }
        }
        Ok(())
    }

    /// Empties the read side so a level-triggered backend stops reporting it.
    pub fn drain(&self) {
        let mut buf = [0u8; 64];
        loop {
            // SAFETY: reads into a live local buffer of the length passed.
            let rc = unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if rc <= 0 || self.write.is_none() {
                break;
            }
        }
    }
}
