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
//! The instance dictionary is not cached: it is probed on each use (one dictionary lookup with
//! an interned key), so an attribute or method set on one instance is seen at once, as Python
//! sees it, except where the class attribute is a data descriptor (a property), which Python
//! prefers to the instance dictionary, and on classes with their own `__getattribute__` or
//! `__getattr__`: those names go through Python's `getattr` every time.

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
    /// Anything else (a `staticmethod`, a builtin method, a plain value, ...): ask Python.
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
    Other,
    Data,
}

struct Entry {
    ty: usize,
    tag: u32,
    slots: Vec<Slot>,
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
        (_, false) => Slot::Other,
    }
}

fn bind<'py>(py: Python<'py>, s: &Slot) -> Found<'py> {
    match s {
        Slot::Absent => Found::Absent,
        Slot::Native(k) => Found::Native(*k),
        Slot::Func(f) => Found::Func(f.bind(py).clone()),
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
        cache.insert(0, Entry { ty, tag, slots });
        old
    };
    drop(dropped);
    found
}
