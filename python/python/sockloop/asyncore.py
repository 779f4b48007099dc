"""sockloop's `asyncore`: the dispatcher model of Python 3.11's module, with the loop in Rust.

The specification is `docs/python-compat.md`.  This module is the Python face: the classes
users subclass, the helpers they import, and the glue that hands a map to the Rust core
(`sockloop._core.Poller`), which asks every channel for its interest, keeps that interest
registered with the kernel (select, poll or epoll), waits with the GIL released and delivers
the events.  The classes stand on `sockloop._core.Channel`, which holds the per-event methods
(recv, send, close, the handle_*_event state machine, the output buffer) in Rust.

Additions, not in 3.11: `loop(..., backend=)`, `SOCKLOOP_BACKEND`, `SocketMap`,
`call_later`, `wake`.
"""

import heapq
import itertools
import math
import os
import select
import signal
import socket
import sys
import threading
import time
import warnings
import weakref

from errno import (EAGAIN, EALREADY, EBADF, ECONNABORTED, ECONNRESET, EINPROGRESS, EINVAL,
                   EISCONN, ENOTCONN, EPIPE, ESHUTDOWN, EWOULDBLOCK, errorcode)

from socket import AF_INET, SO_ERROR, SO_REUSEADDR, SOCK_STREAM, SOL_SOCKET

from . import _core

_BACKENDS = ("auto", "select", "poll", "epoll")


def _backend_name(value, what):
    name = str(value).strip().lower() or "auto"
    if name not in _BACKENDS:
        raise ValueError("%s must be one of %s, not %r" % (what, ", ".join(_BACKENDS), value))
    return name


#: The backend of `loop`, `poll` and `poll2` when none is given (sockloop addition).  'auto'
#: means epoll on Linux whatever `use_poll` says.
default_backend = _backend_name(os.environ.get("SOCKLOOP_BACKEND", "auto"), "SOCKLOOP_BACKEND")

# connect() leaves the channel connecting for these.
_CONNECT_UNDER_WAY = frozenset({EINPROGRESS, EALREADY, EWOULDBLOCK}
                               | ({EINVAL} if os.name == "nt" else set()))

# Errors that say the peer is gone: recv/send close the channel instead of raising.
_DISCONNECTED = frozenset((EPIPE, EBADF, ECONNABORTED, ESHUTDOWN, ENOTCONN, ECONNRESET))

# Readiness bits of poll(2), for readwrite().
_POLL_IN = getattr(select, "POLLIN", 1)
_POLL_PRI = getattr(select, "POLLPRI", 2)
_POLL_OUT = getattr(select, "POLLOUT", 4)
_POLL_GONE = (getattr(select, "POLLHUP", 16) | getattr(select, "POLLERR", 8)
              | getattr(select, "POLLNVAL", 32))


class ExitNow(Exception):
    """Raise it from a handler to leave the loop (it never reaches handle_error)."""


# What escapes from a handler instead of going to handle_error().
_reraised_exceptions = (ExitNow, KeyboardInterrupt, SystemExit)


# ---------------------------------------------------------------------------------------
# Maps.  Any dict works; a SocketMap also tells the core which descriptors changed.

_LOG_LIMIT = 65536


class SocketMap(dict):
    """A dict of descriptor -> channel that records which keys changed (sockloop addition).

    With a plain dict the core asks every channel for its interest on every pass, as 3.11
    does; with a SocketMap it asks only the channels that changed (added, removed, replaced,
    given an event, given output through the package's methods, set listening or connecting)
    and those whose readable()/writable() are written in Python.  In every other respect it
    is a dict; `socket_map` is one."""

    __slots__ = ("_sockloop_log", "_sockloop_epoch", "_sockloop_timers", "_sockloop_cancelled",
                 "_sockloop_pushes", "__weakref__")

    def __init__(self, *args, **kwargs):
        dict.__init__(self, *args, **kwargs)
        self._sockloop_log = []
        self._sockloop_epoch = 0
        self._sockloop_timers = []      # heap of [when, seq, TimerHandle or None]
        self._sockloop_cancelled = 0    # about how many of them are cancelled
        self._sockloop_pushes = [0, 0]  # call_later pushes begun, ended (for _compact)

    def _sockloop_note(self, key):
        log = self._sockloop_log
        log.append(key)
        if len(log) > _LOG_LIMIT:
            self._sockloop_reset()

    def _sockloop_reset(self):
        # Too much changed to follow key by key: the core rescans the whole map.
        self._sockloop_epoch += 1
        self._sockloop_log.clear()

    def __setitem__(self, key, value):
        dict.__setitem__(self, key, value)
        self._sockloop_note(key)

    def __delitem__(self, key):
        dict.__delitem__(self, key)
        self._sockloop_note(key)

    def pop(self, key, *default):
        self._sockloop_note(key)
        return dict.pop(self, key, *default)

    def popitem(self):
        pair = dict.popitem(self)
        self._sockloop_note(pair[0])
        return pair

    def setdefault(self, key, default=None):
        self._sockloop_note(key)
        return dict.setdefault(self, key, default)

    def clear(self):
        dict.clear(self)
        self._sockloop_reset()

    def update(self, *args, **kwargs):
        dict.update(self, *args, **kwargs)
        self._sockloop_reset()

    def __ior__(self, other):
        self.update(other)
        return self

    def copy(self):
        return SocketMap(self)

    def __reduce__(self):
        return (SocketMap, (dict(self),))


socket_map = SocketMap()


def _note_interest(channel):
    """Tells the core that `channel`'s readable()/writable() answer may have changed."""
    m = channel.__dict__.get("_map")
    if type(m) is SocketMap:
        fd = channel.__dict__.get("_fileno")
        if fd is not None:
            m._sockloop_note(fd)


# ---------------------------------------------------------------------------------------
# Timers and waking (sockloop additions), safe from other threads and from signal handlers
# without any lock: the heap holds lists [when, seq, handle] that compare in C, so each
# heappush/heappop is one uninterruptible step; cancel() clears the entry's handle (one C
# store); dead entries are dropped by the loop's own thread when they make up half the heap,
# in a way that notices a push made meanwhile (see _compact).

_timer_order = itertools.count()


class TimerHandle:
    """What call_later() returns: `when` (a time.monotonic() deadline) and `cancel()`."""

    __slots__ = ("when", "_callback", "_args", "_entry", "_map")

    def __init__(self, when, callback, args, map):
        self.when = when
        self._callback = callback
        self._args = args
        self._entry = [when, next(_timer_order), self]
        self._map = map

    @property
    def cancelled(self):
        return self._entry[2] is None

    def __lt__(self, other):
        return self._entry < other._entry

    def cancel(self):
        """The callback will not run."""
        if self._entry[2] is None:
            return
        self._entry[2] = None
        self._callback = self._args = None
        m, self._map = self._map, None
        if m is not None:
            m._sockloop_cancelled += 1

    def __repr__(self):
        return "<TimerHandle when=%r%s>" % (self.when, " cancelled" if self.cancelled else "")


def _compact(map):
    # Only the loop's thread calls this.  A push that starts after `begun` was read makes
    # the counts differ and the swap is skipped; one that ended before is in the snapshot.
    heap = map._sockloop_timers
    for _ in range(3):
        begun = map._sockloop_pushes[0]
        if begun != map._sockloop_pushes[1]:
            return
        live = [e for e in heap[:] if e[2] is not None]
        heapq.heapify(live)
        # No call and no backward jump from the test to the store: nothing runs between.
        if map._sockloop_pushes[0] == begun:
            heap[:] = live
            map._sockloop_cancelled = 0
            return


def call_later(delay, callback, *args, map=None):
    """Runs `callback(*args)` once, about `delay` seconds from now, in the loop serving `map`
    (default: socket_map, which must be a SocketMap), after that pass's events.  Safe from
    any thread and from signal handlers.  An exception from the callback leaves loop().
    Returns a TimerHandle."""
    if map is None:
        map = socket_map
    if not isinstance(map, SocketMap):
        raise TypeError("call_later needs a SocketMap (asyncore.socket_map is one), not %s"
                        % type(map).__name__)
    handle = TimerHandle(time.monotonic() + max(0.0, delay), callback, args, map)
    counts = map._sockloop_pushes
    counts[0] += 1
    heapq.heappush(map._sockloop_timers, handle._entry)
    counts[1] += 1
    wake(map)
    return handle


def _run_timers(map):
    # The core calls this after a pass when the map has timers, and during a wait when the
    # first entry is a cancelled one (to find the real first deadline).
    heap = map._sockloop_timers
    now = time.monotonic()
    while heap:
        entry = heapq.heappop(heap)
        handle = entry[2]
        if handle is None:
            if map._sockloop_cancelled > 0:
                map._sockloop_cancelled -= 1
            continue
        if entry[0] > now:
            heapq.heappush(heap, entry)   # not due: back it goes
            break
        callback, args = handle._callback, handle._args
        handle.cancel()
        callback(*args)
    if map._sockloop_cancelled * 2 > len(heap) > 64:
        _compact(map)


def _drop_cancelled_first(map):
    # The core calls this when the first deadline belongs to a cancelled timer.
    heap = map._sockloop_timers
    while heap:
        entry = heapq.heappop(heap)
        if entry[2] is not None:
            heapq.heappush(heap, entry)
            return
        if map._sockloop_cancelled > 0:
            map._sockloop_cancelled -= 1


# id(map) -> list of the wakers of the pollers serving it now.
_wakers = {}


def wake(map=None):
    """Ends the current wait of every loop()/poll() serving `map` (default: socket_map), so
    that it asks for interest again and runs due timers.  Safe from any thread and from
    signal handlers (sockloop addition)."""
    if map is None:
        map = socket_map
    for waker in tuple(_wakers.get(id(map), ())):
        waker.wake()


# ---------------------------------------------------------------------------------------
# Calling one handler of one object, with 3.11's rules for what its exceptions do.

def _handle_error_in_except(obj, exc):
    # handle_error() must run while `exc` is being handled: sys.exc_info(),
    # compact_traceback() and a bare `raise` inside it all see the exception.
    try:
        raise exc
    except BaseException:
        obj.handle_error()
    finally:
        exc = None


def _call(obj, method):
    try:
        getattr(obj, method)()
    except _reraised_exceptions:
        raise
    except BaseException:
        obj.handle_error()


def read(obj):
    """obj.handle_read_event(); errors other than ExitNow & co. go to obj.handle_error()."""
    _call(obj, "handle_read_event")


def write(obj):
    """obj.handle_write_event(), with read()'s error rules."""
    _call(obj, "handle_write_event")


def _exception(obj):
    """obj.handle_expt_event(), with read()'s error rules."""
    _call(obj, "handle_expt_event")


def readwrite(obj, flags):
    """Dispatches poll(2) `flags` for one object: in, out and priority to the three event
    methods, hang-up, error and invalid to handle_close().  An OSError meaning the peer left
    closes the channel; other errors go to handle_error()."""
    try:
        for bit, method in ((_POLL_IN, "handle_read_event"), (_POLL_OUT, "handle_write_event"),
                            (_POLL_PRI, "handle_expt_event"), (_POLL_GONE, "handle_close")):
            if flags & bit:
                getattr(obj, method)()
    except OSError as err:
        if err.errno in _DISCONNECTED:
            obj.handle_close()
        else:
            obj.handle_error()
    except _reraised_exceptions:
        raise
    except BaseException:
        obj.handle_error()


# ---------------------------------------------------------------------------------------
# Passes: each (thread, map, backend) gets a _core.Poller, kept while the map is in use so
# that interest stays registered with the kernel between calls.

_local = threading.local()
_POLLERS_KEPT = 4
_wakers_lock = threading.RLock()


def _checked_timeout(timeout, poll_rules):
    """3.11's treatment of a timeout: select() refuses a negative one, poll() waits without
    limit; both refuse NaN and infinity (as their conversions do).  None: no limit."""
    if timeout is None:
        return None
    t = float(timeout)
    if math.isnan(t):
        raise ValueError("Invalid value NaN (not a number)")
    if math.isinf(t) and t > 0:
        raise OverflowError("timeout is too large")
    if t < 0:
        if poll_rules:
            return None
        raise ValueError("timeout must be non-negative")
    return t


def _poller_for(map, backend):
    # A poller kept from an earlier call on (what is probably) the same map still has the
    # channels registered with the kernel, held weakly; its first pass scans the whole map,
    # so a different map that got the same id() is served correctly too.
    cache = _local.__dict__.setdefault("pollers", {})
    kept = cache.pop((id(map), backend), None)
    poller = None
    if kept is not None:
        poller, ref = kept
        if ref is None or ref() is not map:
            # Maybe another map under the same id(): trust none of the change log.
            poller.detach()
    if poller is None:
        poller = _core.Poller(backend, _reraised_exceptions, _handle_error_in_except,
                              _NATIVE_ANSWERS, SocketMap, _run_timers, _drop_cancelled_first)
    with _wakers_lock:
        _wakers.setdefault(id(map), []).append(poller.waker)
    # In the main thread a signal ends the wait at once: the wake pair becomes Python's
    # signal wakeup descriptor, unless someone else's (asyncio's) is in place.
    wired = False
    fd = poller.signal_fd
    if fd >= 0 and threading.current_thread() is threading.main_thread():
        try:
            before = signal.set_wakeup_fd(fd, warn_on_full_buffer=False)
        except ValueError:
            before = None
        if before is not None:
            if before == -1 or before == fd:
                wired = True
            else:
                signal.set_wakeup_fd(before)
    poller.signals_wired = wired
    return poller, wired


def _put_back(map, backend, held):
    poller, wired = held
    if wired:
        try:
            signal.set_wakeup_fd(-1)
        except ValueError:
            pass
        poller.signals_wired = False
    with _wakers_lock:
        ws = _wakers.get(id(map))
        if ws is not None:
            try:
                ws.remove(poller.waker)
            except ValueError:
                pass
            if not ws:
                del _wakers[id(map)]
    if not map:
        poller.clear()
        return
    # The registrations stay; the channels are held weakly, so an abandoned map is freed. A
    # SocketMap is remembered weakly too: the same map again needs no whole scan.
    ref = weakref.ref(map) if type(map) is SocketMap else None
    cache = _local.__dict__.setdefault("pollers", {})
    cache[(id(map), backend)] = (poller, ref)
    while len(cache) > _POLLERS_KEPT:
        cache.pop(next(iter(cache)))[0].clear()


def _one_pass(timeout, map, backend, poll_rules):
    if map is None:
        map = socket_map
    if not map:
        return
    timeout = _checked_timeout(timeout, poll_rules)
    backend = default_backend if backend is None else _backend_name(backend, "backend")
    held = _poller_for(map, backend)
    try:
        held[0].poll(map, timeout)
    finally:
        _put_back(map, backend, held)


def poll(timeout=0.0, map=None, backend=None):
    """One pass over `map` (default: socket_map), waiting at most `timeout` seconds.  The wait
    uses `default_backend` unless `backend` is given (sockloop addition)."""
    _one_pass(timeout, map, backend, False)


def poll2(timeout=0.0, map=None, backend=None):
    """poll() with poll(2)'s timeout rules (a negative timeout waits without limit)."""
    _one_pass(timeout, map, backend, True)


poll3 = poll2


_LOOP_TIMEOUT = 30.0


def loop(timeout=_LOOP_TIMEOUT, use_poll=False, map=None, count=None, backend=None):
    """Passes over `map` (default: socket_map) until it is empty, or `count` passes.
    `timeout` caps one wait, in seconds.  `backend` (sockloop addition): 'auto' (epoll on
    Linux), 'select', 'poll' or 'epoll'; None means `default_backend`.  `use_poll` picks
    which of 3.11's timeout rules apply; the backend decides how the loop waits."""
    if map is None:
        map = socket_map
    if count is not None:
        count = math.ceil(count)
        if count <= 0:
            return
    if not map:
        return
    timeout = _checked_timeout(timeout, use_poll)
    backend = default_backend if backend is None else _backend_name(backend, "backend")
    held = _poller_for(map, backend)
    try:
        held[0].run(map, timeout, count)
    finally:
        _put_back(map, backend, held)


# ---------------------------------------------------------------------------------------
# Helpers that dependents import.

def _strerror(err):
    try:
        text = os.strerror(err)
    except (OverflowError, ValueError, NameError):
        text = None
    return text or errorcode.get(err) or "Unknown error %s" % (err,)


def compact_traceback():
    """((file, function, line), type, value, info) of the exception being handled; `info`
    lists every frame as [file|function|line], outermost first."""
    kind, value, tb = sys.exc_info()
    if tb is None:
        raise AssertionError("traceback does not exist")
    frames = []
    while tb is not None:
        code = tb.tb_frame.f_code
        frames.append((code.co_filename, code.co_name, str(tb.tb_lineno)))
        tb = tb.tb_next
    del tb
    info = " ".join("[%s|%s|%s]" % f for f in frames)
    return frames[-1], kind, value, info


def close_all(map=None, ignore_all=False):
    """Closes every channel of `map` (default: socket_map) and empties it.  An EBADF from a
    close is ignored; other errors propagate unless `ignore_all` (except ExitNow & co.)."""
    if map is None:
        map = socket_map
    for channel in list(map.values()):
        try:
            channel.close()
        except _reraised_exceptions:
            raise
        except OSError as err:
            if err.errno != EBADF and not ignore_all:
                raise
        except BaseException:
            if not ignore_all:
                raise
    map.clear()


# ---------------------------------------------------------------------------------------
# Channels.

def _shown_module(cls):
    name = cls.__module__
    return name[len("sockloop."):] if name.startswith("sockloop.") else name


class dispatcher(_core.Channel):
    """A non-blocking socket in a map, with event handlers to override.

    The base class, `sockloop._core.Channel`, holds the methods the loop runs for every
    event, written in Rust: `recv`, `send`, `close`, `accept`, `handle_read_event`,
    `handle_write_event`, `handle_expt_event`, `handle_connect_event`, `handle_accept`.
    They call the others (`handle_read`, `handle_close`, ...) by name, so overriding any of
    them, on a class or on one instance, works as it would in pure Python."""

    # The state a new channel starts in (instances assign their own).  `connected`,
    # `accepting` (listen() was called), `connecting` (connect() is under way) and `debug`
    # (dispatcher_with_send.send logs what it sends) start false and `socket` unset: those
    # five live in the native base's object, read by the loop without a dictionary lookup,
    # and behave as plain attributes (a subclass may define its own at class level).
    addr = None                 # the peer, or the address bound or connected to
    closing = False             # kept for subclasses that use it; the package does not
    ignore_log_types = frozenset({"warning"})   # log_info() levels not printed

    def __init__(self, sock=None, map=None):
        self._map = socket_map if map is None else map
        self._fileno = None
        self.socket = None
        if sock is None:
            return
        sock.setblocking(False)
        self.set_socket(sock, map)
        try:
            peer = sock.getpeername()
        except OSError as err:
            if err.errno not in (EINVAL, ENOTCONN):
                self.del_channel(map)
                raise
            return              # not connected (yet): `connected` stays false
        self.addr, self.connected = peer, True

    def __repr__(self):
        cls = type(self)
        words = ["%s.%s" % (_shown_module(cls), cls.__qualname__)]
        if self.accepting and self.addr:
            words.append("listening")
        elif self.connected:
            words.append("connected")
        if self.addr is not None:
            try:
                words.append("%s:%d" % self.addr)
            except TypeError:
                words.append(repr(self.addr))
        return "<%s at %#x>" % (" ".join(words), id(self))

    __str__ = __repr__

    # -- logging ---------------------------------------------------------------------
    def log(self, message):
        print("log:", message, file=sys.stderr)

    def log_info(self, message, type="info"):
        if type in self.ignore_log_types:
            return
        print("%s: %s" % (type, message))

    # -- membership of the map ----------------------------------------------------------
    def del_channel(self, map=None):
        owner = self._map if map is None else map
        fd, self._fileno = self._fileno, None
        if fd in owner:
            del owner[fd]

    def add_channel(self, map=None):
        owner = self._map if map is None else map
        owner[self._fileno] = self

    # -- the socket -----------------------------------------------------------------------
    def set_socket(self, sock, map=None):
        self.socket, self._fileno = sock, sock.fileno()
        self.add_channel(map)

    def create_socket(self, family=AF_INET, type=SOCK_STREAM):
        s = socket.socket(family, type)
        s.setblocking(False)
        self.family_and_type = (family, type)
        self.set_socket(s)

    def set_reuse_addr(self):
        # One more than the current value (any non-zero value turns it on); never fails.
        s = self.socket
        try:
            on = s.getsockopt(SOL_SOCKET, SO_REUSEADDR) | 1
            s.setsockopt(SOL_SOCKET, SO_REUSEADDR, on)
        except OSError:
            pass

    def listen(self, num):
        self.accepting = True
        _note_interest(self)
        return self.socket.listen(num)

    def bind(self, addr):
        self.addr = addr
        self.socket.bind(addr)

    def connect(self, address):
        self.connected, self.connecting = False, True
        _note_interest(self)
        code = self.socket.connect_ex(address)
        if code in _CONNECT_UNDER_WAY:
            self.addr = address
            return
        if code not in (0, EISCONN):
            raise OSError(code, errorcode[code])
        self.addr = address
        self.handle_connect_event()

    # -- what the loop watches --------------------------------------------------------------
    def writable(self):
        """Watch for write readiness?  Yes, by default."""
        return True

    def readable(self):
        """Watch for read readiness?  Yes, by default."""
        return True

    # -- events: the loop delivers them through the native handle_*_event methods ----------
    def handle_error(self):
        where, kind, value, info = compact_traceback()
        try:
            me = repr(self)
        except BaseException:
            me = "<__repr__(self) failed for object at %0x>" % id(self)
        self.log_info("uncaptured python exception, closing channel %s (%s:%s %s)"
                      % (me, kind, value, info), "error")
        self.handle_close()

    # -- handlers a subclass overrides ---------------------------------------------------------
    def handle_accepted(self, sock, addr):
        sock.close()
        self.log_info("unhandled accepted event", "warning")

    def handle_close(self):
        self.log_info("unhandled close event", "warning")
        self.close()

    def handle_connect(self):
        self.log_info("unhandled connect event", "warning")

    def handle_read(self):
        self.log_info("unhandled read event", "warning")

    def handle_write(self):
        self.log_info("unhandled write event", "warning")

    def handle_expt(self):
        self.log_info("unhandled incoming priority event", "warning")


class dispatcher_with_send(dispatcher):
    """A dispatcher with an output buffer: send() queues, and the loop writes it out.

    `out_buffer` is kept by the native base (assigning it from anywhere tells the loop whether
    the channel has output); `send`, `initiate_send` and `handle_write` are native too."""

    def __init__(self, sock=None, map=None):
        self.out_buffer = b""
        dispatcher.__init__(self, sock, map)

    def writable(self):
        return bool(self.out_buffer) or not self.connected

    # Queue, then try at once; 64 KiB at most per attempt, through dispatcher.send.
    send = _core.Channel._ws_send
    initiate_send = _core.Channel._ws_initiate_send
    handle_write = _core.Channel._handle_write_sends


# The package's own answers, which the core gives without calling Python when a channel's
# class and instance leave them alone.  Taken here, at import, before anyone patches them.
# asynchat adds async_chat's two when it is imported (sockloop's package imports both).
_NATIVE_ANSWERS = {
    "readable": dispatcher.readable,
    "writable": dispatcher.writable,
    "ws_writable": dispatcher_with_send.writable,
}

_core._register(dispatcher, _handle_error_in_except)


# ---------------------------------------------------------------------------------------
# Files (POSIX): a descriptor that looks enough like a socket for the dispatcher.

if os.name == "posix":
    class file_wrapper:
        """Owns a duplicate of a file descriptor and offers the socket calls a dispatcher
        makes on it."""

        def __init__(self, fd):
            self.fd = os.dup(fd)

        def fileno(self):
            return self.fd

        def read(self, *size):
            return os.read(self.fd, *size)

        def write(self, *data):
            return os.write(self.fd, *data)

        recv, send = read, write

        def getsockopt(self, level, optname, buflen=None):
            # Only what dispatcher asks: "is there a pending error?"  Never.
            if (level, optname, buflen) == (SOL_SOCKET, SO_ERROR, None):
                return 0
            raise NotImplementedError("Only asyncore specific behaviour implemented.")

        def close(self):
            # -1 first: a failing os.close still leaves the wrapper closed.
            fd, self.fd = self.fd, -1
            if fd >= 0:
                os.close(fd)

        def __del__(self):
            if getattr(self, "fd", -1) < 0:
                return
            warnings.warn(f"unclosed file {self!r}", ResourceWarning, source=self)
            self.close()

    class file_dispatcher(dispatcher):
        """A dispatcher over a file descriptor (a pipe, a tty, an inotify handle ...)."""

        def __init__(self, fd, map=None):
            dispatcher.__init__(self, None, map)
            if hasattr(fd, "fileno"):
                fd = fd.fileno()
            os.set_blocking(fd, False)
            self.connected = True
            self.set_file(fd)

        def set_file(self, fd):
            wrapper = file_wrapper(fd)
            self.socket = wrapper
            self._fileno = wrapper.fileno()
            self.add_channel()
