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
//!    every `FULL_SCAN_EVERY`);
//! 2. waits with the GIL released, in slices of at most a second so that signal handlers
//!    (Ctrl-C) run;
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

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple, PyType};
use sockloop::poller::{Event, Interest, Selector};
use sockloop::Backend;
use std::collections::{HashMap, HashSet};
use std::io;
use std::io::{Read, Write};
use std::os::fd::{BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// The longest single wait with the GIL released: signal handlers run between slices.
const SLICE: Duration = Duration::from_secs(1);

/// Errors that mean "the peer went away" (asyncore's `_DISCONNECTED`).
fn is_disconnect(errno: i32) -> bool {
    [
        libc_errno::ECONNRESET,
        libc_errno::ENOTCONN,
        libc_errno::ESHUTDOWN,
        libc_errno::ECONNABORTED,
        libc_errno::EPIPE,
        libc_errno::EBADF,
    ]
    .contains(&errno)
}

/// The few errno values this module needs.
mod libc_errno {
    pub const EBADF: i32 = libc::EBADF;
    pub const EPIPE: i32 = libc::EPIPE;
    pub const ENOTCONN: i32 = libc::ENOTCONN;
    pub const ESHUTDOWN: i32 = libc::ESHUTDOWN;
    pub const ECONNABORTED: i32 = libc::ECONNABORTED;
    pub const ECONNRESET: i32 = libc::ECONNRESET;
}

/// One channel as registered: the object whose answers made the interest.
struct Entry {
    obj: Py<PyAny>,
    interest: Interest,
    token: u64,
    seen: u64,
}

/// What a channel's `readable()`/`writable()` methods are, decided once per Python type.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Anything else: call the methods.
    Python,
    /// `dispatcher.readable` and `dispatcher.writable` (both always true).
    Plain,
    /// `dispatcher.readable` and `dispatcher_with_send.writable`.
    WithSend,
}

/// Readiness and dispatch for one asyncore map.
#[pyclass(module = "sockloop._core")]
struct Poller {
    sel: Selector,
    entries: HashMap<RawFd, Entry>,
    events: Vec<Event>,
    generation: u32,
    pass_no: u64,
    /// `(ExitNow, KeyboardInterrupt, SystemExit)`.
    reraised: Py<PyTuple>,
    /// `handle_error_in_except(obj, exc)`: calls `obj.handle_error()` with `exc` being handled.
    on_error: Py<PyAny>,
    /// `(dispatcher.readable, dispatcher.writable, dispatcher_with_send.writable)` as found on
    /// the classes, to recognise channels whose answers need no Python call.
    builtins: Option<(Py<PyAny>, Py<PyAny>, Py<PyAny>)>,
    /// Per type (kept alive here, so its address is not reused by another type).
    kinds: HashMap<usize, (Py<PyType>, Kind)>,
    /// `os.fstat`, to find descriptors closed behind the loop's back (select refuses the set;
    /// epoll silently forgets a closed descriptor, so it is checked every [`SLICE`]).
    fstat: Py<PyAny>,
    last_sweep: Instant,
    /// `asyncore.SocketMap`: maps of exactly this type log their changes, so a pass looks only
    /// at what changed (see [`Poller::pass`]).
    tracked_type: Option<Py<PyType>>,
    /// The map's `_sockloop_epoch` at the last full scan (`None`: no scan yet).
    epoch: Option<i64>,
    /// How much of the map's `_sockloop_log` has been read.
    cursor: usize,
    last_full: Instant,
    /// Channels whose answers come from Python methods: asked every pass.
    volatile: HashSet<RawFd>,
    /// Channels dispatched to in the last pass: their state may have changed.
    touched: Vec<RawFd>,
    /// Read end of the wake pair (a sockloop addition): a byte written to the other end, by
    /// [`Waker::wake`] from any thread, ends the current wait.
    wake_rx: Option<UnixStream>,
    waker: Py<Waker>,
    /// `_run_timers(map)` (Python): runs the due `call_later` callbacks of a `SocketMap`.
    run_timers: Option<Py<PyAny>>,
    /// `time.monotonic`, the clock of the timers' deadlines.
    monotonic: Py<PyAny>,
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

/// A tracked map is still scanned whole this often, for state changed behind the package's
/// back (an attribute assigned directly from outside the channel's own handlers).
const FULL_SCAN_EVERY: Duration = Duration::from_millis(100);
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
    #[pyo3(signature = (backend, reraised, on_error, builtins=None, tracked_type=None, run_timers=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        backend: &str,
        reraised: Py<PyTuple>,
        on_error: Py<PyAny>,
        builtins: Option<(Py<PyAny>, Py<PyAny>, Py<PyAny>)>,
        tracked_type: Option<Py<PyType>>,
        run_timers: Option<Py<PyAny>>,
    ) -> PyResult<Poller> {
        let backend = Backend::parse(backend).ok_or_else(|| {
            PyValueError::new_err(format!("unknown backend {backend:?}: auto, select, poll or epoll"))
        })?;
        let mut sel = Selector::new(backend).map_err(to_py_err)?;
        // The wake pair. select cannot watch a descriptor past 1023: then there is no waking.
        let (wake_rx, wake_tx) = match UnixStream::pair() {
            Ok((rx, tx)) => {
                use std::os::fd::AsFd;
                let ok = rx.set_nonblocking(true).is_ok()
                    && tx.set_nonblocking(true).is_ok()
                    && sel.set_interest(rx.as_fd(), WAKE_TOKEN, Interest::READ).is_ok();
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
        let fstat = py.import("os")?.getattr("fstat")?.unbind();
        Ok(Poller {
            sel,
            entries: HashMap::new(),
            events: Vec::with_capacity(256),
            generation: 0,
            pass_no: 0,
            reraised,
            on_error,
            builtins,
            kinds: HashMap::new(),
            fstat,
            last_sweep: Instant::now(),
            tracked_type,
            epoch: None,
            cursor: 0,
            last_full: Instant::now(),
            volatile: HashSet::new(),
            touched: Vec::new(),
            wake_rx,
            waker,
            run_timers,
            monotonic,
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

    /// How many descriptors are registered (for tests).
    fn __len__(&self) -> usize {
        self.entries.len()
    }

    /// Forgets every registration (and the objects it holds).
    fn clear(&mut self) {
        for (fd, _) in self.entries.drain() {
            forget(&mut self.sel, fd);
        }
        self.volatile.clear();
        self.touched.clear();
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
    fn kind(&mut self, obj: &Bound<'_, PyAny>) -> PyResult<Kind> {
        let ty = obj.get_type();
        let key = ty.as_ptr() as usize;
        if let Some((_, k)) = self.kinds.get(&key) {
            return Ok(*k);
        }
        let py = obj.py();
        let kind = match &self.builtins {
            None => Kind::Python,
            Some((readable, writable, ws_writable)) => {
                let r = ty.getattr("readable").ok();
                let w = ty.getattr("writable").ok();
                let is = |a: &Option<Bound<'_, PyAny>>, b: &Py<PyAny>| {
                    a.as_ref().is_some_and(|a| a.is(b.bind(py)))
                };
                if !is(&r, readable) {
                    Kind::Python
                } else if is(&w, writable) {
                    Kind::Plain
                } else if is(&w, ws_writable) {
                    Kind::WithSend
                } else {
                    Kind::Python
                }
            }
        };
        // The cache holds the type, so no other type can take its address while it is here.
        self.kinds.insert(key, (ty.clone().unbind(), kind));
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
        let fast = match kind {
            Kind::Python => None,
            _ => obj
                .getattr(intern!(py, "__dict__"))
                .ok()
                .and_then(|d| d.downcast_into::<PyDict>().ok())
                .filter(|d| {
                    !d.contains(intern!(py, "readable")).unwrap_or(true)
                        && !d.contains(intern!(py, "writable")).unwrap_or(true)
                }),
        };
        let volatile = fast.is_none();
        let (read, write) = match (kind, fast) {
            (Kind::Plain, Some(_)) => (true, true),
            (Kind::WithSend, Some(d)) => {
                let connected = match d.get_item(intern!(py, "connected"))? {
                    Some(v) => v.is_truthy()?,
                    None => obj.getattr(intern!(py, "connected"))?.is_truthy()?,
                };
                let pending = match d.get_item(intern!(py, "out_buffer"))? {
                    Some(v) => v.len()? > 0,
                    None => obj.getattr(intern!(py, "out_buffer"))?.len()? > 0,
                };
                (true, !connected || pending)
            }
            _ => {
                let r = obj.call_method0(intern!(py, "readable"))?.is_truthy()?;
                let w = obj.call_method0(intern!(py, "writable"))?.is_truthy()?;
                (r, w)
            }
        };
        let write = write && !obj.getattr(intern!(py, "accepting"))?.is_truthy()?;
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
            forget(&mut self.sel, fd);
        }
        self.generation = self.generation.wrapping_add(1);
        let token = (u64::from(self.generation) << 32) | u64::from(fd as u32);
        let entry = Entry { obj: obj.clone().unbind(), interest, token, seen: self.pass_no };
        self.entries.insert(fd, entry);
        match watch(&mut self.sel, fd, token, interest) {
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
        if volatile {
            self.volatile.insert(fd);
        } else {
            self.volatile.remove(&fd);
        }
        match self.entries.get_mut(&fd) {
            Some(e) if e.obj.is(obj) => {
                e.seen = pass;
                if e.interest != interest {
                    let token = e.token;
                    e.interest = interest;
                    if watch(&mut self.sel, fd, token, interest).is_err() {
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
            forget(&mut self.sel, fd);
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
        self.last_full = Instant::now();
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
        if fresh {
            fds.append(&mut self.touched);
            fds.extend(self.volatile.iter().copied());
            for i in self.cursor..len {
                if let Ok(fd) = log.get_item(i)?.extract::<RawFd>() {
                    fds.push(fd);
                }
            }
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
            match map.get_item(fd)? {
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

    fn pass(&mut self, py: Python<'_>, map: &Bound<'_, PyDict>, timeout: Option<f64>) -> PyResult<()> {
        self.pass_no += 1;
        let mut invalid: Vec<u64> = Vec::new();
        let tracked = self.tracked_type.as_ref().is_some_and(|t| map.get_type().is(t.bind(py)));
        if !(tracked && self.changed_scan(map, &mut invalid)?) {
            self.full_scan(map, &mut invalid)?;
        }

        self.events.clear();
        for token in invalid {
            self.events.push(Event { token, invalid: true, ..Event::default() });
        }
        // Timers (SocketMap only): the wait ends at the first deadline.
        let timers = if tracked && self.run_timers.is_some() {
            let list = map.getattr(intern!(py, "_sockloop_timers"))?.downcast_into::<PyList>()?;
            (!list.is_empty()).then_some(list)
        } else {
            None
        };
        let mut timeout = timeout;
        if let Some(list) = &timers {
            let first: f64 = list.get_item(0)?.get_item(0)?.extract()?;
            let now: f64 = self.monotonic.bind(py).call0()?.extract()?;
            let left = (first - now).max(0.0);
            timeout = Some(timeout.map_or(left, |t| t.min(left)));
        }
        if self.events.is_empty() {
            self.wait(py, timeout)?;
        }
        if self.events.iter().any(|e| e.token == WAKE_TOKEN) {
            self.events.retain(|e| e.token != WAKE_TOKEN);
            if let Some(rx) = &self.wake_rx {
                let mut buf = [0u8; 256];
                while matches!((&*rx).read(&mut buf), Ok(n) if n > 0) {}
            }
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

    fn wait(&mut self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let deadline = timeout.map(|t| {
            Instant::now() + Duration::from_secs_f64(if t.is_finite() && t > 0.0 { t.min(1e9) } else { 0.0 })
        });
        loop {
            let slice = match deadline {
                None => SLICE,
                Some(d) => d.saturating_duration_since(Instant::now()).min(SLICE),
            };
            if self.sel.backend() == Backend::Epoll && self.last_sweep.elapsed() >= SLICE {
                // epoll drops a descriptor closed behind the loop's back without a word:
                // look for such descriptors once per second of waiting.
                self.last_sweep = Instant::now();
                self.find_closed(py)?;
                if !self.events.is_empty() {
                    return Ok(());
                }
            }
            let (sel, events) = (&mut self.sel, &mut self.events);
            let r = py.allow_threads(|| sel.wait(events, Some(slice)));
            match r {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc_errno::EBADF) => {
                    // select(2) refuses the whole set when one descriptor was closed behind
                    // the loop's back: find it and report it as POLLNVAL would.
                    self.find_closed(py)?;
                    return Ok(());
                }
                Err(e) => return Err(to_py_err(e)),
            }
            if !self.events.is_empty() {
                return Ok(());
            }
            py.check_signals()?;
            if deadline.is_some_and(|d| d <= Instant::now()) {
                return Ok(());
            }
        }
    }

    fn find_closed(&mut self, py: Python<'_>) -> PyResult<()> {
        let fstat = self.fstat.bind(py);
        let mut bad = Vec::new();
        for (fd, e) in &self.entries {
            if e.interest.is_empty() {
                continue;
            }
            if let Err(err) = fstat.call1((*fd,)) {
                if err.is_instance_of::<PyOSError>(py) {
                    bad.push((*fd, e.token));
                } else {
                    return Err(err);
                }
            }
        }
        for (fd, token) in bad {
            forget(&mut self.sel, fd);
            if let Some(e) = self.entries.get_mut(&fd) {
                e.interest = Interest::NONE;
            }
            self.events.push(Event { token, invalid: true, ..Event::default() });
        }
        Ok(())
    }

    /// The object to dispatch `token`'s event to: the map's current value for the descriptor,
    /// provided it is still the object the registration was made for.
    fn target<'py>(&self, map: &Bound<'py, PyDict>, token: u64) -> PyResult<Option<Bound<'py, PyAny>>> {
        let fd = token_fd(token);
        let Some(entry) = self.entries.get(&fd) else { return Ok(None) };
        if entry.token != token {
            return Ok(None);
        }
        match map.get_item(fd)? {
            Some(obj) if obj.is(&entry.obj) => Ok(Some(obj)),
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
        if disconnect_closes && err.is_instance_of::<PyOSError>(py) {
            let errno =
                err.value(py).getattr(intern!(py, "errno")).ok().and_then(|v| v.extract::<i32>().ok());
            if errno.is_some_and(is_disconnect) {
                obj.call_method0(intern!(py, "handle_close"))?;
                return Ok(());
            }
        }
        self.on_error.bind(py).call1((obj, err.into_value(py)))?;
        Ok(())
    }

    /// poll and epoll: asyncore's `readwrite(obj, flags)` per event.
    fn dispatch_readwrite(&self, py: Python<'_>, map: &Bound<'_, PyDict>, events: &[Event]) -> PyResult<()> {
        for ev in events {
            let Some(obj) = self.target(map, ev.token)? else { continue };
            let run = || -> PyResult<()> {
                if ev.readable {
                    obj.call_method0(intern!(py, "handle_read_event"))?;
                }
                if ev.writable {
                    obj.call_method0(intern!(py, "handle_write_event"))?;
                }
                if ev.priority {
                    obj.call_method0(intern!(py, "handle_expt_event"))?;
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
        let phases: [(Pick, &Bound<'_, PyString>); 3] = [
            (|e| e.readable, intern!(py, "handle_read_event")),
            (|e| e.writable, intern!(py, "handle_write_event")),
            (|e| e.priority, intern!(py, "handle_expt_event")),
        ];
        for (pick, method) in phases {
            for ev in events.iter().filter(|e| pick(e)) {
                let Some(obj) = self.target(map, ev.token)? else { continue };
                if let Err(err) = obj.call_method0(method) {
                    self.handle_exception(py, &obj, err, false)?;
                }
            }
        }
        Ok(())
    }
}

/// The concrete backend `auto` stands for on this platform.
#[pyfunction]
fn default_backend() -> &'static str {
    Backend::Auto.resolve().name()
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Poller>()?;
    m.add_function(wrap_pyfunction!(default_backend, m)?)?;
    Ok(())
}

/// Watches a descriptor number from Python; a negative one (a closed socket) is `EBADF`.
fn watch(sel: &mut Selector, fd: RawFd, token: u64, interest: Interest) -> std::io::Result<()> {
    if fd < 0 {
        return Err(std::io::Error::from_raw_os_error(libc_errno::EBADF));
    }
    sel.set_interest(py_fd(fd), token, interest)
}

/// Stops watching a descriptor number from Python (errors mean it was not watched).
fn forget(sel: &mut Selector, fd: RawFd) {
    if fd >= 0 {
        let _ = sel.remove(py_fd(fd));
    }
}

/// A non-negative descriptor number from Python as the `BorrowedFd` the selector takes.
fn py_fd(fd: RawFd) -> BorrowedFd<'static> {
    // SAFETY: `fd` is not -1 (the callers check), and the number comes from a Python socket
    // object's fileno() that the map holds (or, when removing, held until now); a descriptor
    // Python closed behind the map's back makes the selector call fail with EBADF, which the
    // callers handle: the kernel checks every number, so a stale one is an error, never
    // memory unsafety.
    unsafe { BorrowedFd::borrow_raw(fd) }
}
