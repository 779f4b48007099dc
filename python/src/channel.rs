//! `sockloop._core.Channel`: the native base class under `asyncore.dispatcher`.
//!
//! The Python classes (`dispatcher`, `dispatcher_with_send`, `async_chat`) subclass
//! [`Channel`] and take their hot methods from it: `recv`, `send`, `close`, `accept`, the
//! event state machine (`handle_read_event`, `handle_write_event`, `handle_expt_event`,
//! `handle_connect_event`, `handle_accept`), the output buffer of `dispatcher_with_send` and
//! the record splitting and output queue of `async_chat`. Those methods run here without a
//! Python frame.
//!
//! A method here that calls another method of the channel by name (`self.initiate_send()`,
//! `self.recv(...)`, ...) does what Python would: it looks the name up as a Python call does
//! (an instance attribute, a data descriptor or a class's own `__getattribute__` decide
//! first), and runs the method natively only when what it found is one of this class's own
//! method descriptors; a function of the class is called with the channel first, anything else
//! as it is. So a method replaced on a class, a base or an instance at any moment is honoured.
//! The usual answer (the class's method, nothing of that name on the instance) comes from
//! `names` without a call into the interpreter; anything else goes to `_PyObject_GetMethod`.
//!
//! State stays where Python code expects it, with two kinds of exception. `_fileno`, `_map`,
//! `terminator`, `incoming`, the buffer sizes ... are plain attributes, read and written here
//! with Python's own `getattr`/`setattr`, or read where `names` finds them when the class's
//! default is a plain value (never through `obj.__dict__`, which would turn the instance's
//! inline values into a dictionary). `connected`, `accepting`, `connecting`,
//! `debug`, `socket`, `ac_in_buffer` and `producer_fifo` are fields of the object behind data
//! descriptors ([`Field`]), and `out_buffer` too, because the loop must learn when they
//! change: the poller gives each channel of a `SocketMap` a queue of "marks", and a native
//! method (or an assignment) that makes a channel's interest disagree with what the kernel
//! watches puts the channel's descriptor on it.

use crate::names::{self, Found, Name};
use crate::sys::{self, call_method, recv_dontwait, send_dontwait};
use pyo3::exceptions::{
    PyAttributeError, PyBlockingIOError, PyOSError, PyRuntimeError, PyTypeError, PyValueError,
};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::{GILOnceCell, GILProtected};
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyMemoryView, PySlice, PyString, PyTuple, PyType};
use pyo3::{PyTraverseError, PyVisit};
use std::cell::{Ref, RefCell, RefMut};
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};

/// Descriptors whose pending output changed, for the poller that registered them.
pub type Marks = Arc<Mutex<Vec<RawFd>>>;

/// Errors that mean "the peer went away" (asyncore's `_DISCONNECTED`).
pub fn is_disconnect(errno: i32) -> bool {
    [libc::ECONNRESET, libc::ENOTCONN, libc::ESHUTDOWN, libc::ECONNABORTED, libc::EPIPE, libc::EBADF]
        .contains(&errno)
}

/// The `errno` of an `OSError`, `None` for any other exception.
pub fn os_errno(py: Python<'_>, err: &PyErr) -> Option<i32> {
    if !err.is_instance_of::<PyOSError>(py) {
        return None;
    }
    err.value(py).getattr(intern!(py, "errno")).ok()?.extract().ok()
}

/// The native base class of `asyncore.dispatcher`.
///
/// Frozen, with its state behind the GIL: reading it costs a plain counter, not the atomic
/// borrow flag (two locked instructions) a mutable class pays on every access.
#[pyclass(subclass, frozen, module = "sockloop._core")]
pub struct Channel {
    state: GILProtected<RefCell<State>>,
}

/// What a [`Channel`] holds.
#[derive(Default)]
pub struct State {
    /// `dispatcher_with_send`'s `out_buffer` (`None`: the attribute is not set).
    out_buffer: Option<Py<PyAny>>,
    /// The queue of the poller that registered this channel last, with the descriptor and
    /// whether the kernel watches it for writing.
    marks: Option<Marks>,
    fd: RawFd,
    watched_write: bool,
    /// Already on `marks` since the poller last looked at it.
    marked: bool,
    /// `connected`, `accepting`, `connecting`, `debug`, `socket`, `ac_in_buffer` and
    /// `producer_fifo`, indexed by [`Field`]: what was assigned (any object), `None` while
    /// unassigned (the flags then read as `False`, the others are missing).
    fields: [Option<Py<PyAny>>; FIELDS],
}

/// The attributes held in the object itself (data descriptors of the base class), so that the
/// native methods read them without a dictionary lookup. They behave as plain attributes with
/// a class default of `False` (`socket`: none): assignment stores any object, `del` returns to
/// the default, and a subclass that defines one of these names itself (a class attribute or a
/// property) takes it over, as it would over any base attribute.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Field {
    Connected,
    Accepting,
    Connecting,
    Debug,
    Socket,
    /// `async_chat`'s input not yet cut into records.
    AcInBuffer,
    /// `async_chat`'s output queue.
    ProducerFifo,
}

const FIELDS: usize = 7;

impl Field {
    fn name(self) -> Name {
        match self {
            Field::Connected => Name::Connected,
            Field::Accepting => Name::Accepting,
            Field::Connecting => Name::Connecting,
            Field::Debug => Name::Debug,
            Field::Socket => Name::Socket,
            Field::AcInBuffer => Name::AcInBuffer,
            Field::ProducerFifo => Name::ProducerFifo,
        }
    }

    /// The flags are the loop's business: assigning one tells the poller to ask the channel's
    /// interest again.
    fn marks(self) -> bool {
        matches!(self, Field::Connected | Field::Accepting | Field::Connecting | Field::ProducerFifo)
    }
}

impl Channel {
    /// The channel's state, to read.
    #[inline]
    pub fn read<'a>(&'a self, py: Python<'a>) -> PyResult<Ref<'a, State>> {
        self.state.get(py).try_borrow().map_err(|_| PyRuntimeError::new_err("Already mutably borrowed"))
    }

    /// The channel's state, to change.
    #[inline]
    pub fn write<'a>(&'a self, py: Python<'a>) -> PyResult<RefMut<'a, State>> {
        self.state.get(py).try_borrow_mut().map_err(|_| PyRuntimeError::new_err("Already borrowed"))
    }
}

impl State {
    /// The poller registered this channel: note where to mark it and what is watched.
    pub fn attach(&mut self, marks: &Marks, fd: RawFd, watched_write: bool) {
        if !self.marks.as_ref().is_some_and(|m| Arc::ptr_eq(m, marks)) {
            self.marks = Some(Arc::clone(marks));
        }
        self.fd = fd;
        self.watched_write = watched_write;
        self.marked = false;
    }

    /// Whether the channel is on its poller's queue, not yet looked at.
    pub fn is_marked(&self) -> bool {
        self.marked
    }

    /// A flag's value: what was assigned, else `False`.
    fn flag_value(&self, py: Python<'_>, field: Field) -> Py<PyAny> {
        match &self.fields[field as usize] {
            Some(v) => v.clone_ref(py),
            None => pyo3::types::PyBool::new(py, false).to_owned().into_any().unbind(),
        }
    }
}

impl Channel {
    /// Assigns a field (any object, `None` included). Deleting one is refused by the
    /// descriptor ("can't delete attribute").
    fn store(slf: &Bound<'_, Self>, field: Field, value: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        let old = {
            let mut c = slf.get().write(slf.py())?;
            if field.marks() {
                c.mark();
            }
            std::mem::replace(&mut c.fields[field as usize], value.map(Bound::unbind))
        };
        // Released after the borrow ends (a finaliser may run Python code).
        drop(old);
        Ok(())
    }

    /// A field with no class default: what was assigned, else `AttributeError`.
    fn required_field(slf: &Bound<'_, Self>, field: Field) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let held = slf.get().read(slf.py())?.fields[field as usize].as_ref().map(|v| v.clone_ref(py));
        held.ok_or_else(|| missing(slf.as_any(), field))
    }
}

impl State {
    /// Whether the state the native interest answers read (`connected`, `accepting` and
    /// `out_buffer`) can change only by assignment, which marks the channel: the flags hold
    /// `True`, `False` or nothing, and `out_buffer` nothing or exactly `bytes` (a bytearray
    /// could grow in place, unseen).
    pub fn state_is_plain(&self, py: Python<'_>) -> bool {
        let t = pyo3::types::PyBool::new(py, true).as_ptr();
        let f = pyo3::types::PyBool::new(py, false).as_ptr();
        let flag_ok =
            |x: Field| self.fields[x as usize].as_ref().is_none_or(|v| v.as_ptr() == t || v.as_ptr() == f);
        flag_ok(Field::Connected)
            && flag_ok(Field::Accepting)
            && self.out_buffer.as_ref().is_none_or(|b| b.bind(py).is_exact_instance_of::<PyBytes>())
    }

    /// `connected` and `accepting` as booleans (what [`Channel::state_is_plain`] allows).
    pub fn plain_flags(&self, py: Python<'_>) -> (bool, bool) {
        let t = pyo3::types::PyBool::new(py, true).as_ptr();
        let on = |x: Field| self.fields[x as usize].as_ref().is_some_and(|v| v.as_ptr() == t);
        (on(Field::Connected), on(Field::Accepting))
    }
}

impl Channel {
    /// Whether `out_buffer` holds bytes (for the native `writable()` answer).
    pub fn pending_out(slf: &Bound<'_, Channel>) -> PyResult<bool> {
        let py = slf.py();
        let buf =
            slf.get().read(slf.py()).ok().and_then(|c| c.out_buffer.as_ref().map(|b| b.bind(py).clone()));
        match buf {
            Some(b) => b.is_truthy(),
            None => Ok(false),
        }
    }
}

/// `Channel`'s type object, for cheap type checks.
pub static CHANNEL: sys::FastType<Channel> = sys::FastType::new();

/// `obj` as a channel, if it is one.
#[inline]
pub fn as_channel<'a, 'py>(obj: &'a Bound<'py, PyAny>) -> Option<&'a Bound<'py, Channel>> {
    CHANNEL.downcast(obj)
}

/// Tells the loop that `obj`'s pending output is now `pending`, if that differs from what the
/// kernel watches.
fn note(obj: &Bound<'_, PyAny>, pending: bool) {
    if let Some(ch) = as_channel(obj) {
        note_channel(ch, pending);
    }
}

fn note_channel(ch: &Bound<'_, Channel>, pending: bool) {
    let Ok(mut c) = ch.get().write(ch.py()) else { return };
    if pending != c.watched_write {
        c.mark();
    }
}

impl State {
    /// Puts the channel on its poller's queue (once until the poller looks at it).
    fn mark(&mut self) {
        if self.marked {
            return;
        }
        if let Some(m) = &self.marks {
            if let Ok(mut q) = m.lock() {
                q.push(self.fd);
            }
            self.marked = true;
        }
    }
}

/// `obj` as a channel when its class's attribute for `field` is the base's own descriptor
/// (not taken over by a subclass), so the field is what Python would read.
#[inline]
fn field_owner<'a, 'py>(obj: &'a Bound<'py, PyAny>, field: Field) -> Option<&'a Bound<'py, Channel>> {
    let ch = as_channel(obj)?;
    let py = obj.py();
    let (ty, tag) = sys::class_and_tag(obj);
    if fields_known(py, ty, tag) {
        return Some(ch);
    }
    let native = |f: Field| matches!(slot(obj, f.name()), Found::Native(i) if NAT_NAMES[i as usize].1 == Nat::Field(f));
    if ALL_FIELDS.into_iter().all(native) {
        // The look-ups gave the class a tag if it had none.
        let (ty, tag) = sys::class_and_tag(obj);
        note_fields_known(py, ty, tag);
        return Some(ch);
    }
    native(field).then_some(ch)
}

/// The classes (address, version tag) last found to leave every field to the base, so that
/// the check on each read is a compare, without borrowing the object. Tags are never reused
/// (and 0, "none", is never kept), so an entry matches only the same class, unchanged since;
/// a few entries cover the handful of classes a program's channels are of.
static FIELDS_KNOWN: GILProtected<[std::cell::Cell<(usize, u32)>; 4]> =
    GILProtected::new([const { std::cell::Cell::new((0, 0)) }; 4]);
static FIELDS_NEXT: GILProtected<std::cell::Cell<usize>> = GILProtected::new(std::cell::Cell::new(0));

#[inline]
fn fields_known(py: Python<'_>, ty: usize, tag: u32) -> bool {
    tag != 0 && FIELDS_KNOWN.get(py).iter().any(|e| e.get() == (ty, tag))
}

fn note_fields_known(py: Python<'_>, ty: usize, tag: u32) {
    if tag == 0 || fields_known(py, ty, tag) {
        return;
    }
    let next = FIELDS_NEXT.get(py);
    let i = next.get() % 4;
    FIELDS_KNOWN.get(py)[i].set((ty, tag));
    next.set(i + 1);
}

const ALL_FIELDS: [Field; FIELDS] = [
    Field::Connected,
    Field::Accepting,
    Field::Connecting,
    Field::Debug,
    Field::Socket,
    Field::AcInBuffer,
    Field::ProducerFifo,
];

/// Whether the class's `connected` and `accepting` are the base's own fields (no subclass
/// took either over), so that assignments to them mark the channel.
pub fn class_uses_fields(ty: &Bound<'_, PyType>) -> bool {
    [Field::Connected, Field::Accepting].into_iter().all(|f| {
        matches!(names::lookup_in(ty, f.name(), native_index),
                 Found::Native(i) if NAT_NAMES[i as usize].1 == Nat::Field(f))
    })
}

/// The truth of a value, without a call for `True`, `False`, `None` and exact `bytes`.
fn truth(v: &Bound<'_, PyAny>) -> PyResult<bool> {
    let py = v.py();
    if let Ok(b) = v.downcast_exact::<PyBytes>() {
        Ok(!b.as_bytes().is_empty())
    } else if v.as_ptr() == pyo3::types::PyBool::new(py, true).as_ptr() {
        Ok(true)
    } else if v.as_ptr() == pyo3::types::PyBool::new(py, false).as_ptr() || v.is_none() {
        Ok(false)
    } else {
        v.is_truthy()
    }
}

/// The flag `field` of `obj` (`connected`, `accepting`, ...), as Python would read it.
pub fn flag_of(obj: &Bound<'_, PyAny>, field: Field) -> PyResult<bool> {
    if let Some(ch) = field_owner(obj, field) {
        let held = ch.get().read(ch.py())?.fields[field as usize].as_ref().map(|v| v.bind(obj.py()).clone());
        return match held {
            Some(v) => truth(&v),
            None => Ok(false),
        };
    }
    obj.getattr(field.name().text(obj.py()))?.is_truthy()
}

/// `obj.<field> = value`, straight into the field when the base's descriptor is in force.
fn set_field(obj: &Bound<'_, PyAny>, field: Field, value: bool) -> PyResult<()> {
    let py = obj.py();
    if let Some(ch) = field_owner(obj, field) {
        let v = pyo3::types::PyBool::new(py, value).to_owned().into_any().unbind();
        let old = {
            let mut c = ch.get().write(ch.py())?;
            if field.marks() {
                c.mark();
            }
            c.fields[field as usize].replace(v)
        };
        drop(old);
        return Ok(());
    }
    obj.setattr(field.name().text(py), value)
}

/// The package's Python pieces the natives need: the `dispatcher` class (its `send` is what
/// `dispatcher_with_send` sends through) and `_handle_error_in_except`.
struct Registry {
    dispatcher: Py<PyType>,
    on_error: Py<PyAny>,
}

static REGISTRY: GILProtected<RefCell<Option<Registry>>> = GILProtected::new(RefCell::new(None));

/// `_register(dispatcher, on_error)`: called by `asyncore` at import.
#[pyfunction]
#[pyo3(name = "_register")]
pub fn register(py: Python<'_>, dispatcher: Py<PyType>, on_error: Py<PyAny>) {
    let old = REGISTRY.get(py).borrow_mut().replace(Registry { dispatcher, on_error });
    drop(old);
}

/// The `dispatcher` class, as registered.
fn dispatcher_class(py: Python<'_>) -> Option<Bound<'_, PyType>> {
    REGISTRY.get(py).borrow().as_ref().map(|r| r.dispatcher.bind(py).clone())
}

/// Whether `dispatcher.send` is the native `send` (what `dispatcher_with_send.initiate_send`
/// sends through). The class's version tag under which it last was is kept: a tag is never
/// reused, so while it is the class's, `send` has not been reassigned there or on a base.
fn dispatcher_send_is_native(disp: &Bound<'_, PyType>) -> bool {
    static NATIVE_UNDER: GILProtected<std::cell::Cell<u32>> = GILProtected::new(std::cell::Cell::new(0));
    let py = disp.py();
    let (_, tag) = sys::type_and_tag(disp, Name::Send.text(py));
    let kept = NATIVE_UNDER.get(py);
    if tag != 0 && kept.get() == tag {
        return true;
    }
    let native = matches!(names::lookup_in(disp, Name::Send, native_index),
                          Found::Native(i) if NAT_NAMES[i as usize].1 == Nat::Send);
    if native {
        kept.set(sys::type_and_tag(disp, Name::Send.text(py)).1);
    }
    native
}

fn registry(py: Python<'_>) -> Option<(Bound<'_, PyType>, Bound<'_, PyAny>)> {
    let r = REGISTRY.get(py).borrow();
    r.as_ref().map(|r| (r.dispatcher.bind(py).clone(), r.on_error.bind(py).clone()))
}

/// `obj.handle_error()` with `err` being handled (so `sys.exc_info()` and a bare `raise` see
/// it), as an `except OSError: self.handle_error()` block would.
fn report(obj: &Bound<'_, PyAny>, err: PyErr) -> PyResult<()> {
    let py = obj.py();
    match registry(py) {
        Some((_, on_error)) => on_error.call1((obj, err.into_value(py))).map(drop),
        None => obj.call_method0(intern!(py, "handle_error")).map(drop),
    }
}

/// The native methods that other methods call by name.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Nat {
    Recv,
    Send,
    Accept,
    HandleAccept,
    ConnectEvent,
    ReadEvent,
    WriteEvent,
    ExptEvent,
    WsInitiateSend,
    WriteSends,
    ChatHandleRead,
    ChatGetTerminator,
    ChatCollect,
    ChatCollectPlain,
    ChatInitiateSend,
    /// The data descriptor of a [`Field`] (read, never called).
    Field(Field),
}

const NAT_NAMES: [(&str, Nat); 22] = [
    ("recv", Nat::Recv),
    ("send", Nat::Send),
    ("accept", Nat::Accept),
    ("handle_accept", Nat::HandleAccept),
    ("handle_connect_event", Nat::ConnectEvent),
    ("handle_read_event", Nat::ReadEvent),
    ("handle_write_event", Nat::WriteEvent),
    ("handle_expt_event", Nat::ExptEvent),
    ("_ws_initiate_send", Nat::WsInitiateSend),
    ("_handle_write_sends", Nat::WriteSends),
    ("_chat_handle_read", Nat::ChatHandleRead),
    ("_chat_get_terminator", Nat::ChatGetTerminator),
    ("_chat_collect_incoming_data", Nat::ChatCollect),
    ("_chat_collect_plain", Nat::ChatCollectPlain),
    ("_chat_initiate_send", Nat::ChatInitiateSend),
    ("connected", Nat::Field(Field::Connected)),
    ("accepting", Nat::Field(Field::Accepting)),
    ("connecting", Nat::Field(Field::Connecting)),
    ("debug", Nat::Field(Field::Debug)),
    ("socket", Nat::Field(Field::Socket)),
    ("ac_in_buffer", Nat::Field(Field::AcInBuffer)),
    ("producer_fifo", Nat::Field(Field::ProducerFifo)),
];

/// This class's method and field descriptors, held here for good: so their addresses can
/// never be another object's, even after one is deleted from the class.
static NATIVES: GILOnceCell<Vec<Option<Py<PyAny>>>> = GILOnceCell::new();

fn natives(py: Python<'_>) -> &[Option<Py<PyAny>>] {
    NATIVES.get_or_init(py, || {
        let ty = py.get_type::<Channel>();
        NAT_NAMES.iter().map(|(name, _)| ty.getattr(*name).ok().map(Bound::unbind)).collect()
    })
}

/// The index into [`NAT_NAMES`] of the native method `attr` is, if it is one.
fn native_index(py: Python<'_>, attr: &Bound<'_, PyAny>) -> Option<u8> {
    let p = attr.as_ptr();
    natives(py).iter().position(|q| q.as_ref().is_some_and(|q| q.as_ptr() == p)).map(|k| k as u8)
}

/// [`names::unshadowed`], but for methods only: a field's descriptor found under a method's
/// name is a data descriptor, which Python's look-up calls for its value.
#[inline]
fn method_unshadowed<'py>(obj: &Bound<'py, PyAny>, name: Name) -> Option<Found<'py>> {
    match names::unshadowed(obj, name, native_index)? {
        Found::Native(k) if matches!(NAT_NAMES[usize::from(k)].1, Nat::Field(_)) => None,
        found => Some(found),
    }
}

/// The native method or field descriptor at `k` in [`NAT_NAMES`].
#[inline]
fn native_object(py: Python<'_>, k: u8) -> Option<Bound<'_, PyAny>> {
    natives(py).get(usize::from(k))?.as_ref().map(|f| f.bind(py).clone())
}

fn slot<'py>(obj: &Bound<'py, PyAny>, name: Name) -> Found<'py> {
    names::lookup(obj, name, native_index)
}

/// `obj.name`: Python's own attribute lookup (through its method cache and, for an instance
/// with inline attribute values, without a dictionary; exact: data descriptors,
/// `__getattr__`, ...).
fn attr<'py>(obj: &Bound<'py, PyAny>, name: Name) -> PyResult<Bound<'py, PyAny>> {
    match name {
        Name::AcInBuffer => field_get(obj, Field::AcInBuffer),
        Name::ProducerFifo => field_get(obj, Field::ProducerFifo),
        _ => match names::plain_value(obj, name, native_index) {
            Some(v) => Ok(v),
            None => obj.getattr(name.text(obj.py())),
        },
    }
}

/// A field with no class default (`ac_in_buffer`, `producer_fifo`) as Python would read it: straight from the object
/// while the base's descriptor is in force, else by `getattr`.
fn field_get<'py>(obj: &Bound<'py, PyAny>, field: Field) -> PyResult<Bound<'py, PyAny>> {
    let py = obj.py();
    if let Some(ch) = field_owner(obj, field) {
        let held = ch.get().read(ch.py())?.fields[field as usize].as_ref().map(|v| v.bind(py).clone());
        return held.ok_or_else(|| missing(obj, field));
    }
    obj.getattr(field.name().text(py))
}

/// The `AttributeError` for an unassigned required field.
fn missing(obj: &Bound<'_, PyAny>, field: Field) -> PyErr {
    let class = obj.get_type().name().map(|n| n.to_string()).unwrap_or_default();
    let name = field.name().text(obj.py()).to_string();
    PyAttributeError::new_err(format!("'{class}' object has no attribute '{name}'"))
}

/// `obj.name = value`, by Python's own assignment (into the inline values when the instance
/// has them; never by way of `obj.__dict__`, which would make a dictionary of them).
fn set_attr<'py>(obj: &Bound<'py, PyAny>, name: Name, value: &Bound<'py, PyAny>) -> PyResult<()> {
    if name == Name::AcInBuffer {
        if let Some(ch) = field_owner(obj, Field::AcInBuffer) {
            return Channel::store(ch, Field::AcInBuffer, Some(value.clone()));
        }
    }
    obj.setattr(name.text(obj.py()), value)
}

fn flag(obj: &Bound<'_, PyAny>, name: Name) -> PyResult<bool> {
    let field = match name {
        Name::Connected => Field::Connected,
        Name::Accepting => Field::Accepting,
        Name::Connecting => Field::Connecting,
        Name::Debug => Field::Debug,
        _ => return attr(obj, name)?.is_truthy(),
    };
    flag_of(obj, field)
}

/// `socket.socket`: objects of exactly this class are read and written here directly.
static SOCKET_TYPE: GILOnceCell<Py<PyType>> = GILOnceCell::new();

/// The descriptor of `sock` when it is a plain non-blocking `socket.socket` (timeout 0), so
/// that a `recv(2)`/`send(2)` here does what its `recv`/`send` methods would. Anything else
/// (an SSL socket, a file wrapper, a subclass, a socket with a timeout) goes through its
/// methods.
fn direct_fd(sock: &Bound<'_, PyAny>) -> Option<RawFd> {
    let py = sock.py();
    let ty = SOCKET_TYPE
        .get_or_try_init(py, || -> PyResult<Py<PyType>> {
            Ok(py.import("socket")?.getattr("socket")?.downcast_into::<PyType>()?.unbind())
        })
        .ok()?;
    if sock.get_type_ptr() != ty.as_ptr().cast() {
        return None;
    }
    if *LAYOUT_KNOWN.get_or_init(py, || socket_layout_known(py).unwrap_or(false)) {
        // The descriptor and timeout straight from the object: no call, nothing allocated.
        let (fd, timeout) = sys::socket_head(sock)?;
        return (timeout == 0 && fd >= 0).then_some(fd);
    }
    let timeout: f64 = sock.getattr(intern!(py, "timeout")).ok()?.extract().ok()?;
    if timeout != 0.0 {
        return None;
    }
    let fd: RawFd = call_method(sock, intern!(py, "fileno"), &[]).ok()?.extract().ok()?;
    (fd >= 0).then_some(fd)
}

/// Whether [`sys::socket_head`] reads what `fileno()` and `gettimeout()` say, on this
/// interpreter: checked once, on a socket pair made for it.
static LAYOUT_KNOWN: GILOnceCell<bool> = GILOnceCell::new();

fn socket_layout_known(py: Python<'_>) -> PyResult<bool> {
    let socket = py.import("socket")?;
    let (a, b): (Bound<'_, PyAny>, Bound<'_, PyAny>) = socket.call_method0("socketpair")?.extract()?;
    let class = socket.getattr("socket")?;
    let check = || -> PyResult<bool> {
        for s in [&a, &b] {
            if !s.get_type().is(&class) {
                return Ok(false);
            }
            let fd: RawFd = s.call_method0("fileno")?.extract()?;
            s.call_method1("setblocking", (false,))?;
            if sys::socket_head(s) != Some((fd, 0)) {
                return Ok(false);
            }
            s.call_method1("settimeout", (2.5,))?;
            if sys::socket_head(s) != Some((fd, 2_500_000_000)) {
                return Ok(false);
            }
        }
        a.call_method0("close")?;
        Ok(sys::socket_head(&a).map(|h| h.0) == Some(-1))
    };
    let known = check();
    a.call_method0("close")?;
    b.call_method0("close")?;
    known
}

/// `OSError(code, strerror)`, which Python turns into the errno's subclass.
fn os_error(code: i32) -> PyErr {
    let text = std::io::Error::from_raw_os_error(code).to_string();
    let text = text.split(" (os error").next().unwrap_or_default().to_owned();
    PyOSError::new_err((code, text))
}

/// The most one direct `recv` takes (larger requests use the socket's method).
const DIRECT_RECV_MAX: usize = 65536;

/// Where a direct `recv` lands before its bytes are copied into a `bytes` object: one buffer,
/// kept, rather than a 64 KiB stack frame, whose every page the compiler's stack probe would
/// touch on each call (and whose far end the kernel would copy into, cold).
static SCRATCH: GILProtected<RefCell<Vec<std::mem::MaybeUninit<u8>>>> =
    GILProtected::new(RefCell::new(Vec::new()));

/// `sock.recv(size)` for a plain socket, as a system call; `None`: use the method.
fn direct_recv<'py>(
    sock: &Bound<'py, PyAny>,
    size: &Bound<'py, PyAny>,
) -> Option<PyResult<Bound<'py, PyAny>>> {
    let py = sock.py();
    let size: usize = size.extract().ok()?;
    if size > DIRECT_RECV_MAX {
        return None;
    }
    let fd = direct_fd(sock)?;
    loop {
        // The buffer is let go before anything can run Python code (a signal handler below
        // may itself receive). Not zeroed: recv(2) writes the first `n` bytes, only those are read.
        let got = {
            let Ok(mut buf) = SCRATCH.get(py).try_borrow_mut() else { return None };
            if buf.len() < DIRECT_RECV_MAX {
                buf.resize(DIRECT_RECV_MAX, std::mem::MaybeUninit::uninit());
            }
            recv_dontwait(fd, &mut buf[..size]).map(|got| PyBytes::new(py, got).into_any())
        };
        match got {
            Ok(data) => return Some(Ok(data)),
            Err(code) if code != libc::EINTR => return Some(Err(os_error(code))),
            // PEP 475: handlers run, then the call is made again.
            Err(_) => {
                if let Err(e) = py.check_signals() {
                    return Some(Err(e));
                }
            }
        }
    }
}

/// `sock.send(data)` for a plain socket and `bytes` data, as a system call.
fn direct_send<'py>(
    sock: &Bound<'py, PyAny>,
    data: &Bound<'py, PyAny>,
) -> Option<PyResult<Bound<'py, PyAny>>> {
    let py = sock.py();
    let bytes = data.downcast::<PyBytes>().ok()?.as_bytes();
    let fd = direct_fd(sock)?;
    loop {
        match send_dontwait(fd, bytes, 0) {
            Ok(n) => return Some(n.into_pyobject(py).map(|v| v.into_any()).map_err(PyErr::from)),
            Err(code) if code != libc::EINTR => return Some(Err(os_error(code))),
            Err(_) => {
                if let Err(e) = py.check_signals() {
                    return Some(Err(e));
                }
            }
        }
    }
}

/// What `obj.name(...)` calls, found as the interpreter finds a method to call.
enum Target<'py> {
    /// One of this class's native methods (the class attribute, not shadowed).
    Native(Nat, Bound<'py, PyAny>),
    /// Another function or method descriptor of the class: called with `obj` first.
    Unbound(Bound<'py, PyAny>),
    /// Anything else the lookup gave (an instance attribute, what a descriptor returned, what
    /// a `__getattr__` made): called as it is.
    Bound(Bound<'py, PyAny>),
}

/// `obj.name` for a call: one `_PyObject_GetMethod` (the class's method cache, then the
/// instance's own attributes), so an attribute set on the class or the instance, a property,
/// a `__getattribute__` are all honoured as a Python call would honour them.
///
/// Most of the time the class's attribute is a method and the instance has nothing of that
/// name: the per-class table and a read of the instance's attributes ([`names::unshadowed`])
/// tell that without the look-up.
#[inline]
fn resolve<'py>(obj: &Bound<'py, PyAny>, name: Name) -> PyResult<Target<'py>> {
    let py = obj.py();
    match method_unshadowed(obj, name) {
        Some(Found::Native(k)) => {
            if let Some(f) = native_object(py, k) {
                return Ok(Target::Native(NAT_NAMES[k as usize].1, f));
            }
        }
        Some(Found::Func(f)) => return Ok(Target::Unbound(f)),
        _ => {}
    }
    let (unbound, f) = sys::get_method(obj, name.text(py))?;
    if !unbound {
        return Ok(Target::Bound(f));
    }
    Ok(match native_of(py, name, &f) {
        Some(k) => Target::Native(k, f),
        None => Target::Unbound(f),
    })
}

/// Which native method `f` (found under `name`) is, if it is one. The answer for the object
/// seen last under each name is kept: natives live as long as the class, so an address that
/// was a native's still is, and one that was not can never become one.
#[inline]
fn native_of(py: Python<'_>, name: Name, f: &Bound<'_, PyAny>) -> Option<Nat> {
    const NONE: u8 = u8::MAX;
    static HINTS: GILProtected<[std::cell::Cell<(usize, u8)>; names::COUNT]> =
        GILProtected::new([const { std::cell::Cell::new((0, NONE)) }; names::COUNT]);
    let p = f.as_ptr() as usize;
    let hint = &HINTS.get(py)[name as usize];
    let k = match hint.get() {
        (q, k) if q == p => k,
        _ => {
            let k = native_index(py, f).unwrap_or(NONE);
            hint.set((p, k));
            k
        }
    };
    NAT_NAMES.get(k as usize).map(|n| n.1)
}

/// `obj.name(*args)` as Python would call it, but natively when the name leads to one of this
/// class's methods (not replaced on the class or the instance), and without a bound method
/// when it leads to a function of the class.
fn invoke<'py>(
    obj: &Bound<'py, PyAny>,
    name: Name,
    args: &[&Bound<'py, PyAny>],
) -> PyResult<Bound<'py, PyAny>> {
    match resolve(obj, name)? {
        Target::Native(k, _) if args.len() == arity(k) => run(obj, k, args),
        // Given the wrong number of arguments: the method itself says so.
        Target::Native(_, f) | Target::Unbound(f) => sys::call(&f, Some(obj), args),
        Target::Bound(v) => sys::call(&v, None, args),
    }
}

fn arity(k: Nat) -> usize {
    match k {
        Nat::Recv | Nat::Send | Nat::ChatCollect | Nat::ChatCollectPlain => 1,
        Nat::Field(_) => usize::MAX, // not a method: called the generic way (and fails there)
        _ => 0,
    }
}

fn run<'py>(obj: &Bound<'py, PyAny>, k: Nat, args: &[&Bound<'py, PyAny>]) -> PyResult<Bound<'py, PyAny>> {
    let py = obj.py();
    let none = || py.None().into_bound(py);
    match k {
        Nat::Recv => recv(obj, args[0]),
        Nat::Send => send(obj, args[0]),
        Nat::Accept => accept(obj),
        Nat::HandleAccept => handle_accept(obj).map(|_| none()),
        Nat::ConnectEvent => connect_event(obj).map(|_| none()),
        Nat::ReadEvent => read_event(obj).map(|_| none()),
        Nat::WriteEvent => write_event(obj).map(|_| none()),
        Nat::ExptEvent => expt_event(obj).map(|_| none()),
        Nat::WsInitiateSend => ws_initiate_send(obj).map(|_| none()),
        Nat::WriteSends => invoke(obj, Name::InitiateSend, &[]).map(|_| none()),
        Nat::ChatHandleRead => chat_handle_read(obj).map(|_| none()),
        Nat::ChatGetTerminator => attr(obj, Name::Terminator),
        Nat::ChatCollect => invoke(obj, Name::CollectPlain, args).map(|_| none()),
        Nat::ChatCollectPlain => {
            attr(obj, Name::Incoming)?.call_method1(intern!(py, "append"), (args[0],))?;
            Ok(none())
        }
        Nat::ChatInitiateSend => chat_initiate_send(obj).map(|_| none()),
        Nat::Field(f) => obj.getattr(f.name().text(py)),
    }
}

/// `obj.name()` for an event the loop delivers (`handle_read_event` and the like): the native
/// state machine unless the name is replaced on the class or the instance.
pub fn deliver(obj: &Bound<'_, PyAny>, name: Name) -> PyResult<()> {
    invoke(obj, name, &[]).map(drop)
}

// -- the dispatcher's methods ------------------------------------------------------------

fn socket_of<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    if let Some(ch) = field_owner(obj, Field::Socket) {
        let held =
            ch.get().read(ch.py())?.fields[Field::Socket as usize].as_ref().map(|v| v.bind(obj.py()).clone());
        if let Some(s) = held {
            return Ok(s);
        }
    }
    attr(obj, Name::Socket)
}

fn recv<'py>(obj: &Bound<'py, PyAny>, size: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = obj.py();
    let sock = socket_of(obj)?;
    let got = match direct_recv(&sock, size) {
        Some(r) => r,
        None => call_method(&sock, intern!(py, "recv"), &[size]),
    };
    match got {
        Ok(data) => {
            if truth(&data)? {
                return Ok(data);
            }
        }
        Err(e) => {
            if !os_errno(py, &e).is_some_and(is_disconnect) {
                return Err(e);
            }
        }
    }
    // End of stream, or the peer reset the connection.
    close_now(obj)?;
    Ok(PyBytes::new(py, b"").into_any())
}

/// `obj.handle_close()` for `recv`/`send` on the way out.
fn close_now(obj: &Bound<'_, PyAny>) -> PyResult<()> {
    invoke(obj, Name::HandleClose, &[]).map(drop)
}

fn send<'py>(obj: &Bound<'py, PyAny>, data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = obj.py();
    let zero = || -> PyResult<Bound<'py, PyAny>> { Ok(0i32.into_pyobject(py)?.into_any()) };
    let sock = socket_of(obj)?;
    let put = match direct_send(&sock, data) {
        Some(r) => r,
        None => call_method(&sock, intern!(py, "send"), &[data]),
    };
    match put {
        Ok(n) => Ok(n),
        Err(e) => match os_errno(py, &e) {
            Some(n) if n == libc::EWOULDBLOCK || n == libc::EAGAIN => zero(),
            Some(n) if is_disconnect(n) => {
                close_now(obj)?;
                zero()
            }
            _ => Err(e),
        },
    }
}

fn close(obj: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = obj.py();
    for field in [Field::Connected, Field::Accepting, Field::Connecting] {
        set_field(obj, field, false)?;
    }
    invoke(obj, Name::DelChannel, &[])?;
    let sock = socket_of(obj)?;
    if sock.is_none() {
        return Ok(());
    }
    match sock.call_method0(intern!(py, "close")) {
        Ok(_) => Ok(()),
        Err(e) if matches!(os_errno(py, &e), Some(libc::ENOTCONN | libc::EBADF)) => Ok(()),
        Err(e) => Err(e),
    }
}

fn accept<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = obj.py();
    match socket_of(obj)?.call_method0(intern!(py, "accept")) {
        Ok(pair) => Ok(pair),
        Err(e) if e.is_instance_of::<PyTypeError>(py) => Ok(py.None().into_bound(py)),
        Err(e) => match os_errno(py, &e) {
            Some(n) if n == libc::EAGAIN || n == libc::EWOULDBLOCK || n == libc::ECONNABORTED => {
                Ok(py.None().into_bound(py))
            }
            _ => Err(e),
        },
    }
}

fn handle_accept(obj: &Bound<'_, PyAny>) -> PyResult<()> {
    let pair = invoke(obj, Name::Accept, &[])?;
    if pair.is_none() {
        return Ok(());
    }
    let items: Vec<Bound<'_, PyAny>> = pair.try_iter()?.collect::<PyResult<_>>()?;
    let [sock, addr] = <[Bound<'_, PyAny>; 2]>::try_from(items)
        .map_err(|v| PyValueError::new_err(format!("accept() gave {} values, expected 2", v.len())))?;
    invoke(obj, Name::HandleAccepted, &[&sock, &addr])?;
    Ok(())
}

/// The socket's pending error (`SO_ERROR`).
fn pending_error<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = obj.py();
    socket_of(obj)?.call_method1(intern!(py, "getsockopt"), (libc::SOL_SOCKET, libc::SO_ERROR))
}

fn connect_event(obj: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = obj.py();
    let code = pending_error(obj)?;
    if code.is_truthy()? {
        let text = py
            .import("os")
            .and_then(|os| os.call_method1("strerror", (&code,)))
            .and_then(|t| t.extract::<String>())
            .unwrap_or_else(|_| format!("Unknown error {code}"));
        return Err(PyOSError::new_err((code.unbind(), text)));
    }
    invoke(obj, Name::HandleConnect, &[])?;
    set_field(obj, Field::Connected, true)?;
    set_field(obj, Field::Connecting, false)?;
    Ok(())
}

/// Before a read or write handler: finish a connect under way.
fn connect_if_pending(obj: &Bound<'_, PyAny>) -> PyResult<()> {
    if !flag(obj, Name::Connected)? && flag(obj, Name::Connecting)? {
        invoke(obj, Name::HandleConnectEvent, &[])?;
    }
    Ok(())
}

/// `(accepting, connected, connecting)` in one look when all five fields are the base's (for
/// the class as it is now) and the three hold `True`, `False` or nothing: reading them
/// together then runs no Python code between the reads, as reading them one by one would
/// not either.
fn plain_event_state(obj: &Bound<'_, PyAny>) -> Option<(bool, bool, bool)> {
    let py = obj.py();
    let ch = field_owner(obj, Field::Accepting)?;
    let (ty, tag) = sys::class_and_tag(obj);
    if !fields_known(py, ty, tag) {
        return None;
    }
    let c = ch.get().read(ch.py()).ok()?;
    let t = pyo3::types::PyBool::new(py, true).as_ptr();
    let f = pyo3::types::PyBool::new(py, false).as_ptr();
    let get = |x: Field| match &c.fields[x as usize] {
        None => Some(false),
        Some(v) if v.as_ptr() == t => Some(true),
        Some(v) if v.as_ptr() == f => Some(false),
        Some(_) => None,
    };
    Some((get(Field::Accepting)?, get(Field::Connected)?, get(Field::Connecting)?))
}

fn read_event(obj: &Bound<'_, PyAny>) -> PyResult<()> {
    if let Some((accepting, connected, connecting)) = plain_event_state(obj) {
        if accepting {
            return invoke(obj, Name::HandleAccept, &[]).map(drop);
        }
        if !connected && connecting {
            invoke(obj, Name::HandleConnectEvent, &[])?;
        }
        return invoke(obj, Name::HandleRead, &[]).map(drop);
    }
    if flag(obj, Name::Accepting)? {
        return invoke(obj, Name::HandleAccept, &[]).map(drop);
    }
    connect_if_pending(obj)?;
    invoke(obj, Name::HandleRead, &[]).map(drop)
}

fn write_event(obj: &Bound<'_, PyAny>) -> PyResult<()> {
    if let Some((accepting, connected, connecting)) = plain_event_state(obj) {
        if accepting {
            return Ok(());
        }
        if !connected && connecting {
            invoke(obj, Name::HandleConnectEvent, &[])?;
        }
        return invoke(obj, Name::HandleWrite, &[]).map(drop);
    }
    if flag(obj, Name::Accepting)? {
        return Ok(()); // a listening socket is never written to
    }
    connect_if_pending(obj)?;
    invoke(obj, Name::HandleWrite, &[]).map(drop)
}

fn expt_event(obj: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = obj.py();
    let failed = match pending_error(obj) {
        Ok(code) => code.is_truthy()?,
        Err(e) if e.is_instance_of::<PyOSError>(py) => true,
        Err(e) => return Err(e),
    };
    // Priority readiness on a failed socket means it is gone, not urgent data.
    let name = if failed { Name::HandleClose } else { Name::HandleExpt };
    invoke(obj, name, &[]).map(drop)
}

// -- dispatcher_with_send ----------------------------------------------------------------

/// The most one `initiate_send` hands to the socket.
const WS_CHUNK: usize = 65536;

fn out_buffer<'py>(ch: &Bound<'py, Channel>) -> PyResult<Bound<'py, PyAny>> {
    let buf = ch.get().read(ch.py())?.out_buffer.as_ref().map(|b| b.bind(ch.py()).clone());
    buf.ok_or_else(|| PyAttributeError::new_err("out_buffer"))
}

fn set_out_buffer(ch: &Bound<'_, Channel>, value: Bound<'_, PyAny>) -> PyResult<()> {
    let old = ch.get().write(ch.py())?.out_buffer.replace(value.unbind());
    // Released here with the GIL held and no borrow left: a plain decref, none deferred.
    drop(old.map(|o| o.into_bound(ch.py())));
    Ok(())
}

/// `value[start:end]` (`None` for an open end).
fn slice<'py>(value: &Bound<'py, PyAny>, start: isize, end: Option<isize>) -> PyResult<Bound<'py, PyAny>> {
    let py = value.py();
    if let Ok(b) = value.downcast::<PyBytes>() {
        let bytes = b.as_bytes();
        let clamp = |i: isize| {
            if i < 0 {
                (bytes.len() as isize + i).max(0) as usize
            } else {
                (i as usize).min(bytes.len())
            }
        };
        let (s, e) = (clamp(start), end.map_or(bytes.len(), clamp));
        if s == 0 && e == bytes.len() {
            return Ok(value.clone());
        }
        return Ok(PyBytes::new(py, &bytes[s..e.max(s)]).into_any());
    }
    let sl = match end {
        Some(e) => PySlice::new(py, start, e, 1),
        None => PySlice::new(py, start, isize::MAX, 1),
    };
    value.get_item(sl)
}

fn ws_send<'py>(ch: &Bound<'py, Channel>, data: &Bound<'py, PyAny>) -> PyResult<()> {
    let py = ch.py();
    let obj = ch.as_any();
    if flag(obj, Name::Debug)? {
        let line = format!("sending {}", data.repr()?);
        obj.call_method1(intern!(py, "log_info"), (line,))?;
    }
    let held = out_buffer(ch)?;
    if ws_send_direct(ch, &held, data)? {
        return Ok(());
    }
    // b"" + data is data itself when both are bytes (CPython hands back the same object).
    let joined = if held.is_exact_instance_of::<PyBytes>()
        && data.is_exact_instance_of::<PyBytes>()
        && held.downcast::<PyBytes>().is_ok_and(|b| b.as_bytes().is_empty())
    {
        data.clone()
    } else {
        held.add(data)?
    };
    set_out_buffer(ch, joined)?;
    invoke(obj, Name::InitiateSend, &[])?;
    note_out(ch)
}

/// `send(data)` of `dispatcher_with_send` with nothing buffered, the echo server's case, as one
/// `send(2)`: what `send` and `initiate_send` do then is make `data` the buffer, send it through
/// `dispatcher.send` and keep what did not go. Done here only when nothing of that can run
/// Python code (`data` exactly bytes, 1 to 64 KiB; the buffer `b""`; `initiate_send` and
/// `dispatcher.send` the package's own, so looking them up runs nothing; the socket one
/// `send(2)` can be made on). The buffer is set before anything else runs (`handle_close` for a
/// peer that left; an error propagates as from `dispatcher.send`), and an `EINTR` goes the
/// general way. `false`: not applicable, nothing done.
fn ws_send_direct(
    ch: &Bound<'_, Channel>,
    held: &Bound<'_, PyAny>,
    data: &Bound<'_, PyAny>,
) -> PyResult<bool> {
    let py = ch.py();
    let obj = ch.as_any();
    let Ok(bytes) = data.downcast_exact::<PyBytes>() else { return Ok(false) };
    let whole = bytes.as_bytes();
    let empty = held.downcast_exact::<PyBytes>().is_ok_and(|b| b.as_bytes().is_empty());
    if !empty || whole.is_empty() || whole.len() > WS_CHUNK {
        return Ok(false);
    }
    if pure_native(obj, Name::InitiateSend)? != Some(Nat::WsInitiateSend)
        || !dispatcher_class(py).is_some_and(|d| dispatcher_send_is_native(&d))
    {
        return Ok(false);
    }
    let Some(_) = field_owner(obj, Field::Socket) else { return Ok(false) };
    let sock = ch.get().read(ch.py())?.fields[Field::Socket as usize].as_ref().map(|s| s.bind(py).clone());
    let Some(fd) = sock.as_ref().and_then(direct_fd) else { return Ok(false) };
    match send_dontwait(fd, whole, 0) {
        Ok(n) if n >= whole.len() => set_out_buffer(ch, PyBytes::new(py, b"").into_any())?,
        Ok(0) => set_out_buffer(ch, data.clone())?,
        Ok(n) => set_out_buffer(ch, PyBytes::new(py, &whole[n..]).into_any())?,
        Err(code) => {
            set_out_buffer(ch, data.clone())?;
            if code == libc::EINTR {
                invoke(obj, Name::InitiateSend, &[])?;
            } else if is_disconnect(code) {
                close_now(obj)?;
            } else if code != libc::EWOULDBLOCK && code != libc::EAGAIN {
                return Err(os_error(code));
            }
        }
    }
    note_out(ch)?;
    Ok(true)
}

/// Tells the loop whether `ch` has output pending now (bytes in `out_buffer`); for bytes (or
/// none) in one borrow of the object.
fn note_out(ch: &Bound<'_, Channel>) -> PyResult<()> {
    let py = ch.py();
    if let Ok(mut c) = ch.get().write(ch.py()) {
        let plain = match &c.out_buffer {
            None => Some(false),
            Some(b) => b.bind(py).downcast_exact::<PyBytes>().ok().map(|b| !b.as_bytes().is_empty()),
        };
        if let Some(pending) = plain {
            if pending != c.watched_write {
                c.mark();
            }
            return Ok(());
        }
    }
    // Anything else's truth may run Python code: asked without holding the object.
    note_channel(ch, Channel::pending_out(ch)?);
    Ok(())
}

fn ws_initiate_send(obj: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = obj.py();
    let ch = match as_channel(obj) {
        Some(ch) => ch,
        None => obj.downcast::<Channel>()?,
    };
    let pending = out_buffer(ch)?;
    let chunk =
        if pending.len()? > WS_CHUNK { slice(&pending, 0, Some(WS_CHUNK as isize))? } else { pending };
    // Through `dispatcher.send` explicitly, as a subclass's own `send` queues instead.
    let sent = match dispatcher_class(py) {
        None => send(obj, &chunk)?,
        Some(disp) if dispatcher_send_is_native(&disp) => send(obj, &chunk)?,
        Some(disp) => match names::lookup_in(&disp, Name::Send, native_index) {
            Found::Func(f) => sys::call(&f, Some(obj), &[&chunk])?,
            _ => disp.getattr(Name::Send.text(py))?.call1((obj, &chunk))?,
        },
    };
    let n: isize = sent.extract()?;
    if n != 0 {
        let now = out_buffer(ch)?;
        // All of it went (and nothing replaced the buffer meanwhile): what the slice gives.
        let rest = match now.downcast_exact::<PyBytes>() {
            Ok(b) if now.is(&chunk) && n as usize >= b.as_bytes().len() => PyBytes::new(py, b"").into_any(),
            _ => slice(&now, n, None)?,
        };
        set_out_buffer(ch, rest)?;
    }
    Ok(())
}

// -- async_chat --------------------------------------------------------------------------

fn is_bytes_like(v: &Bound<'_, PyAny>) -> bool {
    v.is_instance_of::<PyBytes>() || v.is_instance_of::<PyByteArray>() || v.is_instance_of::<PyMemoryView>()
}

/// `value.encode(self.encoding)` when `value` is a `str` and `use_encoding` is set.
fn encoded<'py>(obj: &Bound<'py, PyAny>, value: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = obj.py();
    if value.is_instance_of::<PyString>() && flag(obj, Name::UseEncoding)? {
        let enc = attr(obj, Name::Encoding)?;
        return value.call_method1(intern!(py, "encode"), (enc,));
    }
    Ok(value)
}

/// Where `needle` first occurs in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let [first, rest @ ..] = needle else { return Some(0) };
    let mut from = 0;
    while let Some(i) = find_byte(&hay[from..], *first) {
        let at = from + i;
        if hay[at + 1..].starts_with(rest) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Where byte `b` first occurs in `hay`, eight bytes at a time: a byte-by-byte scan was a
/// tenth of the native work of a 64-byte line. In `w = word ^ b*0x01..01` a matching byte is
/// zero, and `(w - 0x01..01) & !w & 0x80..80` sets the top bit of the first zero byte (bits
/// above it may be set by the borrow, never below), so its lowest set bit marks the match.
fn find_byte(hay: &[u8], b: u8) -> Option<usize> {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let pattern = LOW * u64::from(b);
    let mut words = hay.chunks_exact(8);
    let mut at = 0;
    for word in &mut words {
        let w = word.iter().rev().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)) ^ pattern;
        let zero = w.wrapping_sub(LOW) & !w & HIGH;
        if zero != 0 {
            return Some(at + (zero.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    words.remainder().iter().position(|&x| x == b).map(|i| at + i)
}

#[cfg(test)]
mod tests {
    use super::{find, find_byte};

    #[test]
    fn find_byte_agrees_with_a_plain_scan() {
        let hay: Vec<u8> = (0..200u32).map(|i| (i * 37 % 251) as u8).collect();
        for len in [0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 200] {
            for b in [0u8, 1, 37, 74, 0x80, 0xff, 250] {
                let part = &hay[..len];
                assert_eq!(find_byte(part, b), part.iter().position(|&x| x == b), "len {len} byte {b}");
            }
        }
        // A 0x01 just above a match (the borrow case) and matches at each place in a word.
        for i in 0..16 {
            let mut v = vec![b'y'; 16];
            v[i] = b'\n';
            if i + 1 < 16 {
                v[i + 1] = b'\x0b';
            }
            assert_eq!(find_byte(&v, b'\n'), Some(i));
        }
    }

    #[test]
    fn find_agrees_with_windows() {
        let hay = b"ab\r\nxx\r\r\n\r\n--\r\n.\r\n\r\r";
        for needle in [&b"\r\n"[..], b"\r\n.\r\n", b"\r", b"--", b"zz", b"\r\r", b""] {
            let expect =
                if needle.is_empty() { Some(0) } else { hay.windows(needle.len()).position(|w| w == needle) };
            assert_eq!(find(hay, needle), expect, "{needle:?}");
        }
        assert_eq!(find(b"a", b"abc"), None);
    }
}

/// How many bytes at the end of `hay` could be the start of `needle`.
fn prefix_at_end(hay: &[u8], needle: &[u8]) -> usize {
    (1..needle.len()).rev().find(|&n| hay.ends_with(&needle[..n])).unwrap_or(0)
}

fn as_bytes<'py>(v: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    match v.downcast_into::<PyBytes>() {
        Ok(b) => Ok(b),
        Err(e) => {
            let v = e.into_inner();
            let py = v.py();
            Ok(py.get_type::<PyBytes>().call1((v,))?.downcast_into::<PyBytes>()?)
        }
    }
}

fn chat_handle_read(obj: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = obj.py();
    let size = attr(obj, Name::AcInBufferSize)?;
    let data = match invoke(obj, Name::Recv, &[&size]) {
        Ok(v) => v,
        Err(e) if e.is_instance_of::<PyBlockingIOError>(py) => return Ok(()), // woken for nothing
        Err(e) if e.is_instance_of::<PyOSError>(py) => return report(obj, e),
        Err(e) => return Err(e),
    };
    let data = encoded(obj, data)?;
    let in_buf = Name::AcInBuffer;
    let held = attr(obj, Name::AcInBuffer)?;
    let mut buf = if truth(&held)? { held.add(&data)? } else { data };
    let empty = PyBytes::new(py, b"");
    let collect = Name::CollectIncomingData;
    // Each round reads the buffer and the terminator again: the callbacks may change both.
    while truth(&buf)? {
        let term = invoke(obj, Name::GetTerminator, &[])?;
        if !truth(&term)? {
            // No records: everything is data.
            set_attr(obj, in_buf, &empty)?;
            invoke(obj, collect, &[&buf])?;
        } else if term.is_instance_of::<pyo3::types::PyInt>() {
            let have = buf.len()? as isize;
            let want: Option<isize> = term.extract().ok();
            match want {
                Some(n) if n <= have => {
                    set_attr(obj, in_buf, &slice(&buf, n, None)?)?;
                    set_attr(obj, Name::Terminator, &0i32.into_pyobject(py)?.into_any())?;
                    invoke(obj, collect, &[&slice(&buf, 0, Some(n))?])?;
                    invoke(obj, Name::FoundTerminator, &[])?;
                }
                _ => {
                    // Not reached yet: take it all and count down.
                    set_attr(obj, in_buf, &empty)?;
                    set_attr(obj, Name::Terminator, &term.sub(have)?)?;
                    invoke(obj, collect, &[&buf])?;
                }
            }
        } else {
            let term = if term.is_instance_of::<PyBytes>() || is_bytes_like(&term) {
                as_bytes(term)?
            } else {
                // A str terminator without use_encoding: bytes.find raises the TypeError.
                buf.call_method1(intern!(py, "find"), (&term,))?;
                as_bytes(term)?
            };
            let whole = as_bytes(buf)?;
            let (hay, needle) = (whole.as_bytes(), term.as_bytes());
            match find(hay, needle) {
                Some(at) => {
                    set_attr(obj, in_buf, &PyBytes::new(py, &hay[at + needle.len()..]))?;
                    if at > 0 {
                        invoke(obj, collect, &[PyBytes::new(py, &hay[..at]).as_any()])?;
                    }
                    invoke(obj, Name::FoundTerminator, &[])?;
                }
                None => {
                    // Keep a tail that may begin the terminator for the next read.
                    let cut = hay.len() - prefix_at_end(hay, needle);
                    let rest = if cut < hay.len() { PyBytes::new(py, &hay[cut..]) } else { empty.clone() };
                    set_attr(obj, in_buf, &rest)?;
                    if cut == hay.len() {
                        invoke(obj, collect, &[whole.as_any()])?;
                    } else if cut > 0 {
                        invoke(obj, collect, &[PyBytes::new(py, &hay[..cut]).as_any()])?;
                    }
                    break;
                }
            }
        }
        buf = attr(obj, Name::AcInBuffer)?;
    }
    Ok(())
}

/// Whether neither `readable` nor `writable` is the instance's own attribute (then the class
/// decides what they are), looked up without making the instance a `__dict__`.
pub fn interest_unshadowed(obj: &Bound<'_, PyAny>) -> bool {
    let py = obj.py();
    [Name::Readable, Name::Writable].into_iter().all(|n| {
        method_unshadowed(obj, n).is_some()
            || sys::get_method(obj, n.text(py)).is_ok_and(|(unbound, _)| unbound)
    })
}

/// Whether an `async_chat`'s `producer_fifo` holds anything (for the interest answer).
pub fn chat_queued(obj: &Bound<'_, PyAny>) -> PyResult<bool> {
    chat_queue(obj)?.is_truthy()
}

fn chat_queue<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    attr(obj, Name::ProducerFifo)
}

fn chat_push(obj: &Bound<'_, PyAny>, data: &Bound<'_, PyAny>) -> PyResult<()> {
    if !is_bytes_like(data) {
        let msg = format!("data argument must be byte-ish ({})", data.get_type().repr()?);
        return Err(PyTypeError::new_err(msg));
    }
    let step = attr(obj, Name::AcOutBufferSize)?;
    let fifo = chat_queue(obj)?;
    let len = data.len()? as isize;
    let step_n: isize = step.extract()?;
    if 0 < len && len <= step_n && push_direct(obj, &fifo, data, step_n)? {
        return Ok(());
    }
    if len <= step_n {
        queue_append(&fifo, data)?;
    } else if step_n == 0 {
        return Err(PyValueError::new_err("range() arg 3 must not be zero"));
    } else if step_n > 0 {
        let mut at = 0;
        while at < len {
            queue_append(&fifo, &slice(data, at, Some(at + step_n))?)?;
            at += step_n;
        }
    }
    // The package's own initiate_send, not replaced: it goes on with the queue and the size
    // read here (a deque's append runs no Python code, nor does reading the native
    // `connected`, so neither can have changed before the send).
    if native_target(obj, Name::InitiateSend)? == Some(Nat::ChatInitiateSend)
        && is_deque(&fifo)
        && field_owner(obj, Field::Connected).is_some()
    {
        chat_send_from(obj, &fifo, Some(step_n))?;
    } else {
        invoke(obj, Name::InitiateSend, &[])?;
    }
    note(obj, chat_queue(obj)?.is_truthy()?);
    Ok(())
}

/// `push(data)` onto an empty queue, the line server's case, sent without going through the
/// queue: what `push` and `initiate_send` do then is append `data`, send it, and take it off
/// again when all of it went. Done here only when nothing of that can run Python code or be
/// seen from it: `data` is exactly bytes no longer than `ac_out_buffer_size` (read by the
/// caller), the queue an empty `collections.deque`, `initiate_send` and `send` the package's
/// own (so looking them up, before the append, runs nothing: the class attribute is a method
/// descriptor of this extension under the generic attribute lookup), `connected` the native
/// field holding `True`, and the socket one `send(2)` can be made on. Whatever the send did
/// not take is queued as `initiate_send` would leave it, before anything else runs
/// (`handle_close` for a peer that left, `handle_error`). An `EINTR` queues `data` and goes the
/// general way, which runs the signal handlers and sends again. `false`: not applicable,
/// nothing done.
fn push_direct(
    obj: &Bound<'_, PyAny>,
    fifo: &Bound<'_, PyAny>,
    data: &Bound<'_, PyAny>,
    step: isize,
) -> PyResult<bool> {
    let py = obj.py();
    let Ok(bytes) = data.downcast_exact::<PyBytes>() else { return Ok(false) };
    if as_deque(fifo).is_none() || fifo.len()? != 0 {
        return Ok(false);
    }
    if pure_native(obj, Name::InitiateSend)? != Some(Nat::ChatInitiateSend)
        || pure_native(obj, Name::Send)? != Some(Nat::Send)
    {
        return Ok(false);
    }
    let (Some(ch), Some(_)) = (field_owner(obj, Field::Connected), field_owner(obj, Field::Socket)) else {
        return Ok(false);
    };
    let sock = {
        let c = ch.get().read(ch.py())?;
        let t = pyo3::types::PyBool::new(py, true);
        let connected =
            c.fields[Field::Connected as usize].as_ref().is_some_and(|v| v.as_ptr() == t.as_ptr());
        match &c.fields[Field::Socket as usize] {
            Some(s) if connected => s.bind(py).clone(),
            _ => return Ok(false),
        }
    };
    let Some(fd) = direct_fd(&sock) else { return Ok(false) };
    let whole = bytes.as_bytes();
    match send_dontwait(fd, whole, 0) {
        Ok(n) if n >= whole.len() => {
            // Appended, sent and taken off: the queue is empty, as it was.
            note(obj, false);
            return Ok(true);
        }
        Ok(0) => queue_append(fifo, data)?,
        Ok(n) => queue_append(fifo, PyBytes::new(py, &whole[n..]).as_any())?,
        Err(code) if code == libc::EINTR => {
            queue_append(fifo, data)?;
            chat_send_from(obj, fifo, Some(step))?;
        }
        Err(code) => {
            queue_append(fifo, data)?;
            if is_disconnect(code) {
                close_now(obj)?;
            } else if code != libc::EWOULDBLOCK && code != libc::EAGAIN {
                report(obj, os_error(code))?;
            }
        }
    }
    note(obj, chat_queue(obj)?.is_truthy()?);
    Ok(true)
}

/// `collections.deque` and the methods of it the queue code calls.
struct Deque {
    ty: Py<PyType>,
    append: Py<PyAny>,
    popleft: Py<PyAny>,
}

fn deque(py: Python<'_>) -> Option<&Deque> {
    static DEQUE: GILOnceCell<Deque> = GILOnceCell::new();
    DEQUE
        .get_or_try_init(py, || -> PyResult<Deque> {
            let ty = py.import("collections")?.getattr("deque")?.downcast_into::<PyType>()?;
            let append = ty.getattr("append")?.unbind();
            let popleft = ty.getattr("popleft")?.unbind();
            Ok(Deque { ty: ty.unbind(), append, popleft })
        })
        .ok()
}

/// `v`'s methods if it is exactly a `collections.deque` (whose methods run no Python code and
/// cannot be replaced, so calling them directly is what `v.append(...)` would do).
fn as_deque<'py>(v: &Bound<'py, PyAny>) -> Option<&'py Deque> {
    deque(v.py()).filter(|d| v.get_type_ptr() == d.ty.as_ptr().cast())
}

/// Exactly `collections.deque`.
fn is_deque(v: &Bound<'_, PyAny>) -> bool {
    as_deque(v).is_some()
}

/// `fifo.append(item)`; for a deque by one vectorcall of `deque.append` (what
/// `PyObject_CallMethod` reaches after a method look-up and an argument list).
fn queue_append(fifo: &Bound<'_, PyAny>, item: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = fifo.py();
    match as_deque(fifo) {
        Some(d) => sys::call(d.append.bind(py), Some(fifo), &[item]).map(drop),
        None => call_method(fifo, intern!(py, "append"), &[item]).map(drop),
    }
}

/// `fifo[0]`.
fn queue_head<'py>(fifo: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    match as_deque(fifo) {
        Some(_) => sys::first_item(fifo),
        None => fifo.get_item(0),
    }
}

/// `del fifo[0]` (for a deque, `popleft()`: the same, without an index object).
fn queue_drop_head(fifo: &Bound<'_, PyAny>) -> PyResult<()> {
    match as_deque(fifo) {
        Some(d) => sys::call(d.popleft.bind(fifo.py()), Some(fifo), &[]).map(drop),
        None => fifo.del_item(0),
    }
}

/// The native method `obj.name()` runs (what [`invoke`] would run natively), if it is one.
fn native_target(obj: &Bound<'_, PyAny>, name: Name) -> PyResult<Option<Nat>> {
    Ok(match resolve(obj, name)? {
        Target::Native(k, _) => Some(k),
        _ => None,
    })
}

/// The native `obj.name()` runs, found without running Python code: the class's attribute is
/// that native itself (so no descriptor's `__get__` runs in the look-up) and the instance does
/// not shadow it. `None` otherwise, or when the class's attribute is anything else.
fn pure_native(obj: &Bound<'_, PyAny>, name: Name) -> PyResult<Option<Nat>> {
    if !matches!(slot(obj, name), Found::Native(_)) {
        return Ok(None);
    }
    native_target(obj, name)
}

fn chat_push_with_producer(obj: &Bound<'_, PyAny>, producer: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = obj.py();
    chat_queue(obj)?.call_method1(intern!(py, "append"), (producer,))?;
    invoke(obj, Name::InitiateSend, &[])?;
    note(obj, chat_queue(obj)?.is_truthy()?);
    Ok(())
}

fn chat_initiate_send(obj: &Bound<'_, PyAny>) -> PyResult<()> {
    let fifo = chat_queue(obj)?;
    chat_send_from(obj, &fifo, None)
}

/// `initiate_send` on the queue `fifo`; `limit`: `ac_out_buffer_size` when the caller just
/// read it (used until Python code may have run).
fn chat_send_from(obj: &Bound<'_, PyAny>, fifo: &Bound<'_, PyAny>, mut limit: Option<isize>) -> PyResult<()> {
    let py = obj.py();
    // The head goes with `del fifo[0]`, which a deque and a list both take (code that set
    // `producer_fifo` to a list of bytes worked with CPython's module).
    while fifo.is_truthy()? && flag(obj, Name::Connected)? {
        let head = queue_head(fifo)?;
        if head.is_none() {
            // close_when_done()'s marker: everything before it has gone out.
            queue_drop_head(fifo)?;
            invoke(obj, Name::HandleClose, &[])?;
            return Ok(());
        }
        let sliced = is_bytes_like(&head) || head.is_instance_of::<PyString>();
        if !sliced && head.hasattr(intern!(py, "more"))? {
            // A producer: its next piece goes in front of it; an empty one retires it.
            limit = None; // Python code ran
            let piece = head.call_method0(intern!(py, "more"))?;
            if piece.is_truthy()? {
                fifo.call_method1(intern!(py, "appendleft"), (piece,))?;
            } else {
                queue_drop_head(fifo)?;
            }
            continue;
        }
        if !truth(&head)? {
            limit = None;
            queue_drop_head(fifo)?;
            continue;
        }
        let limit: isize = match limit {
            Some(n) => n,
            None => attr(obj, Name::AcOutBufferSize)?.extract()?,
        };
        let chunk = if head.len()? as isize > limit { slice(&head, 0, Some(limit))? } else { head.clone() };
        let chunk = encoded(obj, chunk)?;
        let sent = match invoke(obj, Name::Send, &[&chunk]) {
            Ok(n) => n,
            Err(e) if e.is_instance_of::<PyOSError>(py) => return report(obj, e),
            Err(e) => return Err(e),
        };
        if sent.is_truthy()? {
            let n: isize = sent.extract()?;
            if chunk.is(&head) && n >= head.len()? as isize {
                queue_drop_head(fifo)?;
            } else {
                fifo.set_item(0, slice(&head, n, None)?)?;
            }
        }
        return Ok(());
    }
    Ok(())
}

// The methods Python code calls on every event, without pyo3's trampoline (see
// `sys::one_arg_entry`); `_core`'s init puts them on the class over the #[pymethods] of the same
// names, which stay as the reference (and for documentation).
crate::one_arg_method!(
    RECV,
    Channel,
    "recv",
    "buffer_size",
    "Up to `buffer_size` bytes; `b''` (after `handle_close()`) when the peer has gone.",
    |ch, size| recv(ch.as_any(), size)
);
crate::one_arg_method!(
    SEND,
    Channel,
    "send",
    "data",
    "What the socket took: 0 when it would block or the peer has gone (then closed).",
    |ch, data| send(ch.as_any(), data)
);
crate::one_arg_method!(
    WS_SEND,
    Channel,
    "_ws_send",
    "data",
    "`dispatcher_with_send.send`: queue `data` and try to send at once.",
    |ch, data| {
        ws_send(ch, data)?;
        Ok(ch.py().None().into_bound(ch.py()))
    }
);
crate::one_arg_method!(CHAT_PUSH, Channel, "_chat_push", "data", "`async_chat.push`.", |ch, data| {
    chat_push(ch.as_any(), data)?;
    Ok(ch.py().None().into_bound(ch.py()))
});

/// Replaces the pyo3 versions of the hot methods by the direct ones, and pyo3's constructor by
/// `object.__new__`'s when that is the same but for the inline attribute values (the answer:
/// whether it was).
pub fn install_fast_methods(py: Python<'_>) -> PyResult<bool> {
    CHANNEL.init(py);
    let ty = py.get_type::<Channel>();
    let object_new = sys::use_object_new(&ty);
    names::check_layout(py, &ty);
    for def in [&RECV, &SEND, &WS_SEND, &CHAT_PUSH] {
        sys::install(&ty, def)?;
    }
    Ok(object_new)
}

#[pymethods]
impl Channel {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Channel {
        // All zero bytes, as a new channel must be (see `sys::use_object_new`): no borrow,
        // nothing held, `fd` 0 (it means something only once `attach` has set `marks`).
        Channel { state: GILProtected::new(RefCell::new(State::default())) }
    }

    /// `out_buffer` and the fields may hold any object (even one that refers back to the
    /// channel): the garbage collector sees them, so such a cycle is collected.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        let Ok(c) = self.state.get(sys::traverse_token(&visit)).try_borrow() else { return Ok(()) };
        for b in c.out_buffer.iter().chain(c.fields.iter().flatten()) {
            visit.call(b)?;
        }
        Ok(())
    }

    fn __clear__(slf: &Bound<'_, Self>) {
        let old = slf.get().write(slf.py()).map(|mut c| (c.out_buffer.take(), std::mem::take(&mut c.fields)));
        drop(old); // released after the borrow ends (a finaliser may run Python code)
    }

    /// True once connected (or given a connected socket); assigning it tells the loop.
    #[getter]
    fn get_connected(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(self.read(py)?.flag_value(py, Field::Connected))
    }

    #[setter]
    fn set_connected(slf: &Bound<'_, Self>, value: Bound<'_, PyAny>) -> PyResult<()> {
        Channel::store(slf, Field::Connected, Some(value))
    }

    /// True once `listen()` was called; assigning it tells the loop.
    #[getter]
    fn get_accepting(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(self.read(py)?.flag_value(py, Field::Accepting))
    }

    #[setter]
    fn set_accepting(slf: &Bound<'_, Self>, value: Bound<'_, PyAny>) -> PyResult<()> {
        Channel::store(slf, Field::Accepting, Some(value))
    }

    /// True while a `connect()` is under way; assigning it tells the loop.
    #[getter]
    fn get_connecting(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(self.read(py)?.flag_value(py, Field::Connecting))
    }

    #[setter]
    fn set_connecting(slf: &Bound<'_, Self>, value: Bound<'_, PyAny>) -> PyResult<()> {
        Channel::store(slf, Field::Connecting, Some(value))
    }

    /// When true, `dispatcher_with_send.send` logs what it sends.
    #[getter]
    fn get_debug(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(self.read(py)?.flag_value(py, Field::Debug))
    }

    #[setter]
    fn set_debug(slf: &Bound<'_, Self>, value: Bound<'_, PyAny>) -> PyResult<()> {
        Channel::store(slf, Field::Debug, Some(value))
    }

    /// The channel's socket (or file wrapper).
    #[getter]
    fn get_socket(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        Channel::required_field(slf, Field::Socket)
    }

    #[setter]
    fn set_socket(slf: &Bound<'_, Self>, value: Bound<'_, PyAny>) -> PyResult<()> {
        Channel::store(slf, Field::Socket, Some(value))
    }

    /// `async_chat`'s input not yet cut into records (bytes).
    #[getter]
    fn get_ac_in_buffer(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        Channel::required_field(slf, Field::AcInBuffer)
    }

    #[setter]
    fn set_ac_in_buffer(slf: &Bound<'_, Self>, value: Bound<'_, PyAny>) -> PyResult<()> {
        Channel::store(slf, Field::AcInBuffer, Some(value))
    }

    /// `async_chat`'s output queue (a `collections.deque`); assigning it tells the loop.
    #[getter]
    fn get_producer_fifo(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        Channel::required_field(slf, Field::ProducerFifo)
    }

    #[setter]
    fn set_producer_fifo(slf: &Bound<'_, Self>, value: Bound<'_, PyAny>) -> PyResult<()> {
        Channel::store(slf, Field::ProducerFifo, Some(value))
    }

    /// `dispatcher_with_send`'s output: bytes not yet sent. Assigning it tells the loop.
    #[getter]
    fn get_out_buffer(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.read(py)?
            .out_buffer
            .as_ref()
            .map(|b| b.clone_ref(py))
            .ok_or_else(|| PyAttributeError::new_err("out_buffer"))
    }

    #[setter]
    fn set_out_buffer(slf: &Bound<'_, Self>, value: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        let pending = match &value {
            Some(v) => v.is_truthy()?,
            None => false,
        };
        let old = std::mem::replace(&mut slf.get().write(slf.py())?.out_buffer, value.map(Bound::unbind));
        drop(old); // after the borrow (a finaliser may run Python code)
        note(slf.as_any(), pending);
        Ok(())
    }

    /// Up to `buffer_size` bytes; `b''` (after `handle_close()`) when the peer has gone.
    fn recv<'py>(slf: &Bound<'py, Self>, buffer_size: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let obj = slf.as_any();
        recv(obj, buffer_size)
    }

    /// What the socket took: 0 when it would block or the peer has gone (then closed).
    fn send<'py>(slf: &Bound<'py, Self>, data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let obj = slf.as_any();
        send(obj, data)
    }

    /// Leaves the map and closes the socket.
    fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        let obj = slf.as_any();
        close(obj)
    }

    /// `(socket, address)`, or None when nobody is waiting (or gave up already).
    fn accept<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let obj = slf.as_any();
        accept(obj)
    }

    fn handle_accept(slf: &Bound<'_, Self>) -> PyResult<()> {
        let obj = slf.as_any();
        handle_accept(obj)
    }

    fn handle_connect_event(slf: &Bound<'_, Self>) -> PyResult<()> {
        let obj = slf.as_any();
        connect_event(obj)
    }

    fn handle_read_event(slf: &Bound<'_, Self>) -> PyResult<()> {
        let obj = slf.as_any();
        read_event(obj)
    }

    fn handle_write_event(slf: &Bound<'_, Self>) -> PyResult<()> {
        let obj = slf.as_any();
        write_event(obj)
    }

    fn handle_expt_event(slf: &Bound<'_, Self>) -> PyResult<()> {
        let obj = slf.as_any();
        expt_event(obj)
    }

    /// `dispatcher_with_send.send`: queue `data` and try to send at once.
    fn _ws_send(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        ws_send(slf, data)
    }

    /// `dispatcher_with_send.initiate_send`: up to 64 KiB of `out_buffer` to the socket.
    fn _ws_initiate_send(slf: &Bound<'_, Self>) -> PyResult<()> {
        let obj = slf.as_any();
        ws_initiate_send(obj)
    }

    /// `handle_write` of both buffered classes: `self.initiate_send()`.
    fn _handle_write_sends(slf: &Bound<'_, Self>) -> PyResult<()> {
        let obj = slf.as_any();
        invoke(obj, Name::InitiateSend, &[]).map(drop)
    }

    /// `async_chat.handle_read`: cut what arrives into records at the terminator.
    fn _chat_handle_read(slf: &Bound<'_, Self>) -> PyResult<()> {
        let obj = slf.as_any();
        chat_handle_read(obj)
    }

    /// `async_chat.get_terminator`.
    fn _chat_get_terminator<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let obj = slf.as_any();
        attr(obj, Name::Terminator)
    }

    /// `async_chat.collect_incoming_data`: `self._collect_incoming_data(data)`.
    fn _chat_collect_incoming_data(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let obj = slf.as_any();
        invoke(obj, Name::CollectPlain, &[data]).map(drop)
    }

    /// `async_chat._collect_incoming_data`: `self.incoming.append(data)`.
    fn _chat_collect_plain(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let obj = slf.as_any();
        let py = obj.py();
        attr(obj, Name::Incoming)?.call_method1(intern!(py, "append"), (data,))?;
        Ok(())
    }

    /// `async_chat.push`.
    fn _chat_push(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        chat_push(slf.as_any(), data)
    }

    /// `async_chat.push_with_producer`.
    fn _chat_push_with_producer(slf: &Bound<'_, Self>, producer: &Bound<'_, PyAny>) -> PyResult<()> {
        chat_push_with_producer(slf.as_any(), producer)
    }

    /// `async_chat.initiate_send`: at most one send from the head of `producer_fifo`.
    fn _chat_initiate_send(slf: &Bound<'_, Self>) -> PyResult<()> {
        let obj = slf.as_any();
        chat_initiate_send(obj)
    }
}
