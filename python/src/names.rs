//! What the names the native methods use lead to, decided once per class.
//!
//! A native method that reads `self.connected` or calls `self.handle_read()` would, done the
//! generic way, walk the class's MRO (and compare what it found with this extension's own
//! methods) on every event. Instead the class attribute behind each name in [`Name`] is looked
//! up once per class and classified ([`Slot`]); the result is kept until the class changes.
//!
//! "Until the class changes" is CPython's type version tag: any assignment to an attribute of
//! a class, or of any of its bases (`asyncore.dispatcher.writable = ...` included), and any
//! change of `__bases__`, resets the tag of that class and of all its subclasses, and a class
//! gets a fresh, never reused, number the next time one is asked for. An entry here is keyed by
//! the class's address and its tag, so an entry made before a change is never used after it,
//! and a class that reuses a freed class's address does not match its entry either. A class
//! that cannot get a tag (the counter ran out) is looked up the generic way every time.
//!
//! What an instance holds of its own is never cached: it is read on each use, so an attribute
//! or method set on one instance is seen at once, as Python sees it. Where a class attribute
//! is a data descriptor (a property, which Python prefers to the instance's own), and on
//! classes with their own `__getattribute__` or `__getattr__`, Python's own look-up decides
//! every time.
//!
//! The read ([`unshadowed`], [`plain_value`]) goes where CPython 3.12 and 3.13 keep an
//! instance's attributes: a real `__dict__` when it has one (one lookup), else the *inline
//! values* indexed by its class's shared keys (see `sys::own_attributes`). Where each name sits
//! in those keys is kept with the class's entry, under the keys' address and length: keys are
//! only ever appended to, so an instance that gives itself a new attribute (for every
//! instance of the class, the keys grow) has the positions read again. That layout is no
//! public API, so it is used only once [`own_layout`] has checked it on objects made for the
//! purpose on the running interpreter; on any other, or if the check disagrees, every look-up
//! is `_PyObject_GetMethod`/`getattr`, as before.

use crate::sys;
use pyo3::prelude::*;
use pyo3::sync::{GILOnceCell, GILProtected};
use pyo3::types::{PyFunction, PyString, PyType};
use std::cell::RefCell;

macro_rules! names {
    ($($variant:ident = $text:literal,)*) => {
        /// The attributes of a channel that the native methods read or call.
        #[derive(Clone, Copy, PartialEq, Eq, Debug)]
        pub enum Name { $($variant,)* }
        const TEXTS: &[&str] = &[$($text,)*];
        /// How many names there are.
        pub const COUNT: usize = TEXTS.len();
    };
}

names! {
    Recv = "recv",
    Send = "send",
    Accept = "accept",
    HandleAccept = "handle_accept",
    HandleAccepted = "handle_accepted",
    HandleConnectEvent = "handle_connect_event",
    HandleReadEvent = "handle_read_event",
    HandleWriteEvent = "handle_write_event",
    HandleExptEvent = "handle_expt_event",
    HandleRead = "handle_read",
    HandleWrite = "handle_write",
    HandleClose = "handle_close",
    HandleConnect = "handle_connect",
    HandleExpt = "handle_expt",
    InitiateSend = "initiate_send",
    GetTerminator = "get_terminator",
    CollectIncomingData = "collect_incoming_data",
    CollectPlain = "_collect_incoming_data",
    FoundTerminator = "found_terminator",
    DelChannel = "del_channel",
    Socket = "socket",
    Connected = "connected",
    Accepting = "accepting",
    Connecting = "connecting",
    Debug = "debug",
    UseEncoding = "use_encoding",
    Encoding = "encoding",
    AcInBufferSize = "ac_in_buffer_size",
    AcOutBufferSize = "ac_out_buffer_size",
    AcInBuffer = "ac_in_buffer",
    Terminator = "terminator",
    ProducerFifo = "producer_fifo",
    Incoming = "incoming",
    Readable = "readable",
    Writable = "writable",
}

static INTERNED: GILOnceCell<Vec<Py<PyString>>> = GILOnceCell::new();

impl Name {
    /// The name as an interned Python string.
    #[inline]
    pub fn text<'py>(self, py: Python<'py>) -> &'py Bound<'py, PyString> {
        let all =
            INTERNED.get_or_init(py, || TEXTS.iter().map(|t| PyString::intern(py, t).unbind()).collect());
        all[self as usize].bind(py)
    }
}

/// What a class attribute is, as far as the native methods care.
pub enum Slot {
    /// The class has no such attribute.
    Absent,
    /// One of the extension's own methods (`Nat` index into the native table).
    Native(u8),
    /// A plain Python function: calling it through an instance means calling it with the
    /// instance first.
    Func(Py<PyAny>),
    /// A value that is no descriptor at all (a number, a string, `None`, ...): an instance
    /// reads it as it is, unless it has its own.
    Value(Py<PyAny>),
    /// Anything else (a `staticmethod`, a builtin method, a property without a setter, ...):
    /// ask Python.
    Other,
    /// A data descriptor, or a class with its own attribute lookup: ask Python, without
    /// looking in the instance dictionary first.
    Data,
}

/// [`Slot`] with the objects bound to the GIL, as handed to the callers.
pub enum Found<'py> {
    Absent,
    Native(u8),
    Func(Bound<'py, PyAny>),
    Value,
    Other,
    Data,
}

struct Entry {
    ty: usize,
    tag: u32,
    slots: Vec<Slot>,
    /// Where each name sits in the class's shared keys, as last read.
    shadow: RefCell<Shadow>,
}

/// Where each [`Name`] sits in one state of a class's shared keys (the keys' address and
/// length): [`ABSENT`], an entry index, or [`UNKNOWN`].
struct Shadow {
    state: (usize, isize),
    at: [u8; COUNT],
}

const ABSENT: u8 = u8::MAX;
const UNKNOWN: u8 = u8::MAX - 1;

impl Shadow {
    fn none() -> Shadow {
        Shadow { state: (0, -1), at: [UNKNOWN; COUNT] }
    }

    fn of(py: Python<'_>, keys: &sys::SharedKeys<'_>) -> Shadow {
        let mut at = [ABSENT; COUNT];
        for (i, key) in keys.names(py).iter().enumerate() {
            let Some(text) = key.as_ref().and_then(|k| k.to_str().ok()) else { continue };
            if let Some(n) = TEXTS.iter().position(|t| *t == text) {
                at[n] = u8::try_from(i).ok().filter(|&i| i < UNKNOWN).unwrap_or(UNKNOWN);
            }
        }
        Shadow { state: keys.state(), at }
    }
}

/// The classes seen lately. Few classes serve a program's channels, so a short list
/// searched from the front is enough; past `KEPT` entries it starts over.
static CACHE: GILProtected<RefCell<Vec<Entry>>> = GILProtected::new(RefCell::new(Vec::new()));
const KEPT: usize = 64;

/// How a native method is recognised: the address of one of the class's method objects.
pub type Recognise = fn(Python<'_>, &Bound<'_, PyAny>) -> Option<u8>;

fn classify(py: Python<'_>, found: Option<Bound<'_, PyAny>>, native: Recognise) -> Slot {
    let Some(a) = found else { return Slot::Absent };
    if let Some(k) = native(py, &a) {
        return Slot::Native(k);
    }
    if a.is_exact_instance_of::<PyFunction>() {
        return Slot::Func(a.unbind());
    }
    match sys::descriptor_kind(&a) {
        (_, true) => Slot::Data,
        (true, false) => Slot::Other,
        (false, false) => Slot::Value(a.unbind()),
    }
}

fn bind<'py>(py: Python<'py>, s: &Slot) -> Found<'py> {
    match s {
        Slot::Absent => Found::Absent,
        Slot::Native(k) => Found::Native(*k),
        Slot::Func(f) => Found::Func(f.bind(py).clone()),
        Slot::Value(_) => Found::Value,
        Slot::Other => Found::Other,
        Slot::Data => Found::Data,
    }
}

/// The cached slot of `name` for the class at `ty` with tag `tag`, if there is one.
fn cached<'py>(py: Python<'py>, ty: usize, tag: u32, name: Name) -> Option<Found<'py>> {
    let cache = CACHE.get(py).borrow();
    cache.iter().find(|e| e.ty == ty && e.tag == tag).map(|e| bind(py, &e.slots[name as usize]))
}

/// The class attribute behind `name` for `obj`'s class, classified.
pub fn lookup<'py>(obj: &Bound<'py, PyAny>, name: Name, native: Recognise) -> Found<'py> {
    let (ty, tag) = sys::class_and_tag(obj);
    if tag != 0 {
        if let Some(found) = cached(obj.py(), ty, tag, name) {
            return found;
        }
    }
    lookup_in(&obj.get_type(), name, native)
}

/// The attribute `name` of class `class` (as its instances see it), classified.
pub fn lookup_in<'py>(class: &Bound<'py, PyType>, name: Name, native: Recognise) -> Found<'py> {
    let py = class.py();
    let (ty, tag) = sys::type_and_tag(class, Name::Recv.text(py));
    if tag == 0 {
        return Found::Data; // no tag: nothing can be cached, Python decides every time
    }
    if let Some(found) = cached(py, ty, tag, name) {
        return found;
    }
    // Build the entry without holding the cache (nothing here runs Python code, but the old
    // entries' objects are released only after the cache is let go, in case a finaliser does).
    let slots: Vec<Slot> = if sys::generic_getattr(class) {
        (0..TEXTS.len())
            .map(|i| {
                let n = INTERNED.get(py).expect("interned above")[i].bind(py);
                classify(py, sys::type_lookup(class, n), native)
            })
            .collect()
    } else {
        (0..TEXTS.len()).map(|_| Slot::Data).collect()
    };
    let found = bind(py, &slots[name as usize]);
    let dropped = {
        let mut cache = CACHE.get(py).borrow_mut();
        let old = match cache.iter().position(|e| e.ty == ty) {
            Some(i) => vec![cache.swap_remove(i)],
            None if cache.len() >= KEPT => std::mem::take(&mut *cache),
            None => Vec::new(),
        };
        cache.insert(0, Entry { ty, tag, slots, shadow: RefCell::new(Shadow::none()) });
        old
    };
    drop(dropped);
    found
}

/// The class attribute behind `name` when it is a method (one of the extension's, or a plain
/// function) and `obj` holds no attribute of that name of its own: what `obj.name(...)` calls,
/// known without asking Python. `None` otherwise, or when that cannot be told here; then
/// Python's own look-up decides.
#[inline]
pub fn unshadowed<'py>(obj: &Bound<'py, PyAny>, name: Name, native: Recognise) -> Option<Found<'py>> {
    let seen = seen(obj, name, native)?;
    let found = match seen.class {
        Class::Native(k) => Found::Native(k),
        Class::Func(f) => Found::Func(f),
        _ => return None,
    };
    seen.own.value(name)?.is_none().then_some(found)
}

/// `obj.name` when that is a plain value: the instance's own, else the class's when it is no
/// descriptor (what `getattr` gives in both cases, read without asking Python). `None` when it
/// is anything else or cannot be told here.
#[inline]
pub fn plain_value<'py>(obj: &Bound<'py, PyAny>, name: Name, native: Recognise) -> Option<Bound<'py, PyAny>> {
    let seen = seen(obj, name, native)?;
    let class = match seen.class {
        // Its type may have gained `__get__` since the class was classified: asked again.
        Class::Value(v) if sys::descriptor_kind(&v) == (false, false) => Some(v),
        Class::Absent => None,
        _ => return None, // a descriptor or a method: Python decides
    };
    match seen.own.value(name)? {
        Some(v) => Some(v),
        None => class,
    }
}

/// The class attribute behind a name, as the class's entry classified it.
enum Class<'py> {
    Absent,
    Native(u8),
    Func(Bound<'py, PyAny>),
    Value(Bound<'py, PyAny>),
}

/// What `obj` holds of its own under a name: known, or in a dictionary still to be asked.
enum Held<'py> {
    Known(Option<Bound<'py, PyAny>>),
    Dict(Bound<'py, pyo3::types::PyDict>),
}

impl<'py> Held<'py> {
    /// The instance's own value (`Some(None)`: it has none; `None`: ask Python). A dictionary
    /// is asked here, after the cache is let go: comparing its keys may run Python code.
    #[inline(always)]
    fn value(self, name: Name) -> Option<Option<Bound<'py, PyAny>>> {
        match self {
            Held::Known(v) => Some(v),
            Held::Dict(d) => d.get_item(name.text(d.py())).ok(),
        }
    }
}

struct Seen<'py> {
    class: Class<'py>,
    own: Held<'py>,
}

/// The class's attribute behind `name` and what `obj` holds of its own under it, read from
/// the cache entry of `obj`'s class as it is now; `None` when there is no entry yet (it is made
/// for the next time), the class attribute is of no kind read here, or instance attributes
/// are not read on this interpreter. Nothing here runs Python code while the cache is held.
#[inline(always)]
fn seen<'py>(obj: &Bound<'py, PyAny>, name: Name, native: Recognise) -> Option<Seen<'py>> {
    let py = obj.py();
    let layout = (*LAYOUT.get(py)?)?;
    let (ty, tag) = sys::class_and_tag(obj);
    if tag != 0 {
        let cache = CACHE.get(py).borrow();
        if let Some(entry) = cache.iter().find(|e| e.ty == ty && e.tag == tag) {
            let class = match &entry.slots[name as usize] {
                Slot::Absent => Class::Absent,
                Slot::Native(k) => Class::Native(*k),
                Slot::Func(f) => Class::Func(f.bind(py).clone()),
                Slot::Value(v) => Class::Value(v.bind(py).clone()),
                _ => return None,
            };
            let own = entry.own(obj, name, layout)?;
            return Some(Seen { class, own });
        }
    }
    lookup(obj, name, native);
    None
}

impl Entry {
    /// What `obj` holds of its own under `name` (`None`: cannot be told here).
    #[inline(always)]
    fn own<'py>(&self, obj: &Bound<'py, PyAny>, name: Name, layout: sys::OwnLayout) -> Option<Held<'py>> {
        let py = obj.py();
        match sys::own_attributes(obj, layout) {
            sys::Own::Nothing => Some(Held::Known(None)),
            sys::Own::Dict(dict) => Some(Held::Dict(dict)),
            sys::Own::Values(values) => {
                let mut shadow = self.shadow.borrow_mut();
                if shadow.state != values.keys().state() {
                    *shadow = Shadow::of(py, values.keys());
                }
                match shadow.at[name as usize] {
                    ABSENT => Some(Held::Known(None)),
                    UNKNOWN => None,
                    i => values.value(py, usize::from(i)).map(Held::Known),
                }
            }
            sys::Own::Unknown => None,
        }
    }
}

/// The layout of instance attributes on this interpreter, once checked (at import, by
/// [`check_layout`]); `None`: not one read here, and every look-up is Python's.
static LAYOUT: GILOnceCell<Option<sys::OwnLayout>> = GILOnceCell::new();

/// The layout of instance attributes read here on this interpreter (`"3.12"`, `"3.13"`), or
/// `None` when every look-up of an instance's own attributes is left to Python.
pub fn own_layout(py: Python<'_>) -> Option<&'static str> {
    LAYOUT.get(py).copied().flatten().map(|l| match l {
        sys::OwnLayout::V312 => "3.12",
        sys::OwnLayout::V313 => "3.13",
    })
}

/// Objects in each state an instance's attributes can be in, of a plain class and of a
/// subclass of `Channel` (whose instances are larger than an `object`), and what
/// [`sys::own_attributes`] must tell of each (`name`, holds it?) for its layout to be trusted.
const PROBE: &std::ffi::CStr = c"
def states(P):
    class Q(P):
        pass
    fresh = P()
    both = P(); both.x = 1; both.y = 2
    one = P(); one.y = 3
    gone = P(); gone.z = 4; del gone.z
    made = P(); made.x = 5; made.__dict__
    sub = Q(); sub.w = 6
    return [(fresh, 'x', False), (both, 'x', True), (both, 'y', True), (both, 'z', False),
            (one, 'x', False), (one, 'y', True), (gone, 'z', False), (gone, 'x', False),
            (made, 'x', True), (made, 'y', False), (sub, 'w', True), (sub, 'x', False)]
class Plain:
    pass
class OnChannel(Channel):
    pass
class S:
    __slots__ = ('x',)
slots = S(); slots.x = 7
cases = states(Plain) + states(OnChannel) + [(slots, 'x', False)]
";

/// Decides, once, whether instance attributes are read here: on CPython 3.12 or 3.13 (no
/// debug or free-threaded build) whose objects, made for the purpose from a plain class and
/// from `channel` (the extension's base class), read as they should.
pub fn check_layout(py: Python<'_>, channel: &Bound<'_, PyType>) {
    let layout = checked_layout(py, channel);
    let _ = LAYOUT.set(py, layout);
}

fn checked_layout(py: Python<'_>, channel: &Bound<'_, PyType>) -> Option<sys::OwnLayout> {
    let version = py.version_info();
    let layout = match (version.major, version.minor) {
        (3, 12) => sys::OwnLayout::V312,
        (3, 13) => sys::OwnLayout::V313,
        _ => return None,
    };
    let abiflags: String = py.import("sys").ok()?.getattr("abiflags").ok()?.extract().ok()?;
    if !abiflags.is_empty() {
        return None; // a debug or free-threaded build: other layouts
    }
    let scope = pyo3::types::PyDict::new(py);
    scope.set_item("Channel", channel).ok()?;
    py.run(PROBE, Some(&scope), None).ok()?;
    let cases = scope.get_item("cases").ok()??;
    for case in cases.try_iter().ok()? {
        let (obj, name, holds): (Bound<'_, PyAny>, Bound<'_, PyString>, bool) = case.ok()?.extract().ok()?;
        let text = name.to_str().ok()?;
        let told = match sys::own_attributes(&obj, layout) {
            sys::Own::Nothing => Some(false),
            sys::Own::Dict(dict) => dict.get_item(PyString::intern(py, text)).ok().map(|v| v.is_some()),
            sys::Own::Values(values) => {
                let names = values.keys().names(py);
                match names.iter().position(|k| k.as_ref().and_then(|k| k.to_str().ok()) == Some(text)) {
                    Some(i) => values.value(py, i).map(|v| v.is_some()),
                    None => Some(false),
                }
            }
            sys::Own::Unknown => None,
        };
        if told != Some(holds) {
            return None;
        }
    }
    Some(layout)
}
