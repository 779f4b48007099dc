//! The few calls on the io_uring instance that need care: building it with the best setup
//! flags the kernel accepts, pushing a submission (the crate marks it `unsafe`: the kernel may
//! read the memory an entry points to until the operation completes), and entering the kernel.
//!
//! The entries pushed by [`push`] point at no memory of ours: polls, their cancels, half-closes
//! and multishot receives carry a descriptor, user data and at most a buffer group (whose
//! memory `uring_buf.rs` owns). Sends ([`push_send`]) point at a stream's output buffer, whose
//! lifetime `uring.rs` keeps (see `Out` there). That is what the `// SAFETY:` below rely on.
#![cfg(target_os = "linux")]
#![allow(unsafe_code)]

use io_uring::{opcode, squeue, types, IoUring};
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

/// The setup the kernel accepted.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RingFlags {
    /// `SINGLE_ISSUER | DEFER_TASKRUN`, created disabled: enable it on the thread that submits.
    pub single_issuer: bool,
    /// `TASKRUN_FLAG`: the kernel marks the submission ring while it holds completion work
    /// for us, so a wait that must not block can skip the enter when nothing is marked or
    /// queued (see [`submit_now`]).
    pub taskrun_flag: bool,
}

/// Builds a ring: `SINGLE_ISSUER | DEFER_TASKRUN` (disabled until enabled on its thread), else
/// `COOP_TASKRUN`, each with `TASKRUN_FLAG`, else no flags. A refusal (`EPERM`, `ENOSYS`, ...) is returned as an error
/// naming io_uring.
pub(crate) fn build(sq: u32, cq: u32) -> io::Result<(IoUring, RingFlags)> {
    let mut last = None;
    for attempt in 0..3 {
        let mut b = IoUring::builder();
        b.setup_cqsize(cq).setup_clamp();
        match attempt {
            0 => {
                b.setup_single_issuer().setup_defer_taskrun().setup_r_disabled().setup_taskrun_flag();
            }
            1 => {
                b.setup_coop_taskrun().setup_taskrun_flag();
            }
            _ => {}
        }
        match b.build(sq) {
            // The wait's timeout rides on the enter itself (Linux 5.11); without it there is no
            // one-syscall wait with a timeout.
            Ok(ring) if !ring.params().is_feature_ext_arg() => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "io_uring is not usable: this kernel lacks IORING_FEAT_EXT_ARG (Linux 5.11)",
                ))
            }
            Ok(ring) => {
                let flags = RingFlags { single_issuer: attempt == 0, taskrun_flag: attempt < 2 };
                return Ok((ring, flags));
            }
            // An older kernel that does not know a flag: try fewer.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = Some(e),
            Err(e) => return Err(refused(e)),
        }
    }
    Err(refused(last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))))
}

fn refused(e: io::Error) -> io::Error {
    let why = match e.raw_os_error() {
        Some(libc::EPERM) => " (refused: see the kernel.io_uring_disabled sysctl, or a seccomp filter)",
        Some(libc::ENOSYS) => " (this kernel, or a seccomp filter, does not offer the syscall)",
        Some(libc::ENOMEM) => " (out of locked memory: see RLIMIT_MEMLOCK)",
        _ => "",
    };
    io::Error::new(e.kind(), format!("io_uring is not available: io_uring_setup failed: {e}{why}"))
}

/// Queues one entry; if the submission queue is full, submits what it holds first.
pub(crate) fn push(ring: &mut IoUring, sqe: &squeue::Entry) -> io::Result<()> {
    for _ in 0..2 {
        // SAFETY: every entry given here is a poll, a poll removal, a cancel, a shutdown or a
        // multishot receive with buffer select: it names a descriptor, user data and at most a
        // buffer group, never an address of ours (sends go through `push_send`). The group's memory (uring_buf.rs) outlives
        // every receive: `Uring`'s Drop waits for their last completions before freeing it.
        if unsafe { ring.submission().push(sqe) }.is_ok() {
            return Ok(());
        }
        ring.submit()?;
    }
    Err(io::Error::other("io_uring submission queue full"))
}

/// Queues a send of `buf` on `fd` (`MSG_NOSIGNAL`: a peer that left is an `EPIPE` completion,
/// never a signal), through the file table when `fixed`; if the submission queue is full,
/// submits what it holds first.
pub(crate) fn push_send(
    ring: &mut IoUring,
    fd: RawFd,
    fixed: bool,
    buf: &[u8],
    user_data: u64,
) -> io::Result<()> {
    let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
    let sqe = if fixed {
        opcode::Send::new(types::Fixed(fd as u32), buf.as_ptr(), len).flags(libc::MSG_NOSIGNAL).build()
    } else {
        opcode::Send::new(types::Fd(fd), buf.as_ptr(), len).flags(libc::MSG_NOSIGNAL).build()
    }
    .user_data(user_data);
    for _ in 0..2 {
        // SAFETY: the entry points at `buf`, which is `Out::flight[done..]` in uring.rs: that
        // vector is not written, resized or freed while its send is in flight (`Out::busy`);
        // new output goes to `Out::next` meanwhile. A removed stream's `Out` moves into a
        // `Linger` (the heap block stays put) kept until the completion is reaped, and where a
        // completion can no longer be awaited (the ring rebuilt on another thread, `Drop` past
        // its deadline) the block is leaked with `mem::forget`, never freed.
        if unsafe { ring.submission().push(&sqe) }.is_ok() {
            return Ok(());
        }
        ring.submit()?;
    }
    Err(io::Error::other("io_uring submission queue full"))
}

/// A multishot receive on `fd` into buffer group `group`, through the file table when `fixed`.
pub(crate) fn recv_multi(fd: RawFd, fixed: bool, group: u16, user_data: u64) -> squeue::Entry {
    let sqe = if fixed {
        opcode::RecvMulti::new(types::Fixed(fd as u32), group).build()
    } else {
        opcode::RecvMulti::new(types::Fd(fd), group).build()
    };
    sqe.user_data(user_data)
}

/// Descriptors the file table may hold: the process's descriptor limit, at most `cap`.
fn file_table_len(cap: u32) -> u32 {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    limit.map_or(cap, |n| u32::try_from(n).unwrap_or(u32::MAX).min(cap))
}

/// Registers an empty file table for descriptor numbers below the process's limit (at most
/// `cap`), and returns its length: 0 when the kernel refuses one (every operation then names
/// its descriptor, which costs the kernel a look-up and a reference count each).
pub(crate) fn register_file_table(ring: &IoUring, cap: u32) -> u32 {
    let len = file_table_len(cap);
    match ring.submitter().register_files_sparse(len) {
        Ok(()) => len,
        Err(e) => {
            log::debug!(target: "sockloop", "io_uring: no file table ({e}): descriptors are looked up per operation");
            0
        }
    }
}

/// Puts descriptor `fd` in the file table at its own number (`Some`), or empties that entry
/// (`None`), which lets go of the table's reference to the file.
pub(crate) fn set_file(ring: &IoUring, index: RawFd, fd: Option<RawFd>) -> io::Result<()> {
    ring.submitter().register_files_update(index as u32, &[fd.unwrap_or(-1)]).map(|_| ())
}

/// Submits what is queued and runs the kernel's deferred work without waiting (so a cancelled
/// poll lets go of its file now).
pub(crate) fn flush(ring: &IoUring) -> io::Result<()> {
    let zero = types::Timespec::new();
    let args = types::SubmitArgs::new().timespec(&zero);
    match ring.submitter().submit_with_args(1, &args) {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR | libc::EBUSY)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// A wait that must not block: submits what is queued and collects the completions the kernel
/// holds, with no minimum to wait for. With `taskrun_flag` and nothing queued or marked, there
/// is nothing to enter for, and no syscall is made.
///
/// Not `submit_and_wait` with a zero timeout: asking for one completion with a timeout arms a
/// kernel timer whenever none is there yet, and on a virtual machine arming and cancelling it
/// costs more than the rest of the wait (measured: about 4 % of the server's CPU at 50
/// connections, in `io_cqring_wait`).
pub(crate) fn submit_now(ring: &mut IoUring, taskrun_flag: bool) -> io::Result<()> {
    let sq = ring.submission();
    let idle = sq.is_empty() && !sq.taskrun() && !sq.cq_overflow();
    drop(sq);
    if taskrun_flag && idle {
        return Ok(());
    }
    // `submit` adds GETEVENTS when the kernel marked pending work or an overflow: that is what
    // runs deferred completions.
    match ring.submitter().submit() {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The pass's one `io_uring_enter`: submits what is queued and waits for a completion, up to
/// `timeout` (`None`: no limit). A timeout is not an error; `EINTR` is `Interrupted`.
pub(crate) fn submit_and_wait(ring: &IoUring, timeout: Option<Duration>) -> io::Result<()> {
    let res = match timeout {
        None => ring.submitter().submit_and_wait(1),
        Some(d) => {
            let ts = types::Timespec::new().sec(d.as_secs()).nsec(d.subsec_nanos());
            let args = types::SubmitArgs::new().timespec(&ts);
            ring.submitter().submit_with_args(1, &args)
        }
    };
    match res {
        Ok(_) => Ok(()),
        // ETIME: the timeout passed; EBUSY: the completion queue overflowed, reap it first.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EBUSY)) => Ok(()),
        Err(e) => Err(e),
    }
}
