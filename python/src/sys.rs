//! Every `unsafe` block of the extension, behind small safe functions: the system calls made on
//! descriptor numbers that come from Python objects, and the two C-API calls pyo3 has no safe
//! spelling for. The rest of the extension is safe code.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple, PyType};
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

/// `seq[0]` by the sequence protocol (no index object).
pub fn first_item<'py>(seq: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: `seq` is live; PySequence_GetItem returns a new reference or NULL with an
    // exception set (a TypeError for an object that is not a sequence), which
    // from_owned_ptr_or_err takes over.
    unsafe { Bound::from_owned_ptr_or_err(seq.py(), ffi::PySequence_GetItem(seq.as_ptr(), 0)) }
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

extern "C" {
    /// How CPython's method calls look a method up (`Include/cpython/object.h`): 1 with the
    /// class's function or method descriptor when nothing shadows it (an instance attribute
    /// or a data descriptor), else 0 with what `getattr` gives, or NULL with an exception set.
    /// A new reference either way. It reads the instance's attributes without making a
    /// `__dict__` for them (as reading `obj.__dict__` would).
    fn _PyObject_GetMethod(
        obj: *mut ffi::PyObject,
        name: *mut ffi::PyObject,
        method: *mut *mut ffi::PyObject,
    ) -> libc::c_int;

    /// CPython's type attribute lookup (`Include/cpython/object.h`): the MRO walk, through
    /// the method cache, giving the type a version tag when it has none. A borrowed result.
    fn _PyType_Lookup(tp: *mut ffi::PyTypeObject, name: *mut ffi::PyObject) -> *mut ffi::PyObject;
}

/// `obj.name` looked up as for a call: `(true, f)` when it is the class's function or method
/// descriptor `f`, not shadowed on the instance (call it with `obj` first), `(false, v)` for
/// anything else (call `v` as it is).
#[inline]
pub fn get_method<'py>(
    obj: &Bound<'py, PyAny>,
    name: &Bound<'py, PyString>,
) -> PyResult<(bool, Bound<'py, PyAny>)> {
    let mut found = std::ptr::null_mut();
    // SAFETY: `obj` and `name` (a str) are live; `found` is written with a new reference or
    // NULL (then an exception is set), which from_owned_ptr_or_err takes over.
    unsafe {
        let unbound = _PyObject_GetMethod(obj.as_ptr(), name.as_ptr(), &mut found) == 1;
        Ok((unbound, Bound::from_owned_ptr_or_err(obj.py(), found)?))
    }
}

/// The address of `obj`'s class and the class's version tag as it is now (0: none).
#[inline]
pub fn class_and_tag(obj: &Bound<'_, PyAny>) -> (usize, u32) {
    // SAFETY: a live object's type pointer is a valid type object while the GIL is held;
    // tp_version_tag is a plain field of it (full API build).
    unsafe {
        let tp = ffi::Py_TYPE(obj.as_ptr());
        (tp as usize, (*tp).tp_version_tag)
    }
}

/// The address of class `ty` and its version tag (0 when it has none and none
/// could be given). CPython resets a class's tag whenever an attribute of it or of a base
/// changes; a type lookup (`_PyType_Lookup`, here of `probe`, an interned name) gives it a
/// fresh one, never used before.
pub fn type_and_tag(ty: &Bound<'_, PyType>, probe: &Bound<'_, PyString>) -> (usize, u32) {
    // SAFETY: `ty` is a live type object, valid for reads while the GIL is held;
    // tp_version_tag is a plain field of every type object (the extension is built
    // against the full, not the limited, API). _PyType_Lookup takes a type and a str and
    // returns a borrowed reference (or NULL) without setting an exception; its result is not
    // used.
    unsafe {
        let tp = ty.as_ptr().cast::<ffi::PyTypeObject>();
        let mut tag = (*tp).tp_version_tag;
        if tag == 0 {
            _PyType_Lookup(tp, probe.as_ptr());
            tag = (*tp).tp_version_tag;
        }
        (tp as usize, tag)
    }
}

/// The attribute `name` of class `ty` as the instance lookup finds it (the first class of
/// the MRO that has it), without invoking descriptors.
pub fn type_lookup<'py>(ty: &Bound<'py, PyType>, name: &Bound<'py, PyString>) -> Option<Bound<'py, PyAny>> {
    // SAFETY: both are live objects of the right types; _PyType_Lookup returns a borrowed
    // reference or NULL and sets no exception. from_borrowed_ptr_or_opt takes a new reference
    // before anything else can run.
    unsafe {
        let found = _PyType_Lookup(ty.as_ptr().cast(), name.as_ptr());
        Bound::from_borrowed_ptr_or_opt(ty.py(), found)
    }
}

/// Whether `obj`'s type has `__get__` and whether it has `__set__`/`__delete__` (a data
/// descriptor, which takes precedence over the instance dictionary).
pub fn descriptor_kind(obj: &Bound<'_, PyAny>) -> (bool, bool) {
    // SAFETY: the type of a live object is a valid type object; reading two slot fields.
    unsafe {
        let tp = ffi::Py_TYPE(obj.as_ptr());
        ((*tp).tp_descr_get.is_some(), (*tp).tp_descr_set.is_some())
    }
}

/// Whether instances of `ty` use Python's generic attribute lookup (no `__getattribute__` or
/// `__getattr__` of the class's own).
pub fn generic_getattr(ty: &Bound<'_, PyType>) -> bool {
    // SAFETY: reading one slot field of a live type object.
    let slot = unsafe { (*ty.as_ptr().cast::<ffi::PyTypeObject>()).tp_getattro };
    let generic: unsafe extern "C" fn(*mut ffi::PyObject, *mut ffi::PyObject) -> *mut ffi::PyObject =
        ffi::PyObject_GenericGetAttr;
    slot.is_some_and(|f| std::ptr::fn_addr_eq(f, generic))
}

/// `callable(first, *args)` (`first` when given) by vectorcall: no argument tuple, no bound
/// method object.
pub fn call<'py>(
    callable: &Bound<'py, PyAny>,
    first: Option<&Bound<'py, PyAny>>,
    args: &[&Bound<'py, PyAny>],
) -> PyResult<Bound<'py, PyAny>> {
    let py = callable.py();
    // Slot 0 stays free: PY_VECTORCALL_ARGUMENTS_OFFSET lets the callee use it (a bound
    // method puts its self there instead of copying the arguments).
    let mut v = [std::ptr::null_mut::<ffi::PyObject>(); 5];
    let mut n = 0;
    for a in first.into_iter().chain(args.iter().copied()) {
        if n == v.len() - 1 {
            let all: Vec<&Bound<'py, PyAny>> = first.into_iter().chain(args.iter().copied()).collect();
            return callable.call1(PyTuple::new(py, all)?);
        }
        n += 1;
        v[n] = a.as_ptr();
    }
    let nargs = n | ffi::PY_VECTORCALL_ARGUMENTS_OFFSET;
    // SAFETY: `v[1..=n]` hold live objects borrowed for the call, `v[0]` is writable scratch
    // as PY_VECTORCALL_ARGUMENTS_OFFSET allows; the result is a new reference or NULL with an
    // exception set, which from_owned_ptr_or_err takes over.
    unsafe {
        let r =
            ffi::PyObject_Vectorcall(callable.as_ptr(), v.as_mut_ptr().add(1), nargs, std::ptr::null_mut());
        Bound::from_owned_ptr_or_err(py, r)
    }
}

/// The start of CPython's socket object (`Modules/socketmodule.h`): the descriptor, then
/// family, type, protocol, the error handler and the timeout in nanoseconds (0: non-blocking).
#[repr(C)]
struct SocketHead {
    ob: ffi::PyObject,
    fd: libc::c_int,
    family: libc::c_int,
    kind: libc::c_int,
    proto: libc::c_int,
    errorhandler: *const libc::c_void,
    timeout_ns: i64,
}

/// The descriptor and timeout (ns) stored in a socket object, read without calling it, or
/// `None` when its type's instances are too small to have that layout. The layout is not a
/// public API: the caller checks once, on real sockets, that these numbers are what
/// `fileno()` and `gettimeout()` say, and uses this only for exactly `socket.socket`.
pub fn socket_head(sock: &Bound<'_, PyAny>) -> Option<(RawFd, i64)> {
    // SAFETY: the type of a live object is valid to read; its tp_basicsize bounds the
    // object's fixed part, so when it covers SocketHead the fields read are inside the
    // object (both are plain integers, any bit pattern is a value).
    unsafe {
        let o = sock.as_ptr();
        let tp = ffi::Py_TYPE(o);
        if ((*tp).tp_basicsize as usize) < std::mem::size_of::<SocketHead>() {
            return None;
        }
        let head = o.cast::<SocketHead>();
        Some(((*head).fd, (*head).timeout_ns))
    }
}

/// The Rust side of a one-argument method of a pyclass `T` that Python calls often (`recv`,
/// `send`, `push`): the instance and the argument.
pub type OneArg<T> = for<'py> fn(&Bound<'py, T>, &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>>;

/// A `PyMethodDef` in a static (CPython keeps a pointer to it for the descriptor's lifetime).
pub struct MethodDef(ffi::PyMethodDef);

// SAFETY: the definition is never written after it is built (a const), and CPython only reads
// it, with the GIL held.
unsafe impl Sync for MethodDef {}

/// Defines `$def`, a static `METH_FASTCALL | METH_KEYWORDS` method `$name($param)` of pyclass
/// `$ty` whose body is `$body` (a [`OneArg`]): called by CPython's method descriptor directly,
/// without pyo3's generic trampoline (argument parser, per-call type lookup, GIL-count
/// bookkeeping). [`install`] puts it on the class.
#[macro_export]
macro_rules! one_arg_method {
    ($def:ident, $ty:ty, $name:literal, $param:literal, $doc:literal, $body:expr) => {
        pub static $def: $crate::sys::MethodDef = {
            unsafe extern "C" fn entry(
                slf: *mut pyo3::ffi::PyObject,
                args: *const *mut pyo3::ffi::PyObject,
                nargs: pyo3::ffi::Py_ssize_t,
                kwnames: *mut pyo3::ffi::PyObject,
            ) -> *mut pyo3::ffi::PyObject {
                // SAFETY: CPython calls this through a method descriptor made by `install` for
                // `$ty`, with the GIL held, `slf` an instance of `$ty` (the descriptor checks),
                // and `args`/`kwnames` as the vectorcall protocol defines them.
                let call = $crate::sys::one_arg_entry::<$ty>;
                let body: $crate::sys::OneArg<$ty> = $body;
                let (name, param): (&str, &str) = ($name, $param);
                unsafe { call(slf, args, nargs, kwnames, name, param, body) }
            }
            $crate::sys::MethodDef::new(concat!($name, "\0"), concat!($doc, "\0"), entry)
        };
    };
}

type FastKw = unsafe extern "C" fn(
    *mut ffi::PyObject,
    *const *mut ffi::PyObject,
    ffi::Py_ssize_t,
    *mut ffi::PyObject,
) -> *mut ffi::PyObject;

impl MethodDef {
    /// `name` and `doc` end with a NUL.
    pub const fn new(name: &'static str, doc: &'static str, entry: FastKw) -> MethodDef {
        MethodDef(ffi::PyMethodDef {
            ml_name: name.as_ptr().cast(),
            ml_meth: ffi::PyMethodDefPointer { PyCFunctionFastWithKeywords: entry },
            ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
            ml_doc: doc.as_ptr().cast(),
        })
    }
}

/// The body of every [`one_arg_method!`] entry: argument checks, the call, and the result or
/// exception handed back to CPython (a panic becomes pyo3's `PanicException`).
///
/// # Safety
/// `slf` must be a live instance of `T` (or of a subclass), `args` must point to `nargs`
/// (positional) plus `len(kwnames)` live objects, `kwnames` NULL or a tuple of str, and the
/// GIL held: what CPython guarantees when it calls a METH_FASTCALL|METH_KEYWORDS method
/// through a descriptor of `T`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn one_arg_entry<T: pyo3::PyTypeInfo>(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
    name: &str,
    param: &str,
    body: OneArg<T>,
) -> *mut ffi::PyObject {
    // SAFETY: the caller's contract: the GIL is held, the pointers are live and typed as said.
    unsafe {
        let py = Python::assume_gil_acquired();
        let run = || -> PyResult<Bound<'_, PyAny>> {
            let slf = Bound::from_borrowed_ptr(py, slf).downcast_into_unchecked::<T>();
            let positional = ffi::PyVectorcall_NARGS(nargs as usize);
            let keywords = if kwnames.is_null() { 0 } else { ffi::PyTuple_GET_SIZE(kwnames) };
            let named_ok = keywords == 0
                || (keywords == 1
                    && Bound::from_borrowed_ptr(py, ffi::PyTuple_GET_ITEM(kwnames, 0))
                        .downcast::<PyString>()
                        .is_ok_and(|k| k.to_str().is_ok_and(|k| k == param)));
            if positional + keywords != 1 || !named_ok {
                let msg = format!("{name}() takes exactly one argument ({param})");
                return Err(pyo3::exceptions::PyTypeError::new_err(msg));
            }
            let arg = Bound::from_borrowed_ptr(py, *args);
            body(&slf, &arg)
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).unwrap_or_else(|p| {
            let text = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".to_owned());
            Err(pyo3::panic::PanicException::new_err(text))
        });
        match result {
            Ok(v) => v.into_ptr(),
            Err(e) => {
                e.restore(py);
                std::ptr::null_mut()
            }
        }
    }
}

/// Puts the method `def` (made by [`one_arg_method!`] for `ty`) on class `ty`, replacing the
/// attribute of the same name.
pub fn install(ty: &Bound<'_, PyType>, def: &'static MethodDef) -> PyResult<()> {
    let py = ty.py();
    // SAFETY: `def` is a 'static definition CPython only reads; PyDescr_NewMethod returns a new
    // reference or NULL with an exception set, which from_owned_ptr_or_err takes over.
    let descr = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyDescr_NewMethod(ty.as_ptr().cast(), std::ptr::addr_of!(def.0).cast_mut()),
        )?
    };
    // SAFETY: ml_name is a NUL-terminated static string (MethodDef::new's contract).
    let name = unsafe { std::ffi::CStr::from_ptr(def.0.ml_name) };
    ty.setattr(name.to_str().map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?, descr)
}

/// The type object of pyclass `T`, kept as a raw pointer once the module is initialised, so
/// that a type check costs a pointer compare instead of pyo3's lazy type-object lookup and an
/// MRO walk on each call. The few subclasses seen last are kept too (held, so their addresses
/// cannot be reused by another type while they are here).
pub struct FastType<T> {
    tp: std::sync::atomic::AtomicPtr<ffi::PyTypeObject>,
    subs: pyo3::sync::GILProtected<std::cell::RefCell<Vec<Py<PyType>>>>,
    /// The subclass of `subs` that matched last (0: none), checked before the list.
    last: pyo3::sync::GILProtected<std::cell::Cell<usize>>,
    kind: std::marker::PhantomData<fn() -> T>,
}

/// How many subclasses [`FastType`] remembers.
const SUBS_KEPT: usize = 8;

impl<T: pyo3::PyTypeInfo> FastType<T> {
    pub const fn new() -> Self {
        FastType {
            tp: std::sync::atomic::AtomicPtr::new(std::ptr::null_mut()),
            subs: pyo3::sync::GILProtected::new(std::cell::RefCell::new(Vec::new())),
            last: pyo3::sync::GILProtected::new(std::cell::Cell::new(0)),
            kind: std::marker::PhantomData,
        }
    }

    /// Takes `T`'s type object (which lives as long as the process: pyo3 never frees it).
    pub fn init(&self, py: Python<'_>) {
        self.tp.store(T::type_object_raw(py), std::sync::atomic::Ordering::Relaxed);
    }

    /// `obj` as a `T` when it is one (an instance of `T` or of a subclass).
    #[inline]
    pub fn downcast<'a, 'py>(&self, obj: &'a Bound<'py, PyAny>) -> Option<&'a Bound<'py, T>> {
        let py = obj.py();
        let tp = self.tp.load(std::sync::atomic::Ordering::Relaxed);
        if tp.is_null() {
            return obj.downcast::<T>().ok();
        }
        let own = obj.get_type_ptr();
        let last = self.last.get(py);
        let known = own == tp || own as usize == last.get() || {
            let subs = self.subs.get(py).borrow();
            let hit = subs.iter().rev().any(|s| s.as_ptr().cast() == own);
            if hit {
                last.set(own as usize);
            }
            hit
        };
        // SAFETY: `tp` is `T`'s type object (stored by `init` from T::type_object_raw, never
        // freed), and each type in `subs` was checked to be a subtype of it when it was put
        // there and is held alive by the list, so no other type can have its address; `last`
        // is only ever the address of a type in `subs` (reset when that one leaves). So
        // `known` means `obj`'s type is `T` or a subclass; otherwise PyObject_TypeCheck (on a
        // live object, reading its type's MRO) decides. Either way `obj` is an instance of `T`
        // or a subclass, which is what downcast_unchecked requires.
        unsafe {
            if known {
                return Some(obj.downcast_unchecked::<T>());
            }
            if ffi::PyObject_TypeCheck(obj.as_ptr(), tp) == 0 {
                return None;
            }
        }
        let class = obj.get_type().unbind();
        let dropped = {
            let mut subs = self.subs.get(py).borrow_mut();
            let old = if subs.len() >= SUBS_KEPT { Some(subs.remove(0)) } else { None };
            if old.as_ref().is_some_and(|o| o.as_ptr() as usize == last.get()) {
                last.set(0); // `last` always names a type the list holds
            }
            subs.push(class);
            old
        };
        drop(dropped);
        // SAFETY: PyObject_TypeCheck held just above.
        Some(unsafe { obj.downcast_unchecked::<T>() })
    }
}

/// Makes `object.__new__`'s allocation the constructor of pyclass `ty` (and so of the Python
/// classes made from it later), when that gives objects identical to pyo3's own; returns
/// whether it did.
///
/// Why: CPython 3.12 gives an instance of a plain class its attributes as "inline values"
/// (set up by `object.__new__`, not by `tp_alloc`), and the interpreter's specialised
/// attribute instructions (`self.parts`, `self.push(...)`) work only on such instances. A
/// pyo3 class's constructor allocates with `tp_alloc` alone, so every instance of a Python
/// subclass got a real `__dict__` at its first attribute assignment, and each `self.x` in
/// the handlers took the generic, slower path.
///
/// pyo3's constructor for a class over `object` is `tp_alloc` (zero-filled memory) followed by
/// writing the Rust value; `object.__new__` is the same `tp_alloc` followed by setting up the
/// inline values. So when the Rust value that `#[new]` writes is all zero bytes, both give the
/// same object but for the inline values. That is checked here on a real instance made by
/// pyo3's constructor (with nothing given to it, as `Channel.__new__` ignores its arguments);
/// when anything differs (another pyo3 layout, a base other than `object`, an allocator of
/// the class's own), the class keeps pyo3's constructor.
pub fn use_object_new(ty: &Bound<'_, PyType>) -> bool {
    // SAFETY: `ty` is a live type object made by pyo3 (a heap type the extension owns), read
    // and written with the GIL held. The slots read are plain fields. The test instance is a
    // new reference from the class's own tp_new, its first tp_basicsize bytes are the object
    // itself (tp_itemsize is checked to be 0), and it is released before returning. Writing
    // tp_new of our own heap type before any subclass exists is how a C extension sets its
    // constructor; subclasses copy the slot when they are created.
    unsafe {
        let tp = ty.as_ptr().cast::<ffi::PyTypeObject>();
        let base = std::ptr::addr_of_mut!(ffi::PyBaseObject_Type);
        let generic: unsafe extern "C" fn(*mut ffi::PyTypeObject, ffi::Py_ssize_t) -> *mut ffi::PyObject =
            ffi::PyType_GenericAlloc;
        let plain = (*tp).tp_base == base
            && (*tp).tp_itemsize == 0
            && (*tp).tp_alloc.is_some_and(|f| std::ptr::fn_addr_eq(f, generic))
            && (*base).tp_new.is_some();
        let Some(pyo3_new) = (*tp).tp_new.filter(|_| plain) else { return false };
        let empty = ffi::PyTuple_New(0);
        if empty.is_null() {
            ffi::PyErr_Clear();
            return false;
        }
        let probe = pyo3_new(tp, empty, std::ptr::null_mut());
        ffi::Py_DECREF(empty);
        if probe.is_null() {
            ffi::PyErr_Clear();
            return false;
        }
        let head = std::mem::size_of::<ffi::PyObject>();
        let size = (*tp).tp_basicsize as usize;
        let zero = size >= head
            && std::slice::from_raw_parts(probe.cast::<u8>().add(head), size - head).iter().all(|b| *b == 0);
        ffi::Py_DECREF(probe);
        if zero {
            (*tp).tp_new = Some(object_new_empty);
        }
        zero
    }
}

/// The constructor [`use_object_new`] installs: `object.__new__(subtype)`. The arguments are
/// not `object.__new__`'s business (it would refuse them; `__init__` takes them), as with
/// pyo3's `#[new]` that ignored them.
unsafe extern "C" fn object_new_empty(
    subtype: *mut ffi::PyTypeObject,
    _args: *mut ffi::PyObject,
    _kwds: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls a tp_new with the GIL held and a live subtype. An empty tuple is a
    // new reference (or NULL with an exception set); object's tp_new is present (checked by
    // use_object_new before this was installed) and returns a new reference or NULL with an
    // exception set, handed on as it is.
    unsafe {
        let empty = ffi::PyTuple_New(0);
        if empty.is_null() {
            return std::ptr::null_mut();
        }
        let base = std::ptr::addr_of_mut!(ffi::PyBaseObject_Type);
        let obj = match (*base).tp_new {
            Some(new) => new(subtype, empty, std::ptr::null_mut()),
            None => {
                ffi::PyErr_SetString(ffi::PyExc_TypeError, c"object has no tp_new".as_ptr());
                std::ptr::null_mut()
            }
        };
        ffi::Py_DECREF(empty);
        obj
    }
}

// -- an instance's own attributes, read where CPython keeps them ---------------------------

/// Where CPython 3.12 and 3.13 keep the attributes of an instance whose class has a managed
/// dictionary (`Py_TPFLAGS_MANAGED_DICT`, every plain Python class): a pointer three words
/// before the object, and, until something asks for its `__dict__`, an array of values indexed
/// by the class's shared keys (`ht_cached_keys`) instead of a dictionary. 3.12 keeps there the
/// address of such values less one (an odd number, where a dictionary's is even); 3.13 keeps
/// the values after the object's fixed part (`Py_TPFLAGS_INLINE_VALUES`). Neither is a public
/// API, so `names::own_layout` uses a layout only after checking it, once, on objects made for
/// that on this interpreter.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum OwnLayout {
    V312,
    V313,
}

const TPFLAGS_INLINE_VALUES: libc::c_ulong = 1 << 2;

/// The start of CPython's `PyDictKeysObject` (the same in 3.12 and 3.13 without free
/// threading): the entries follow the index table, whose size is `1 << dk_log2_index_bytes`.
#[repr(C)]
struct KeysHead {
    refcnt: isize,
    log2_size: u8,
    log2_index_bytes: u8,
    kind: u8,
    version: u32,
    usable: isize,
    nentries: isize,
}

/// `dk_kind` of a class's shared keys (`DICT_KEYS_SPLIT`): entries of a key and a value slot.
const KEYS_SPLIT: u8 = 2;

/// Where `obj` keeps attributes of its own, read without making it a `__dict__`. Values read
/// from [`OwnValues`] are right only until Python code runs again: read them at once.
pub enum Own<'a, 'py> {
    /// The object has none (no `__dict__` yet, or none possible).
    Nothing,
    /// In this dictionary (held: a look-up in it may run Python code, which may replace it).
    Dict(Bound<'py, pyo3::types::PyDict>),
    /// In values indexed by its class's shared keys.
    Values(OwnValues<'a>),
    /// Somewhere not read here: ask Python.
    Unknown,
}

/// An instance's values and the class's shared keys they follow, as [`own_attributes`] found
/// them.
pub struct OwnValues<'a> {
    values: *const *mut ffi::PyObject,
    capacity: usize,
    keys: SharedKeys<'a>,
}

/// Where `obj`'s own attributes are, on an interpreter with `layout`.
#[inline(always)]
pub fn own_attributes<'a, 'py>(obj: &'a Bound<'py, PyAny>, layout: OwnLayout) -> Own<'a, 'py> {
    // SAFETY: the GIL is held and `obj` is live, so its type and the words CPython keeps
    // before and after it for a managed-dictionary class are valid to read (the flags say which
    // exist; `layout` was checked on this interpreter). A dictionary found is taken as a new
    // reference. The keys are the class's own, alive as long as it is; the capacity bounds
    // every index read later (3.12: usable plus entries, the length every instance's values
    // were made with; 3.13: the values' own capacity byte).
    unsafe {
        let o = obj.as_ptr();
        let tp = ffi::Py_TYPE(o);
        let flags = (*tp).tp_flags;
        if flags & ffi::Py_TPFLAGS_MANAGED_DICT == 0 {
            return match (*tp).tp_dictoffset {
                0 => Own::Nothing,
                off if off > 0 => {
                    own_dict(obj.py(), *o.cast::<u8>().offset(off).cast::<*mut ffi::PyObject>())
                }
                _ => Own::Unknown,
            };
        }
        let word = *o.cast::<usize>().offset(-3);
        let in_values = match layout {
            OwnLayout::V312 => word & 1 == 1,
            OwnLayout::V313 => word == 0 && flags & TPFLAGS_INLINE_VALUES != 0,
        };
        if !in_values {
            return own_dict(obj.py(), word as *mut ffi::PyObject);
        }
        let keys = (*tp.cast::<ffi::PyHeapTypeObject>()).ht_cached_keys as usize;
        let Some(head) = keys_head(keys) else { return Own::Unknown };
        let (values, capacity) = match layout {
            OwnLayout::V312 => {
                ((word + 1) as *const *mut ffi::PyObject, (head.usable + head.nentries) as usize)
            }
            OwnLayout::V313 => {
                let v = o.cast::<u8>().cast_const().offset((*tp).tp_basicsize);
                if *v.add(3) == 0 {
                    return Own::Unknown; // values no longer valid: rare, let Python look
                }
                (v.add(8).cast::<*mut ffi::PyObject>(), usize::from(*v))
            }
        };
        let keys = SharedKeys { addr: keys, nentries: head.nentries, _class: std::marker::PhantomData };
        Own::Values(OwnValues { values, capacity, keys })
    }
}

/// The instance dictionary at `dict` (NULL: none yet), held.
///
/// # Safety
/// `dict` is NULL or the live instance dictionary pointer of a live object.
unsafe fn own_dict<'a, 'py>(py: Python<'py>, dict: *mut ffi::PyObject) -> Own<'a, 'py> {
    match Bound::from_borrowed_ptr_or_opt(py, dict) {
        None => Own::Nothing,
        Some(d) => d.downcast_into_exact::<pyo3::types::PyDict>().map_or(Own::Unknown, Own::Dict),
    }
}

impl<'a> OwnValues<'a> {
    /// The class's shared keys the values follow.
    pub fn keys(&self) -> &SharedKeys<'a> {
        &self.keys
    }

    /// The instance's value at entry `i` of the keys, `Some(None)` when it has none there
    /// (`None`: `i` is out of its range).
    #[inline]
    pub fn value<'py>(&self, py: Python<'py>, i: usize) -> Option<Option<Bound<'py, PyAny>>> {
        if i >= self.capacity || i as isize >= self.keys.nentries {
            return None;
        }
        // SAFETY: `i` is below the values' capacity and the keys' entries, and the values
        // belong to the live instance, unchanged since they were read; a value is NULL or a
        // live object, of which a new reference is taken at once.
        Some(unsafe { Bound::from_borrowed_ptr_or_opt(py, *self.values.add(i)) })
    }
}

/// The head of the shared keys at `keys`, when they are split keys.
///
/// # Safety
/// `keys` is 0 or the `ht_cached_keys` of a live class.
unsafe fn keys_head(keys: usize) -> Option<&'static KeysHead> {
    let head = (keys as *const KeysHead).as_ref()?;
    (head.kind == KEYS_SPLIT && head.nentries >= 0 && head.usable >= 0).then_some(head)
}

/// A class's shared keys, as [`own_attributes`] found them: only it makes them, for the
/// instance it was given, which keeps its class (and so the keys) alive. Keys
/// are only ever added to them, in place, so `(address, entries)` names one state of them.
pub struct SharedKeys<'a> {
    addr: usize,
    nentries: isize,
    _class: std::marker::PhantomData<&'a ()>,
}

impl SharedKeys<'_> {
    /// The keys' address and how many entries they hold now.
    pub fn state(&self) -> (usize, isize) {
        (self.addr, self.nentries)
    }

    /// The names in the keys, in entry order (the index of each is its value's index in an
    /// instance's values); `None` where an entry holds no `str`.
    pub fn names<'py>(&self, py: Python<'py>) -> Vec<Option<Bound<'py, PyString>>> {
        // SAFETY: `addr` is the ht_cached_keys of a class kept alive by the instance
        // own_attributes was given, which outlives `self`; split keys hold `nentries` entries
        // of two pointers (the key, an unused value) after the index table, in place. Each key
        // is NULL or a str; a new reference is taken to each before anything else can run.
        unsafe {
            let Some(head) = keys_head(self.addr) else { return Vec::new() };
            let indices = (self.addr as *const u8).add(std::mem::size_of::<KeysHead>());
            let entries = indices.add(1 << head.log2_index_bytes).cast::<[*mut ffi::PyObject; 2]>();
            (0..self.nentries.min(head.nentries) as usize)
                .map(|i| {
                    let k = (*entries.add(i))[0];
                    Bound::from_borrowed_ptr_or_opt(py, k).and_then(|k| k.downcast_into::<PyString>().ok())
                })
                .collect()
        }
    }
}

/// The GIL token during a garbage-collector traversal, which pyo3 does not hand to
/// `__traverse__`: CPython's collector holds the GIL while it traverses, and a `PyVisit`
/// exists only then. For reading `GILProtected` state, not for calling into Python.
pub fn traverse_token<'a>(_visit: &pyo3::PyVisit<'a>) -> Python<'a> {
    // SAFETY: a PyVisit is made only for a tp_traverse call, which CPython makes with the GIL
    // held, and lives no longer than that call.
    unsafe { Python::assume_gil_acquired() }
}
