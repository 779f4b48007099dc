//! `sockloop._core`: the part of the Python package's asyncore that runs in Rust.
//!
//! A `Poller` serves one Python map (the plain `dict` of `fd -> dispatcher` that asyncore users
//! pass around). Each pass it
//! 1. asks the channels in the map `readable()` / `writable()` (a method a user overrides is
//!    called every pass, as CPython does; the package's own are answered here from the
//!    instance's state) and keeps each channel's interest registered in the kernel through
//!    [`sockloop::poller::Selector`], changing it only when an answer changes. A plain `dict`
//!    is scanned whole every pass; an `asyncore.SocketMap` logs its changes, so only the
//!    channels that changed, got an event or answer from Python are looked at (and all of them
//!    at least every `FULL_SCAN_EVERY`, during a wait too);
//! 2. waits with the GIL released. A signal (Python's wakeup descriptor is the wake pair
//!    while a loop runs in the main thread) or a `wake()` ends the OS wait: signal handlers
//!    run, interest is asked again, and the wait resumes with the time left (PEP 475), so
//!    such internal wake-ups never count as passes nor shorten the timeout;
//! 3. dispatches the events to `handle_read_event` / `handle_write_event` / `handle_expt_event`
//!    / `handle_close` following asyncore's `readwrite` (poll, epoll) or `read`/`write`/
//!    `_exception` (select), with `ExitNow`, `KeyboardInterrupt` and `SystemExit` propagating
//!    and any other exception going to the channel's `handle_error` (called from inside an
//!    `except` block, so `compact_traceback()` and a bare `raise` see the exception);
//! 4. runs the map's due `call_later` timers (a `SocketMap` addition). A `Waker` ends the wait
//!    from any thread.
//!
//! The map may change while a pass runs (handlers add and close channels, users replace
//! entries): an event is delivered only if the map still holds, at that moment, the very object
//! whose interest produced it, so a descriptor reused within a pass never gets an event meant for
//! its previous owner. Descriptors closed behind the loop's back get `handle_close` (as
//! `POLLNVAL` does) on every backend, never an exception out of the wait.

mod channel;
mod names;
mod sys;

use channel::{is_disconnect, os_errno, Channel, Field, Marks};
use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple, PyType, PyWeakrefReference};
use sockloop::poller::{Event, Interest, Selector};
use sockloop::Backend;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::io::{Read, Write};
use std::os::fd::RawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest single OS wait when signals cannot end it (no wakeup descriptor of ours):
/// signal handlers run between slices.
const SLICE: Duration = Duration::from_secs(1);
/// How often waiting on epoll looks for descriptors closed behind the loop's back (epoll
/// forgets them silently).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The few errno values this module needs.
mod libc_errno {
    pub const EBADF: i32 = libc::EBADF;
}

/// Keys here are descriptors and type addresses, not chosen by an adversary: a multiply
/// spreads them well enough, and SipHash costs more than the rest of a lookup.
#[derive(Default)]
struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_i32(&mut self, n: i32) {
        self.write_u64(n as u32 as u64);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;

/// One channel as registered: the object whose answers made the interest.
struct Entry {
    /// The object, held weakly when it can be: the map owns its channels, so one that leaves
    /// the map (closed) or a map that is abandoned is freed at once, as in CPython.
    obj: Holder,
    /// The descriptor as a Python int, made once: looking the map up with it allocates
    /// nothing (descriptors past 256 are not among Python's cached small ints).
    key: Py<PyAny>,
    interest: Interest,
    token: u64,
    seen: u64,
}

/// What a channel's `readable()`/`writable()` methods are, decided per Python type (and
/// checked again every pass, so a method reassigned on a class is seen).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Anything else: call the methods.
    Python,
    /// `dispatcher.readable` and `dispatcher.writable` (both always true).
    Plain,
    /// `dispatcher.readable` and `dispatcher_with_send.writable`.
    WithSend,
    /// `async_chat.readable` and `async_chat.writable`.
    Chat,
}

/// Readiness and dispatch for one asyncore map.
#[pyclass(module = "sockloop._core")]
struct Poller {
    sel: Selector,
    entries: FastMap<RawFd, Entry>,
    events: Vec<Event>,
    generation: u32,
    pass_no: u64,
    /// `(ExitNow, KeyboardInterrupt, SystemExit)`.
    reraised: Py<PyTuple>,
    /// `handle_error_in_except(obj, exc)`: calls `obj.handle_error()` with `exc` being handled.
    on_error: Py<PyAny>,
    /// The package's own methods as taken at import (`readable`, `writable`, `ws_writable`,
    /// `chat_readable`, `chat_writable`, `read_event`, `write_event`), to recognise channels
    /// whose answers and event state machine need no Python frame.
    builtins: Option<Py<PyDict>>,
    /// Per type (kept alive here, so its address is not reused by another type): the kind and
    /// the `readable`/`writable` attributes it was decided from.
    kinds: FastMap<usize, TypeKind>,
    /// When epoll last looked for descriptors closed behind the loop's back.
    last_sweep: Instant,
    /// Whether a signal ends the OS wait (the Python side made the wake pair the process's
    /// signal wakeup descriptor); otherwise the wait is sliced.
    signals_wired: bool,
    /// `asyncore.SocketMap`: maps of exactly this type log their changes, so a pass looks only
    /// at what changed (see [`Poller::pass`]).
    tracked_type: Option<Py<PyType>>,
    /// The map's `_sockloop_epoch` at the last full scan (`None`: no scan yet).
    epoch: Option<i64>,
    /// How much of the map's `_sockloop_log` has been read.
    cursor: usize,
    last_full: Instant,
    /// Channels whose answers come from Python methods: asked every pass.
    volatile: HashSet<RawFd, BuildHasherDefault<IntHasher>>,
    /// Channels dispatched to in the last pass: their state may have changed.
    touched: Vec<RawFd>,
    /// Read end of the wake pair (a sockloop addition): a byte written to the other end, by
    /// [`Waker::wake`] from any thread, ends the current wait.
    wake_rx: Option<UnixStream>,
    waker: Py<Waker>,
    /// `_run_timers(map)` (Python): runs the due `call_later` callbacks of a `SocketMap`.
    run_timers: Option<Py<PyAny>>,
    /// `_drop_cancelled_first(map)` (Python): pops cancelled entries off the top of the heap.
    drop_cancelled: Option<Py<PyAny>>,
    /// `time.monotonic`, the clock of the timers' deadlines.
    monotonic: Py<PyAny>,
    /// Channels whose pending output changed through the package's own methods (they put
    /// their descriptor here; see [`channel`]).
    marks: Marks,
}

/// One entry of the per-type cache.
struct TypeKind {
    ty: Py<PyType>,
    kind: Kind,
    /// The type's `readable` and `writable`, as found when the kind was decided.
    attrs: [Option<Py<PyAny>>; 2],
    /// The type's version tag when this was last checked (0: none, checked every pass).
    tag: u32,
    /// Whether the type's `connected` and `accepting` are the native base's fields, whose
    /// assignment marks the channel.
    fields: bool,
}

const KIND_ATTRS: [&str; 2] = ["readable", "writable"];

enum Holder {
    Strong(Py<PyAny>),
    Weak(Py<PyWeakrefReference>),
}

impl Holder {
    /// A weak reference to `obj`, or `obj` itself when it cannot be weakly referenced.
    fn new(obj: &Bound<'_, PyAny>) -> Holder {
        match PyWeakrefReference::new(obj) {
            Ok(w) => Holder::Weak(w.unbind()),
            Err(_) => Holder::Strong(obj.clone().unbind()),
        }
    }

    /// Whether this is (still) `obj`.
    fn holds(&self, obj: &Bound<'_, PyAny>) -> bool {
        match self {
            Holder::Strong(o) => o.is(obj),
            Holder::Weak(w) => {
                // No new reference is made: compare the referent's address.
                let r = w.bind(obj.py());
                r.upgrade().is_some_and(|o| o.is(obj))
            }
        }
    }
}

/// Process-wide counters for profiling (`_core.stats()`). Every increment is made with the GIL
/// held, so a plain load and store (no locked instruction) loses none.
mod counters {
    use std::sync::atomic::{AtomicU64, Ordering};
    pub static PASSES: AtomicU64 = AtomicU64::new(0);
    pub static OS_WAITS: AtomicU64 = AtomicU64::new(0);
    pub static EVENTS: AtomicU64 = AtomicU64::new(0);
    pub static PY_INTEREST: AtomicU64 = AtomicU64::new(0);
    pub static NATIVE_INTEREST: AtomicU64 = AtomicU64::new(0);
    pub static WAKEUPS: AtomicU64 = AtomicU64::new(0);
    pub static FULL_SCANS: AtomicU64 = AtomicU64::new(0);
    pub fn bump(c: &AtomicU64, n: u64) {
        c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }
    pub fn all() -> [(&'static str, u64); 7] {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("passes", g(&PASSES)),
            ("os_waits", g(&OS_WAITS)),
            ("events", g(&EVENTS)),
            ("python_interest_calls", g(&PY_INTEREST)),
            ("native_interest_answers", g(&NATIVE_INTEREST)),
            ("internal_wakeups", g(&WAKEUPS)),
            ("full_scans", g(&FULL_SCANS)),
        ]
    }
}

/// The token of the wake pair's read end.
const WAKE_TOKEN: u64 = u64::MAX - 1; // below Selector::WAKE_TOKEN, which the selector keeps

/// Wakes a [`Poller`]'s wait from any thread (sockloop addition): `asyncore.wake(map)` uses it.
#[pyclass(module = "sockloop._core", frozen)]
struct Waker {
    tx: Option<UnixStream>,
}

#[pymethods]
impl Waker {
    /// Ends the poller's current (or next) wait. Never blocks; safe from any thread.
    fn wake(&self) {
        if let Some(tx) = &self.tx {
            // A full pipe already holds a wake-up: nothing to add.
            let _ = (&*tx).write(&[1]);
        }
    }
}

/// A tracked map is still scanned whole this often, while waiting too, for state changed
/// behind the package's back (`connected` or `accepting` assigned from outside, a
/// `readable`/`writable` set on an instance). `out_buffer` assignments and the package's
/// own methods mark the channel at once.
const FULL_SCAN_EVERY: Duration = Duration::from_secs(1);
/// The change log is emptied once it is this long.
const LOG_LIMIT: usize = 4096;

fn to_py_err(e: io::Error) -> PyErr {
    if e.kind() == io::ErrorKind::InvalidInput {
        PyValueError::new_err(e.to_string())
    } else {
        PyErr::from(e)
    }
}

fn token_fd(token: u64) -> RawFd {
    token as u32 as RawFd
}

#[pymethods]
impl Poller {
    /// `Poller(backend, reraised, on_error, builtins=None)`.
    #[new]
    #[pyo3(signature = (backend, reraised, on_error, builtins=None, tracked_type=None, run_timers=None, drop_cancelled=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        backend: &str,
        reraised: Py<PyTuple>,
        on_error: Py<PyAny>,
        builtins: Option<Py<PyDict>>,
        tracked_type: Option<Py<PyType>>,
        run_timers: Option<Py<PyAny>>,
        drop_cancelled: Option<Py<PyAny>>,
    ) -> PyResult<Poller> {
        let backend = Backend::parse(backend).ok_or_else(|| {
            PyValueError::new_err(format!("unknown backend {backend:?}: auto, select, poll or epoll"))
        })?;
        let mut sel = Selector::new(backend).map_err(to_py_err)?;
        // The wake pair. select cannot watch a descriptor past 1023: then there is no waking.
        let (wake_rx, wake_tx) = match UnixStream::pair() {
            Ok((rx, tx)) => {
                use std::os::fd::AsRawFd;
                // select cannot watch a descriptor past FD_SETSIZE: move the read end lower.
                let rx = if sel.backend() == Backend::Select { sys::lowest_fd(rx) } else { rx };
                if rx.as_raw_fd() >= 1024 && sel.backend() == Backend::Select {
                    py.import("warnings")?.call_method1(
                        "warn",
                        (
                            "sockloop: no descriptor below 1024 is free for the select backend's \
                          wake-up pair: wake(), call_later() from other threads and signals \
                          cannot end a wait early (it is sliced to 1 s instead)",
                            py.get_type::<pyo3::exceptions::PyRuntimeWarning>(),
                        ),
                    )?;
                }
                let ok = rx.set_nonblocking(true).is_ok()
                    && tx.set_nonblocking(true).is_ok()
                    && sel.set_interest(std::os::fd::AsFd::as_fd(&rx), WAKE_TOKEN, Interest::READ).is_ok();
                if ok {
                    (Some(rx), Some(tx))
                } else {
                    (None, None)
                }
            }
            Err(_) => (None, None),
        };
        let waker = Py::new(py, Waker { tx: wake_tx })?;
        let monotonic = py.import("time")?.getattr("monotonic")?.unbind();
        Ok(Poller {
            sel,
            entries: FastMap::default(),
            events: Vec::with_capacity(256),
            generation: 0,
            pass_no: 0,
            reraised,
            on_error,
            builtins,
            kinds: FastMap::default(),
            last_sweep: Instant::now(),
            signals_wired: false,
            tracked_type,
            epoch: None,
            cursor: 0,
            last_full: Instant::now(),
            volatile: HashSet::default(),
            touched: Vec::new(),
            wake_rx,
            waker,
            run_timers,
            drop_cancelled,
            monotonic,
            marks: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// The concrete backend: `select`, `poll` or `epoll`.
    #[getter]
    fn backend(&self) -> &'static str {
        self.sel.backend().name()
    }

    /// The [`Waker`] of this poller.
    #[getter]
    fn waker(&self, py: Python<'_>) -> Py<Waker> {
        self.waker.clone_ref(py)
    }

    /// The descriptor to give `signal.set_wakeup_fd` (the wake pair's write end), or -1.
    #[getter]
    fn signal_fd(&self) -> RawFd {
        use std::os::fd::AsRawFd;
        match (&self.wake_rx, &self.waker.get().tx) {
            (Some(_), Some(tx)) => tx.as_raw_fd(),
            _ => -1,
        }
    }

    /// Whether a signal ends the OS wait (see [`Poller::signal_fd`]).
    #[setter]
    fn set_signals_wired(&mut self, on: bool) {
        self.signals_wired = on;
    }

    /// How many descriptors are registered (for tests).
    fn __len__(&self) -> usize {
        self.entries.len()
    }

    /// Between calls: the registrations stay in the kernel; the next pass scans the whole
    /// map (it may be another map that got the same `id()`).
    fn detach(&mut self) {
        self.touched.clear();
        self.epoch = None;
    }

    /// Forgets every registration (and the objects it holds).
    fn clear(&mut self) {
        for (fd, _) in self.entries.drain() {
            sel_forget(&mut self.sel, fd);
        }
        self.volatile.clear();
        self.touched.clear();
        self.kinds.clear();
        self.epoch = None;
    }

    /// One pass over `map`: asyncore's `poll(timeout, map)` / `poll2(timeout, map)`.
    /// `timeout` in seconds; `None` waits without limit.
    #[pyo3(signature = (map, timeout=None))]
    fn poll(&mut self, py: Python<'_>, map: &Bound<'_, PyDict>, timeout: Option<f64>) -> PyResult<()> {
        self.pass(py, map, timeout)
    }

    /// asyncore's `loop`: passes until `map` is empty, or `count` passes.
    #[pyo3(signature = (map, timeout=None, count=None))]
    fn run(
        &mut self,
        py: Python<'_>,
        map: &Bound<'_, PyDict>,
        timeout: Option<f64>,
        count: Option<i64>,
    ) -> PyResult<()> {
        match count {
            None => {
                while !map.is_empty() {
                    self.pass(py, map, timeout)?;
                }
            }
            Some(mut n) => {
                while !map.is_empty() && n > 0 {
                    self.pass(py, map, timeout)?;
                    n -= 1;
                }
            }
        }
        if map.is_empty() {
            self.clear();
        }
        Ok(())
    }
}

impl Poller {
    /// Drops the cached kinds of types whose `readable`/`writable` were reassigned since, and
    /// asks for a full scan when any was (their channels' answers may differ now).
    fn verify_kinds(&mut self, py: Python<'_>) {
        let same = |now: Option<Bound<'_, PyAny>>, then: &Option<Py<PyAny>>| match (now, then) {
            (Some(a), Some(b)) => a.is(b),
            (None, None) => true,
            _ => false,
        };
        let mut rescan = false;
        let probe = names::Name::Recv.text(py);
        self.kinds.retain(|_, tk| {
            let ty = tk.ty.bind(py);
            // Nothing of the class or its bases was assigned since: nothing to look at.
            let (_, tag) = sys::type_and_tag(ty, probe);
            if tag != 0 && tag == tk.tag {
                return true;
            }
            if !KIND_ATTRS.iter().zip(&tk.attrs).all(|(name, then)| same(ty.getattr(*name).ok(), then)) {
                rescan = true;
                return false;
            }
            let fields = channel::class_uses_fields(ty);
            rescan |= fields != tk.fields;
            tk.fields = fields;
            tk.tag = tag;
            true
        });
        if rescan {
            self.epoch = None;
        }
    }

    fn kind(&mut self, obj: &Bound<'_, PyAny>) -> PyResult<Kind> {
        let ty = obj.get_type();
        let key = ty.as_ptr() as usize;
        if let Some(tk) = self.kinds.get(&key) {
            return Ok(tk.kind);
        }
        let py = obj.py();
        let found: Vec<Option<Bound<'_, PyAny>>> = KIND_ATTRS.iter().map(|n| ty.getattr(*n).ok()).collect();
        let own = |i: usize, key: &str| -> bool {
            let Some(b) = &self.builtins else { return false };
            match (found[i].as_ref(), b.bind(py).get_item(key).ok().flatten()) {
                (Some(a), Some(b)) => a.is(&b),
                _ => false,
            }
        };
        let kind = if own(0, "readable") && own(1, "writable") {
            Kind::Plain
        } else if own(0, "readable") && own(1, "ws_writable") {
            Kind::WithSend
        } else if own(0, "chat_readable") && own(1, "chat_writable") {
            Kind::Chat
        } else {
            Kind::Python
        };
        // The cache holds the type, so no other type can take its address while it is here.
        let mut attrs = found.into_iter().map(|a| a.map(Bound::unbind));
        let attrs = [(); 2].map(|_| attrs.next().flatten());
        let (_, tag) = sys::type_and_tag(&ty, names::Name::Recv.text(py));
        let fields = channel::class_uses_fields(&ty);
        let entry = TypeKind { ty: ty.clone().unbind(), kind, attrs, tag, fields };
        self.kinds.insert(key, entry);
        Ok(kind)
    }

    /// The channel's interest, as asyncore computes it (`writable()` only counts while the
    /// channel is not accepting).
    /// The interest, and whether it came from Python methods (then it is asked every pass).
    fn interest(&mut self, obj: &Bound<'_, PyAny>) -> PyResult<(Interest, bool)> {
        let py = obj.py();
        let kind = self.kind(obj)?;
        // The package's own methods, not shadowed by an instance attribute, are answered here
        // from the instance's state; anything else is asked in Python, as CPython does.
        let fast = kind != Kind::Python && channel::interest_unshadowed(obj);
        let volatile = !fast;
        if !volatile {
            counters::bump(&counters::NATIVE_INTEREST, 1);
        }
        let (read, write) = match (kind, fast) {
            (Kind::Plain, true) => (true, true),
            (Kind::WithSend, true) => {
                let connected = channel::flag_of(obj, Field::Connected)?;
                let pending = match channel::as_channel(obj) {
                    Some(ch) => Channel::pending_out(ch)?,
                    None => obj.getattr(intern!(py, "out_buffer"))?.is_truthy()?,
                };
                (true, !connected || pending)
            }
            (Kind::Chat, true) => {
                let connected = channel::flag_of(obj, Field::Connected)?;
                (true, !connected || channel::chat_queued(obj)?)
            }
            _ => {
                counters::bump(&counters::PY_INTEREST, 2);
                let r = obj.call_method0(intern!(py, "readable"))?.is_truthy()?;
                let w = obj.call_method0(intern!(py, "writable"))?.is_truthy()?;
                (r, w)
            }
        };
        let write = write && !channel::flag_of(obj, Field::Accepting)?;
        Ok((Interest { read, write }, volatile))
    }

    fn register(
        &mut self,
        fd: RawFd,
        obj: &Bound<'_, PyAny>,
        interest: Interest,
        invalid: &mut Vec<u64>,
    ) -> PyResult<()> {
        if let Some(old) = self.entries.remove(&fd) {
            drop(old);
            sel_forget(&mut self.sel, fd);
        }
        self.generation = self.generation.wrapping_add(1);
        let token = (u64::from(self.generation) << 32) | u64::from(fd as u32);
        let key = fd.into_pyobject(obj.py())?.into_any().unbind();
        let entry = Entry { obj: Holder::new(obj), key, interest, token, seen: self.pass_no };
        self.entries.insert(fd, entry);
        match sel_watch(&mut self.sel, fd, token, interest) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc_errno::EBADF) || fd < 0 => {
                // Closed behind the loop's back: it gets handle_close, as POLLNVAL would say.
                self.entries.get_mut(&fd).expect("just inserted").interest = Interest::NONE;
                invalid.push(token);
                Ok(())
            }
            Err(e) => {
                self.entries.remove(&fd);
                Err(to_py_err(e))
            }
        }
    }

    /// Brings one channel's registration up to date with its current answers.
    fn reconcile(&mut self, fd: RawFd, obj: &Bound<'_, PyAny>, invalid: &mut Vec<u64>) -> PyResult<()> {
        let pass = self.pass_no;
        let (interest, volatile) = self.interest(obj)?;
        if let Some(ch) = channel::as_channel(obj) {
            if let Ok(mut c) = ch.get().write(ch.py()) {
                c.attach(&self.marks, fd, interest.write);
            }
        }
        if volatile {
            self.volatile.insert(fd);
        } else {
            self.volatile.remove(&fd);
        }
        match self.entries.get_mut(&fd) {
            Some(e) if e.obj.holds(obj) => {
                e.seen = pass;
                if e.interest != interest {
                    let token = e.token;
                    e.interest = interest;
                    if sel_watch(&mut self.sel, fd, token, interest).is_err() {
                        // The descriptor was closed and reopened under the same object:
                        // start over.
                        self.register(fd, obj, interest, invalid)?;
                    }
                }
            }
            _ => self.register(fd, obj, interest, invalid)?,
        }
        Ok(())
    }

    fn forget(&mut self, fd: RawFd) {
        if self.entries.remove(&fd).is_some() {
            sel_forget(&mut self.sel, fd);
        }
        self.volatile.remove(&fd);
    }

    /// Every channel of the map, as CPython's asyncore does each pass.
    fn full_scan(&mut self, map: &Bound<'_, PyDict>, invalid: &mut Vec<u64>) -> PyResult<()> {
        let pass = self.pass_no;
        // A snapshot: readable()/writable() may change the map.
        let items: Vec<(Bound<'_, PyAny>, Bound<'_, PyAny>)> = map.iter().collect();
        for (key, obj) in &items {
            let fd: RawFd = key.extract()?;
            self.reconcile(fd, obj, invalid)?;
        }
        drop(items);
        // Channels that left the map.
        let gone: Vec<RawFd> =
            self.entries.iter().filter(|(_, e)| e.seen != pass).map(|(fd, _)| *fd).collect();
        for fd in gone {
            self.forget(fd);
        }
        self.touched.clear();
        if let Ok(mut q) = self.marks.lock() {
            q.clear();
        }
        self.last_full = Instant::now();
        counters::bump(&counters::FULL_SCANS, 1);
        Ok(())
    }

    /// A tracked map (`SocketMap`): only the channels that changed since the last pass, those
    /// dispatched to in it, and those whose answers come from Python. Returns false when a full
    /// scan is needed instead.
    fn changed_scan(&mut self, map: &Bound<'_, PyDict>, invalid: &mut Vec<u64>) -> PyResult<bool> {
        let py = map.py();
        let epoch: i64 = map.getattr(intern!(py, "_sockloop_epoch"))?.extract()?;
        let log = map.getattr(intern!(py, "_sockloop_log"))?.downcast_into::<PyList>()?;
        let len = log.len();
        let fresh =
            self.epoch == Some(epoch) && self.cursor <= len && self.last_full.elapsed() < FULL_SCAN_EVERY;
        let mut fds: Vec<RawFd> = Vec::new();
        let marked = match self.marks.lock() {
            Ok(mut q) => std::mem::take(&mut *q),
            Err(_) => Vec::new(),
        };
        if fresh {
            fds.extend(marked);
            fds.extend(self.volatile.iter().copied());
            for i in self.cursor..len {
                if let Ok(fd) = log.get_item(i)?.extract::<RawFd>() {
                    fds.push(fd);
                }
            }
            // A channel that only got an event is looked at again unless nothing its answers
            // depend on can have changed without marking it.
            fds.sort_unstable();
            let sure = fds.len();
            let touched = std::mem::take(&mut self.touched);
            for fd in touched {
                if fds[..sure].binary_search(&fd).is_err() && !self.unchanged(py, fd) {
                    fds.push(fd);
                }
            }
        } else {
            self.touched.clear();
        }
        // Read up to here; empty a long log (other pollers of this map then scan it whole).
        let epoch = if len > LOG_LIMIT {
            log.call_method0(intern!(py, "clear"))?;
            map.setattr(intern!(py, "_sockloop_epoch"), epoch + 1)?;
            self.cursor = 0;
            epoch + 1
        } else {
            self.cursor = len;
            epoch
        };
        self.epoch = Some(epoch);
        if !fresh {
            return Ok(false);
        }
        fds.sort_unstable();
        fds.dedup();
        for fd in fds {
            let found = match self.entries.get(&fd) {
                Some(e) => map.get_item(e.key.bind(py))?,
                None => map.get_item(fd)?,
            };
            match found {
                Some(obj) => {
                    if let Some(e) = self.entries.get_mut(&fd) {
                        e.seen = self.pass_no;
                    }
                    self.reconcile(fd, &obj, invalid)?
                }
                None => self.forget(fd),
            }
        }
        Ok(true)
    }

    /// Whether the channel registered at `fd`, which got an event this pass and is not marked,
    /// still has the interest it is registered with, for sure: a `dispatcher`,
    /// `dispatcher_with_send` or `async_chat` whose class leaves `readable`, `writable`,
    /// `connected` and `accepting` to the package (checked against the class's version tag),
    /// with no `readable`/`writable` of its own and state that only assignment changes
    /// ([`Channel::state_is_plain`]; each such assignment marks it); for `async_chat` the
    /// queue, which can change in place, is asked again.
    fn unchanged(&self, py: Python<'_>, fd: RawFd) -> bool {
        let Some(e) = self.entries.get(&fd) else { return false };
        let Holder::Weak(w) = &e.obj else { return false };
        let Some(obj) = w.bind(py).upgrade() else { return false };
        let Some(ch) = channel::as_channel(&obj) else { return false };
        let (ty, tag) = sys::class_and_tag(&obj);
        let Some(tk) = self.kinds.get(&ty) else { return false };
        if tk.kind == Kind::Python || !tk.fields || tag == 0 || tag != tk.tag {
            return false;
        }
        let (connected, accepting) = match ch.get().read(ch.py()) {
            Ok(c) if !c.is_marked() && c.state_is_plain(py) => c.plain_flags(py),
            _ => return false,
        };
        if !channel::interest_unshadowed(&obj) {
            return false;
        }
        if tk.kind != Kind::Chat {
            return true;
        }
        // async_chat's queue is a deque its users may change in place: ask it, and compare
        // with what is registered.
        match channel::chat_queued(&obj) {
            Ok(queued) => e.interest == Interest { read: true, write: (!connected || queued) && !accepting },
            Err(_) => false,
        }
    }

    /// Brings the registrations up to date with the map: only what changed on a tracked map
    /// (unless a full scan is due), everything on a plain `dict`.
    fn scan(&mut self, map: &Bound<'_, PyDict>, tracked: bool, invalid: &mut Vec<u64>) -> PyResult<()> {
        // changed_scan declines (false) when a whole scan is due or the log cannot be trusted.
        if !(tracked && self.changed_scan(map, invalid)?) {
            self.full_scan(map, invalid)?;
        }
        Ok(())
    }

    /// The first timer deadline of a tracked map, as an [`Instant`].
    fn first_timer(&self, py: Python<'_>, map: &Bound<'_, PyDict>) -> PyResult<Option<Instant>> {
        if self.run_timers.is_none() {
            return Ok(None);
        }
        let list = map.getattr(intern!(py, "_sockloop_timers"))?.downcast_into::<PyList>()?;
        if list.is_empty() {
            return Ok(None);
        }
        // Entries are [when, seq, handle]; a cancelled one has None for its handle.
        if list.get_item(0)?.get_item(2)?.is_none() {
            if let Some(drop) = &self.drop_cancelled {
                drop.bind(py).call1((map,))?;
            }
            if list.is_empty() {
                return Ok(None);
            }
        }
        let first: f64 = list.get_item(0)?.get_item(0)?.extract()?;
        let now: f64 = self.monotonic.bind(py).call0()?.extract()?;
        Ok(Some(Instant::now() + seconds(first - now)))
    }

    fn pass(&mut self, py: Python<'_>, map: &Bound<'_, PyDict>, timeout: Option<f64>) -> PyResult<()> {
        self.pass_no += 1;
        counters::bump(&counters::PASSES, 1);
        let tracked = self.tracked_type.as_ref().is_some_and(|t| map.get_type().is(t.bind(py)));
        self.verify_kinds(py);
        let mut invalid: Vec<u64> = Vec::new();
        self.scan(map, tracked, &mut invalid)?;
        self.events.clear();
        for token in invalid {
            self.events.push(Event { token, invalid: true, ..Event::default() });
        }
        if self.events.is_empty() {
            let deadline = timeout.map(|t| Instant::now() + seconds(t));
            self.wait(py, map, tracked, deadline)?;
        }
        let events = std::mem::take(&mut self.events);
        // Whatever got an event may have changed its answers: look at it next pass.
        self.touched.extend(events.iter().map(|e| token_fd(e.token)));
        let result = if self.sel.backend() == Backend::Select {
            self.dispatch_select(py, map, &events)
        } else {
            self.dispatch_readwrite(py, map, &events)
        };
        self.events = events;
        self.events.clear();
        result?;
        // Due timers run after the pass's events (a timer added by a handler or another
        // thread is seen here too).
        if tracked {
            if let Some(run) = &self.run_timers {
                let list = map.getattr(intern!(py, "_sockloop_timers"))?.downcast_into::<PyList>()?;
                if !list.is_empty() {
                    run.bind(py).call1((map,))?;
                }
            }
        }
        Ok(())
    }

    /// Waits until a channel has an event, `deadline` passes or a timer is due. Wake-ups of
    /// our own (a signal, `wake()`, the periodic scan, epoll's sweep) are handled here and the
    /// wait goes on with the time left: they are not passes.
    fn wait(
        &mut self,
        py: Python<'_>,
        map: &Bound<'_, PyDict>,
        tracked: bool,
        deadline: Option<Instant>,
    ) -> PyResult<()> {
        let epoll = self.sel.backend() == Backend::Epoll;
        loop {
            // The user's deadline and the first timer end the wait; the rest only interrupt it.
            let timer = if tracked { self.first_timer(py, map)? } else { None };
            let until = earliest(deadline, timer);
            let mut inner = until;
            if tracked {
                inner = earliest(inner, Some(self.last_full + FULL_SCAN_EVERY));
            }
            if epoll {
                inner = earliest(inner, Some(self.last_sweep + SWEEP_EVERY));
            }
            if !self.signals_wired || self.wake_rx.is_none() {
                inner = earliest(inner, Some(Instant::now() + SLICE));
            }
            let slice = inner.map(|d| d.saturating_duration_since(Instant::now()));
            let (sel, events) = (&mut self.sel, &mut self.events);
            let r = py.allow_threads(|| sel.wait(events, slice));
            counters::bump(&counters::OS_WAITS, 1);
            match r {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc_errno::EBADF) => {
                    // select(2) refuses the whole set when one descriptor was closed behind
                    // the loop's back: find it and report it as POLLNVAL would.
                    self.find_closed();
                    return Ok(());
                }
                Err(e) => return Err(to_py_err(e)),
            }
            let woken = self.events.iter().any(|e| e.token == WAKE_TOKEN);
            counters::bump(&counters::EVENTS, self.events.len() as u64);
            if woken {
                self.events.retain(|e| e.token != WAKE_TOKEN);
                if let Some(rx) = &self.wake_rx {
                    let mut buf = [0u8; 256];
                    while matches!((&*rx).read(&mut buf), Ok(n) if n > 0) {}
                }
            }
            // Signal handlers run now (a KeyboardInterrupt leaves the loop), as PEP 475 says.
            py.check_signals()?;
            if !self.events.is_empty() {
                return Ok(());
            }
            let now = Instant::now();
            if until.is_some_and(|d| d <= now) {
                return Ok(());
            }
            counters::bump(&counters::WAKEUPS, 1);
            let mut invalid = Vec::new();
            if woken {
                // wake(): ask for interest again (another thread may have queued output).
                self.scan(map, tracked, &mut invalid)?;
            } else if tracked && now >= self.last_full + FULL_SCAN_EVERY {
                self.scan(map, tracked, &mut invalid)?;
            }
            for token in invalid {
                self.events.push(Event { token, invalid: true, ..Event::default() });
            }
            if epoll && now >= self.last_sweep + SWEEP_EVERY {
                self.last_sweep = now;
                self.find_closed();
            }
            if !self.events.is_empty() {
                return Ok(());
            }
        }
    }

    /// Descriptors closed behind the loop's back: each gets an `invalid` event (POLLNVAL).
    fn find_closed(&mut self) {
        let mut bad = Vec::new();
        for (fd, e) in &self.entries {
            if !e.interest.is_empty() && !sys::fd_is_open(*fd) {
                bad.push((*fd, e.token));
            }
        }
        for (fd, token) in bad {
            sel_forget(&mut self.sel, fd);
            if let Some(e) = self.entries.get_mut(&fd) {
                e.interest = Interest::NONE;
            }
            self.events.push(Event { token, invalid: true, ..Event::default() });
        }
    }

    /// The object to dispatch `token`'s event to: the map's current value for the descriptor,
    /// provided it is still the object the registration was made for.
    fn target<'py>(&self, map: &Bound<'py, PyDict>, token: u64) -> PyResult<Option<Bound<'py, PyAny>>> {
        let fd = token_fd(token);
        let Some(entry) = self.entries.get(&fd) else { return Ok(None) };
        if entry.token != token {
            return Ok(None);
        }
        match map.get_item(entry.key.bind(map.py()))? {
            Some(obj) if entry.obj.holds(&obj) => Ok(Some(obj)),
            _ => Ok(None),
        }
    }

    /// An exception out of a handler: re-raise `ExitNow`, `KeyboardInterrupt`, `SystemExit`;
    /// give anything else to `handle_error` (from inside an `except` block). With `readwrite`'s
    /// rules (`disconnect_closes`), an `OSError` that means the peer left calls `handle_close`.
    fn handle_exception(
        &self,
        py: Python<'_>,
        obj: &Bound<'_, PyAny>,
        err: PyErr,
        disconnect_closes: bool,
    ) -> PyResult<()> {
        if err.is_instance(py, self.reraised.bind(py)) {
            return Err(err);
        }
        if disconnect_closes && os_errno(py, &err).is_some_and(is_disconnect) {
            obj.call_method0(intern!(py, "handle_close"))?;
            return Ok(());
        }
        self.on_error.bind(py).call1((obj, err.into_value(py)))?;
        Ok(())
    }

    /// poll and epoll: asyncore's `readwrite(obj, flags)` per event.
    fn dispatch_readwrite(&self, py: Python<'_>, map: &Bound<'_, PyDict>, events: &[Event]) -> PyResult<()> {
        for ev in events {
            let Some(obj) = self.target(map, ev.token)? else { continue };
            let run = || -> PyResult<()> {
                // The package's own event methods run natively unless replaced (see channel).
                if ev.readable {
                    channel::deliver(&obj, names::Name::HandleReadEvent)?;
                }
                if ev.writable {
                    channel::deliver(&obj, names::Name::HandleWriteEvent)?;
                }
                if ev.priority {
                    channel::deliver(&obj, names::Name::HandleExptEvent)?;
                }
                if ev.hangup || ev.error || ev.invalid {
                    obj.call_method0(intern!(py, "handle_close"))?;
                }
                Ok(())
            };
            if let Err(err) = run() {
                self.handle_exception(py, &obj, err, true)?;
            }
        }
        Ok(())
    }

    /// select: asyncore's `read`, then `write`, then `_exception` over the ready lists, each
    /// looking the descriptor up in the map again (a handler may have closed it meanwhile).
    fn dispatch_select(&self, py: Python<'_>, map: &Bound<'_, PyDict>, events: &[Event]) -> PyResult<()> {
        for ev in events.iter().filter(|e| e.invalid) {
            let Some(obj) = self.target(map, ev.token)? else { continue };
            if let Err(err) = obj.call_method0(intern!(py, "handle_close")) {
                self.handle_exception(py, &obj, err, true)?;
            }
        }
        type Pick = fn(&Event) -> bool;
        let phases: [(Pick, names::Name); 3] = [
            (|e| e.readable, names::Name::HandleReadEvent),
            (|e| e.writable, names::Name::HandleWriteEvent),
            (|e| e.priority, names::Name::HandleExptEvent),
        ];
        for (pick, method) in phases {
            for ev in events.iter().filter(|e| pick(e)) {
                let Some(obj) = self.target(map, ev.token)? else { continue };
                if let Err(err) = channel::deliver(&obj, method) {
                    self.handle_exception(py, &obj, err, false)?;
                }
            }
        }
        Ok(())
    }
}

/// Seconds (any float) as a [`Duration`]: negative and NaN are zero, huge values capped.
fn seconds(t: f64) -> Duration {
    if t > 0.0 {
        Duration::from_secs_f64(t.min(1e9))
    } else {
        Duration::ZERO
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// Watches a descriptor number from Python; a negative one (a closed socket) is `EBADF`.
fn sel_watch(sel: &mut Selector, fd: RawFd, token: u64, interest: Interest) -> std::io::Result<()> {
    if fd < 0 {
        return Err(std::io::Error::from_raw_os_error(libc::EBADF));
    }
    sel.set_interest(sys::borrow_fd(fd), token, interest)
}

/// Stops watching a descriptor number from Python (an error means it was not watched).
fn sel_forget(sel: &mut Selector, fd: RawFd) {
    if fd >= 0 {
        let _ = sel.remove(sys::borrow_fd(fd));
    }
}

/// The process's loop counters (for profiling): passes, OS waits, events, interest answers
/// asked in Python or given natively, internal wake-ups, full scans.
#[pyfunction]
fn stats(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    for (k, v) in counters::all() {
        d.set_item(k, v)?;
    }
    Ok(d)
}

/// Which CPython layout of instance attributes the native methods read to tell that an
/// instance does not shadow a method (`"3.12"`, `"3.13"`), or `None`: they ask Python each time.
#[pyfunction]
fn _own_layout(py: Python<'_>) -> Option<&'static str> {
    names::own_layout(py)
}

/// The concrete backend `auto` stands for on this platform.
#[pyfunction]
fn default_backend() -> &'static str {
    Backend::Auto.resolve().name()
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Poller>()?;
    m.add_class::<Channel>()?;
    // Whether channels are made by `object.__new__` (so they get inline attribute values).
    m.add("_OBJECT_NEW", channel::install_fast_methods(m.py())?)?;
    m.add_function(wrap_pyfunction!(channel::register, m)?)?;
    m.add_function(wrap_pyfunction!(default_backend, m)?)?;
    m.add_function(wrap_pyfunction!(_own_layout, m)?)?;
    m.add_function(wrap_pyfunction!(stats, m)?)?;
    Ok(())
}
