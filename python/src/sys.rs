//! Every `unsafe` block of the extension, behind small safe functions: the system calls made on
//! descriptor numbers that come from Python objects, and the two C-API calls pyo3 has no safe
//! spelling for. The rest of the extension is safe code.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, RawFd};
use std::os::unix::net::UnixStream;

/// A non-negative descriptor number from Python as the `BorrowedFd` the selector takes.
pub fn borrow_fd(fd: RawFd) -> BorrowedFd<'static> {
    debug_assert!(fd >= 0);
    // SAFETY: `fd` is not -1 (the callers check), and the number comes from a Python socket
    // object's fileno() that the map holds (or, when removing, held until now). A descriptor
    // Python closed behind the map's back makes the selector's call fail with EBADF, which the
    // callers handle: the kernel checks every number, so a stale one is an error, never a
    // memory access.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// Whether `fd` is an open descriptor (`fcntl(F_GETFD)`; no Python call).
pub fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD reads the descriptor's flags; it takes no pointer and is defined for any
    // integer (an unknown one fails with EBADF).
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// The stream moved to the lowest free descriptor at or above 3 (`F_DUPFD_CLOEXEC`), when that
/// is lower than its own: select's waker must stay below `FD_SETSIZE`.
pub fn lowest_fd(s: UnixStream) -> UnixStream {
    // SAFETY: F_DUPFD_CLOEXEC duplicates a descriptor we own and takes no pointer; a
    // non-negative result is a new descriptor nothing else owns.
    let fd = unsafe { libc::fcntl(s.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if fd < 0 {
        return s;
    }
    // SAFETY: `fd` was just made by the duplicate above and is owned by no one else, so the
    // stream built from it owns it alone (and closes it when dropped).
    let dup = unsafe { UnixStream::from_raw_fd(fd) };
    if fd < s.as_raw_fd() {
        dup // `s` is dropped, closing the higher number
    } else {
        s // `dup` is dropped, closing the duplicate
    }
}

/// `recv(2)` with `MSG_DONTWAIT` into `buf` (not zeroed: only the bytes written are returned).
/// Errors are the raw errno, EINTR included (the caller runs Python's signal handlers).
pub fn recv_dontwait(fd: RawFd, buf: &mut [MaybeUninit<u8>]) -> Result<&[u8], i32> {
    // SAFETY: `buf` is writable for its length; `fd` is a number the kernel checks (EBADF if
    // closed); MSG_DONTWAIT makes the call return at once.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(last_errno());
    }
    // SAFETY: recv(2) wrote the first `n` (<= buf.len()) bytes of `buf`.
    Ok(unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n as usize) })
}

/// `send(2)` with `MSG_DONTWAIT | MSG_NOSIGNAL | extra`: EPIPE is reported, never SIGPIPE.
/// Errors are the raw errno, EINTR included.
pub fn send_dontwait(fd: RawFd, data: &[u8], extra: libc::c_int) -> Result<usize, i32> {
    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL | extra;
    // SAFETY: `data` is readable for its length; `fd` as in recv_dontwait.
    let n = unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), flags) };
    if n < 0 {
        Err(last_errno())
    } else {
        Ok(n as usize)
    }
}

/// The errno of the last failed call.
pub fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// The instance's `__dict__`, or `None` when it has none.
pub fn instance_dict<'py>(obj: &Bound<'py, PyAny>) -> Option<Bound<'py, PyDict>> {
    let py = obj.py();
    // SAFETY: `obj` is a live object; PyObject_GenericGetDict returns a new reference to its
    // dictionary, or NULL with an exception set (no dictionary), which from_owned_ptr_or_err
    // takes over.
    let d = unsafe {
        Bound::from_owned_ptr_or_err(py, ffi::PyObject_GenericGetDict(obj.as_ptr(), std::ptr::null_mut()))
    };
    d.ok()?.downcast_into::<PyDict>().ok()
}

/// `obj.name(*args)` without a bound-method object or an argument tuple in between.
pub fn call_method<'py>(
    obj: &Bound<'py, PyAny>,
    name: &Bound<'py, PyString>,
    args: &[&Bound<'py, PyAny>],
) -> PyResult<Bound<'py, PyAny>> {
    let py = obj.py();
    let (o, n) = (obj.as_ptr(), name.as_ptr());
    let end = std::ptr::null_mut::<ffi::PyObject>();
    // SAFETY: `o`, `n` and the arguments are live objects borrowed for the call, the variadic
    // list ends with NULL as PyObject_CallMethodObjArgs requires, and the result is a new
    // reference or NULL with an exception set, which from_owned_ptr_or_err takes over.
    unsafe {
        let r = match args {
            [] => ffi::PyObject_CallMethodObjArgs(o, n, end),
            [a] => ffi::PyObject_CallMethodObjArgs(o, n, a.as_ptr(), end),
            [a, b] => ffi::PyObject_CallMethodObjArgs(o, n, a.as_ptr(), b.as_ptr(), end),
            _ => return obj.call_method1(name, PyTuple::new(py, args)?),
        };
        Bound::from_owned_ptr_or_err(py, r)
    }
}
