# -*- Mode: Python -*-
#   Id: asyncore.py,v 2.51 2000/09/07 22:29:26 rushing Exp
#   Author: Sam Rushing <rushing@nightmare.com>

# ======================================================================
# Copyright 1996 by Sam Rushing
#
#                         All Rights Reserved
#
# Permission to use, copy, modify, and distribute this software and
# its documentation for any purpose and without fee is hereby
# granted, provided that the above copyright notice appear in all
# copies and that both that copyright notice and this permission
# notice appear in supporting documentation, and that the name of Sam
# Rushing not be used in advertising or publicity pertaining to
# distribution of the software without specific, written prior
# permission.
#
# SAM RUSHING DISCLAIMS ALL WARRANTIES WITH REGARD TO THIS SOFTWARE,
# INCLUDING ALL IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS, IN
# NO EVENT SHALL SAM RUSHING BE LIABLE FOR ANY SPECIAL, INDIRECT OR
# CONSEQUENTIAL DAMAGES OR ANY DAMAGES WHATSOEVER RESULTING FROM LOSS
# OF USE, DATA OR PROFITS, WHETHER IN AN ACTION OF CONTRACT,
# NEGLIGENCE OR OTHER TORTIOUS ACTION, ARISING OUT OF OR IN
# CONNECTION WITH THE USE OR PERFORMANCE OF THIS SOFTWARE.
# ======================================================================

# sockloop: this module is CPython 3.11's Lib/asyncore.py (Copyright 1996 Sam Rushing, notice
# above; changes Copyright Python Software Foundation, PSF License, see LICENSE-PSF in this
# package), with the loop (poll, poll2, loop) replaced by sockloop's Rust core (_core): the
# wait, the interest bookkeeping and the dispatch to handle_*_event run in Rust, with select,
# poll or epoll.  Everything else is CPython's code, so behaviour matches it.

"""Basic infrastructure for asynchronous socket service clients and servers.

There are only two ways to have a program on a single processor do "more
than one thing at a time".  Multi-threaded programming is the simplest and
most popular way to do it, but there is another very different technique,
that lets you have nearly all the advantages of multi-threading, without
actually using multiple threads. it's really only practical if your program
is largely I/O bound. If your program is CPU bound, then pre-emptive
scheduled threads are probably what you really need. Network servers are
rarely CPU-bound, however.

If your operating system supports the select() system call in its I/O
library (and nearly all do), then you can use it to juggle multiple
communication channels at once; doing other work while your I/O is taking
place in the "background."  Although this strategy can seem strange and
complex, especially at first, it is in many ways easier to understand and
control than multi-threaded programming. The module documented here solves
many of the difficult problems for you, making the task of building
sophisticated high-performance network servers and clients a snap.
"""

import select
import socket
import sys
import time
import warnings

import math
import os
from errno import EALREADY, EINPROGRESS, EWOULDBLOCK, ECONNRESET, EINVAL, \
     ENOTCONN, ESHUTDOWN, EISCONN, EBADF, ECONNABORTED, EPIPE, EAGAIN, \
     errorcode

import heapq
import threading

from . import _core

# No __all__, as in CPython: `from asyncore import *` gives every public name.

# sockloop addition: the backend `loop`, `poll` and `poll2` use when none is given.  'auto' is
# epoll on Linux (poll elsewhere) whatever `use_poll` says; the environment variable
# SOCKLOOP_BACKEND (auto, select, poll or epoll) changes it for a whole program.
default_backend = os.environ.get("SOCKLOOP_BACKEND", "auto").strip().lower() or "auto"
if default_backend not in ("auto", "select", "poll", "epoll"):
    raise ValueError("SOCKLOOP_BACKEND must be auto, select, poll or epoll, not %r"
                     % default_backend)


_DISCONNECTED = frozenset({ECONNRESET, ENOTCONN, ESHUTDOWN, ECONNABORTED, EPIPE,
                           EBADF})

_LOG_LIMIT = 65536  # a SocketMap's change log never holds more entries than this

class SocketMap(dict):
    """A dict (fd -> channel) that tells sockloop's loop which entries changed.

    A sockloop addition: `socket_map` is one, and any map may be.  With a plain dict the loop
    looks at every channel on every pass, as CPython's asyncore does; with a SocketMap it looks
    only at the channels that changed (added, removed, replaced, dispatched to, sent to, set
    listening or connecting), at those whose readable()/writable() are overridden in Python
    (asked every pass, as in CPython), and at all of them at least every 0.1 s, so a pass costs
    O(active channels) rather than O(all channels).  It is a dict in every other respect."""

    __slots__ = ("_sockloop_log", "_sockloop_epoch", "_sockloop_timers")

    def __init__(self, *args, **kwargs):
        dict.__init__(self, *args, **kwargs)
        self._sockloop_log = []
        self._sockloop_epoch = 0
        self._sockloop_timers = []   # heap of TimerHandle (call_later)

    def _sockloop_reset(self):
        # Changes the loop cannot follow one by one: every channel is looked at next pass.
        # Also bounds the log when no sockloop loop reads it (a program with its own loop).
        self._sockloop_epoch += 1
        self._sockloop_log.clear()

    def __setitem__(self, key, value):
        dict.__setitem__(self, key, value)
        self._sockloop_log.append(key)
        if len(self._sockloop_log) > _LOG_LIMIT:
            self._sockloop_reset()

    def __delitem__(self, key):
        dict.__delitem__(self, key)
        self._sockloop_log.append(key)
        if len(self._sockloop_log) > _LOG_LIMIT:
            self._sockloop_reset()

    def pop(self, key, *default):
        self._sockloop_log.append(key)
        if len(self._sockloop_log) > _LOG_LIMIT:
            self._sockloop_reset()
        return dict.pop(self, key, *default)

    def popitem(self):
        key, value = dict.popitem(self)
        self._sockloop_log.append(key)
        if len(self._sockloop_log) > _LOG_LIMIT:
            self._sockloop_reset()
        return key, value

    def setdefault(self, key, default=None):
        self._sockloop_log.append(key)
        if len(self._sockloop_log) > _LOG_LIMIT:
            self._sockloop_reset()
        return dict.setdefault(self, key, default)

    def clear(self):
        dict.clear(self)
        self._sockloop_reset()

    def update(self, *args, **kwargs):
        dict.update(self, *args, **kwargs)
        self._sockloop_reset()

    def __ior__(self, other):
        dict.update(self, other)
        self._sockloop_reset()
        return self

    def copy(self):
        return SocketMap(self)

    def __reduce__(self):
        return (SocketMap, (dict(self),))


class TimerHandle:
    """What call_later() returns (sockloop addition): `cancel()` it, read `when`."""

    __slots__ = ("when", "_seq", "_callback", "_args", "cancelled")

    def __init__(self, when, seq, callback, args):
        self.when = when
        self._seq = seq
        self._callback = callback
        self._args = args
        self.cancelled = False

    def __lt__(self, other):
        return (self.when, self._seq) < (other.when, other._seq)

    def __getitem__(self, i):
        # The Rust core reads the first deadline as timers[0][0].
        if i == 0:
            return self.when
        raise IndexError(i)

    def cancel(self):
        """The callback will not run (O(1); the entry leaves the heap when it comes due)."""
        self.cancelled = True
        self._callback = self._args = None

    def __repr__(self):
        return "<TimerHandle when=%r%s>" % (self.when, " cancelled" if self.cancelled else "")


_timer_lock = threading.Lock()
_timer_seq = 0

def call_later(delay, callback, *args, map=None):
    """Runs `callback(*args)` once, `delay` seconds from now, from the loop serving `map`
    (default: socket_map), after that pass's events.  A sockloop addition: CPython's asyncore
    has no timers.  `map` must be a SocketMap (socket_map is one).  Safe from any thread (the
    loop is woken to take the new deadline into account).  An exception raised by the
    callback propagates out of loop(), as ExitNow does.  Returns a TimerHandle."""
    global _timer_seq
    if map is None:
        map = socket_map
    if not isinstance(map, SocketMap):
        raise TypeError("call_later needs a SocketMap (asyncore.socket_map is one), not %s"
                        % type(map).__name__)
    with _timer_lock:
        _timer_seq += 1
        handle = TimerHandle(time.monotonic() + max(0.0, delay), _timer_seq, callback, args)
        heapq.heappush(map._sockloop_timers, handle)
    wake(map)
    return handle

def _run_timers(map):
    # Called by the Rust core after a pass when map has timers: runs those that are due.
    heap = map._sockloop_timers
    now = time.monotonic()
    while True:
        with _timer_lock:
            if not heap or heap[0].when > now:
                return
            handle = heapq.heappop(heap)
        if not handle.cancelled:
            callback, args = handle._callback, handle._args
            handle.cancel()
            callback(*args)

# The wakers of the pollers serving each map right now (id(map) -> {waker: count}).
_wakers = {}
_wakers_lock = threading.Lock()

def wake(map=None):
    """Ends the wait of every loop()/poll() currently serving `map` (default: socket_map), from
    any thread, so that it asks readable()/writable() again and runs due timers.  A sockloop
    addition (CPython's asyncore cannot be woken)."""
    if map is None:
        map = socket_map
    with _wakers_lock:
        wakers = list(_wakers.get(id(map), ()))
    for w in wakers:
        w.wake()

def _touch(obj):
    # A channel's interest may have changed outside its own dispatch (sockloop addition).
    m = obj.__dict__.get("_map")
    if type(m) is SocketMap:
        fd = obj.__dict__.get("_fileno")
        if fd is not None:
            m._sockloop_log.append(fd)
            if len(m._sockloop_log) > _LOG_LIMIT:
                m._sockloop_reset()

try:
    socket_map
except NameError:
    socket_map = SocketMap()

def _strerror(err):
    try:
        return os.strerror(err)
    except (ValueError, OverflowError, NameError):
        if err in errorcode:
            return errorcode[err]
        return "Unknown error %s" %err

class ExitNow(Exception):
    pass

_reraised_exceptions = (ExitNow, KeyboardInterrupt, SystemExit)

def read(obj):
    try:
        obj.handle_read_event()
    except _reraised_exceptions:
        raise
    except:
        obj.handle_error()

def write(obj):
    try:
        obj.handle_write_event()
    except _reraised_exceptions:
        raise
    except:
        obj.handle_error()

def _exception(obj):
    try:
        obj.handle_expt_event()
    except _reraised_exceptions:
        raise
    except:
        obj.handle_error()

def readwrite(obj, flags):
    try:
        if flags & select.POLLIN:
            obj.handle_read_event()
        if flags & select.POLLOUT:
            obj.handle_write_event()
        if flags & select.POLLPRI:
            obj.handle_expt_event()
        if flags & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
            obj.handle_close()
    except OSError as e:
        if e.errno not in _DISCONNECTED:
            obj.handle_error()
        else:
            obj.handle_close()
    except _reraised_exceptions:
        raise
    except:
        obj.handle_error()

def _handle_error_in_except(obj, exc):
    # The Rust core calls this with the exception a handler raised, so that handle_error()
    # runs inside an except block, as in CPython (compact_traceback() and a bare raise see it).
    try:
        raise exc
    except BaseException:
        obj.handle_error()
    finally:
        exc = None

# One _core.Poller per (thread, map, backend), kept between calls so that interest stays
# registered in the kernel across loop() and poll() calls; a few per thread at most.
_local = threading.local()
_CACHED_POLLERS = 4

def _resolve_backend(backend):
    if backend is None:
        backend = default_backend
    backend = str(backend).lower()
    if backend not in ("auto", "select", "poll", "epoll"):
        raise ValueError("backend must be 'auto', 'select', 'poll' or 'epoll', not %r"
                         % (backend,))
    return backend

def _acquire(map, backend):
    cache = getattr(_local, "pollers", None)
    if cache is None:
        cache = _local.pollers = {}
    hit = cache.pop((id(map), backend), None)
    if hit is not None and hit[0] is map:
        poller = hit[1]
    else:
        builtins = (dispatcher.readable, dispatcher.writable, dispatcher_with_send.writable)
        poller = _core.Poller(backend, _reraised_exceptions, _handle_error_in_except, builtins,
                              SocketMap, _run_timers)
    waker = poller.waker
    with _wakers_lock:
        ws = _wakers.setdefault(id(map), {})
        ws[waker] = ws.get(waker, 0) + 1
    return poller

def _release(map, backend, poller):
    # While a poller is in use it is out of the cache, so a nested loop() on the same map
    # (from a handler) gets a poller of its own.
    waker = poller.waker
    with _wakers_lock:
        ws = _wakers.get(id(map))
        if ws is not None:
            n = ws.get(waker, 0) - 1
            if n > 0:
                ws[waker] = n
            else:
                ws.pop(waker, None)
                if not ws:
                    del _wakers[id(map)]
    cache = _local.pollers
    cache[(id(map), backend)] = (map, poller)
    while len(cache) > _CACHED_POLLERS:
        del cache[next(iter(cache))]

def _pass(timeout, map, backend):
    if map is None:
        map = socket_map
    if not map:
        return
    backend = _resolve_backend(backend)
    poller = _acquire(map, backend)
    try:
        poller.poll(map, timeout)
    finally:
        _release(map, backend, poller)

def poll(timeout=0.0, map=None, backend=None):
    """One pass over `map` (default: socket_map), waiting at most `timeout` seconds.

    CPython's poll() used select(); here the pass runs on the default backend (see
    `default_backend`) unless `backend` names one (a sockloop addition)."""
    _pass(timeout, map, backend)

def poll2(timeout=0.0, map=None, backend=None):
    """One pass over `map`, like poll() (CPython's used poll(2))."""
    _pass(timeout, map, backend)

poll3 = poll2                           # Alias for backward compatibility

def loop(timeout=30.0, use_poll=False, map=None, count=None, backend=None):
    """Passes over `map` (default: socket_map) until it is empty, or `count` passes.

    `timeout` caps each wait (seconds).  `backend` (a sockloop addition) is 'auto' (epoll on
    Linux), 'select', 'poll' or 'epoll'; when None, `default_backend`.  `use_poll` is accepted
    for compatibility: the backend decides how the loop waits."""
    if map is None:
        map = socket_map
    if count is not None:
        count = math.ceil(count)
        if not (map and count > 0):
            return
    elif not map:
        return
    backend = _resolve_backend(backend)
    poller = _acquire(map, backend)
    try:
        poller.run(map, timeout, count)
    finally:
        _release(map, backend, poller)

class dispatcher:

    debug = False
    connected = False
    accepting = False
    connecting = False
    closing = False
    addr = None
    ignore_log_types = frozenset({'warning'})

    def __init__(self, sock=None, map=None):
        if map is None:
            self._map = socket_map
        else:
            self._map = map

        self._fileno = None

        if sock:
            # Set to nonblocking just to make sure for cases where we
            # get a socket from a blocking source.
            sock.setblocking(False)
            self.set_socket(sock, map)
            self.connected = True
            # The constructor no longer requires that the socket
            # passed be connected.
            try:
                self.addr = sock.getpeername()
            except OSError as err:
                if err.errno in (ENOTCONN, EINVAL):
                    # To handle the case where we got an unconnected
                    # socket.
                    self.connected = False
                else:
                    # The socket is broken in some unknown way, alert
                    # the user and remove it from the map (to prevent
                    # polling of broken sockets).
                    self.del_channel(map)
                    raise
        else:
            self.socket = None

    def __repr__(self):
        status = [self.__class__.__module__+"."+self.__class__.__qualname__]
        if self.accepting and self.addr:
            status.append('listening')
        elif self.connected:
            status.append('connected')
        if self.addr is not None:
            try:
                status.append('%s:%d' % self.addr)
            except TypeError:
                status.append(repr(self.addr))
        return '<%s at %#x>' % (' '.join(status), id(self))

    def add_channel(self, map=None):
        #self.log_info('adding channel %s' % self)
        if map is None:
            map = self._map
        map[self._fileno] = self

    def del_channel(self, map=None):
        fd = self._fileno
        if map is None:
            map = self._map
        if fd in map:
            #self.log_info('closing channel %d:%s' % (fd, self))
            del map[fd]
        self._fileno = None

    def create_socket(self, family=socket.AF_INET, type=socket.SOCK_STREAM):
        self.family_and_type = family, type
        sock = socket.socket(family, type)
        sock.setblocking(False)
        self.set_socket(sock)

    def set_socket(self, sock, map=None):
        self.socket = sock
        self._fileno = sock.fileno()
        self.add_channel(map)

    def set_reuse_addr(self):
        # try to re-use a server port if possible
        try:
            self.socket.setsockopt(
                socket.SOL_SOCKET, socket.SO_REUSEADDR,
                self.socket.getsockopt(socket.SOL_SOCKET,
                                       socket.SO_REUSEADDR) | 1
                )
        except OSError:
            pass

    # ==================================================
    # predicates for select()
    # these are used as filters for the lists of sockets
    # to pass to select().
    # ==================================================

    def readable(self):
        return True

    def writable(self):
        return True

    # ==================================================
    # socket object methods.
    # ==================================================

    def listen(self, num):
        self.accepting = True
        _touch(self)
        if os.name == 'nt' and num > 5:
            num = 5
        return self.socket.listen(num)

    def bind(self, addr):
        self.addr = addr
        return self.socket.bind(addr)

    def connect(self, address):
        self.connected = False
        self.connecting = True
        _touch(self)
        err = self.socket.connect_ex(address)
        if err in (EINPROGRESS, EALREADY, EWOULDBLOCK) \
        or err == EINVAL and os.name == 'nt':
            self.addr = address
            return
        if err in (0, EISCONN):
            self.addr = address
            self.handle_connect_event()
        else:
            raise OSError(err, errorcode[err])

    def accept(self):
        # XXX can return either an address pair or None
        try:
            conn, addr = self.socket.accept()
        except TypeError:
            return None
        except OSError as why:
            if why.errno in (EWOULDBLOCK, ECONNABORTED, EAGAIN):
                return None
            else:
                raise
        else:
            return conn, addr

    def send(self, data):
        try:
            result = self.socket.send(data)
            return result
        except OSError as why:
            if why.errno == EWOULDBLOCK:
                return 0
            elif why.errno in _DISCONNECTED:
                self.handle_close()
                return 0
            else:
                raise

    def recv(self, buffer_size):
        try:
            data = self.socket.recv(buffer_size)
            if not data:
                # a closed connection is indicated by signaling
                # a read condition, and having recv() return 0.
                self.handle_close()
                return b''
            else:
                return data
        except OSError as why:
            # winsock sometimes raises ENOTCONN
            if why.errno in _DISCONNECTED:
                self.handle_close()
                return b''
            else:
                raise

    def close(self):
        self.connected = False
        self.accepting = False
        self.connecting = False
        self.del_channel()
        if self.socket is not None:
            try:
                self.socket.close()
            except OSError as why:
                if why.errno not in (ENOTCONN, EBADF):
                    raise

    # log and log_info may be overridden to provide more sophisticated
    # logging and warning methods. In general, log is for 'hit' logging
    # and 'log_info' is for informational, warning and error logging.

    def log(self, message):
        sys.stderr.write('log: %s\n' % str(message))

    def log_info(self, message, type='info'):
        if type not in self.ignore_log_types:
            print('%s: %s' % (type, message))

    def handle_read_event(self):
        if self.accepting:
            # accepting sockets are never connected, they "spawn" new
            # sockets that are connected
            self.handle_accept()
        elif not self.connected:
            if self.connecting:
                self.handle_connect_event()
            self.handle_read()
        else:
            self.handle_read()

    def handle_connect_event(self):
        err = self.socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err != 0:
            raise OSError(err, _strerror(err))
        self.handle_connect()
        self.connected = True
        self.connecting = False

    def handle_write_event(self):
        if self.accepting:
            # Accepting sockets shouldn't get a write event.
            # We will pretend it didn't happen.
            return

        if not self.connected:
            if self.connecting:
                self.handle_connect_event()
        self.handle_write()

    def handle_expt_event(self):
        # handle_expt_event() is called if there might be an error on the
        # socket, or if there is OOB data
        # check for the error condition first
        err = self.socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err != 0:
            # we can get here when select.select() says that there is an
            # exceptional condition on the socket
            # since there is an error, we'll go ahead and close the socket
            # like we would in a subclassed handle_read() that received no
            # data
            self.handle_close()
        else:
            self.handle_expt()

    def handle_error(self):
        nil, t, v, tbinfo = compact_traceback()

        # sometimes a user repr method will crash.
        try:
            self_repr = repr(self)
        except:
            self_repr = '<__repr__(self) failed for object at %0x>' % id(self)

        self.log_info(
            'uncaptured python exception, closing channel %s (%s:%s %s)' % (
                self_repr,
                t,
                v,
                tbinfo
                ),
            'error'
            )
        self.handle_close()

    def handle_expt(self):
        self.log_info('unhandled incoming priority event', 'warning')

    def handle_read(self):
        self.log_info('unhandled read event', 'warning')

    def handle_write(self):
        self.log_info('unhandled write event', 'warning')

    def handle_connect(self):
        self.log_info('unhandled connect event', 'warning')

    def handle_accept(self):
        pair = self.accept()
        if pair is not None:
            self.handle_accepted(*pair)

    def handle_accepted(self, sock, addr):
        sock.close()
        self.log_info('unhandled accepted event', 'warning')

    def handle_close(self):
        self.log_info('unhandled close event', 'warning')
        self.close()

# ---------------------------------------------------------------------------
# adds simple buffered output capability, useful for simple clients.
# [for more sophisticated usage use asynchat.async_chat]
# ---------------------------------------------------------------------------

class dispatcher_with_send(dispatcher):

    def __init__(self, sock=None, map=None):
        dispatcher.__init__(self, sock, map)
        self.out_buffer = b''

    def initiate_send(self):
        num_sent = 0
        num_sent = dispatcher.send(self, self.out_buffer[:65536])
        self.out_buffer = self.out_buffer[num_sent:]

    def handle_write(self):
        self.initiate_send()

    def writable(self):
        return (not self.connected) or len(self.out_buffer)

    def send(self, data):
        if self.debug:
            self.log_info('sending %s' % repr(data))
        self.out_buffer = self.out_buffer + data
        # sockloop: the loop must look at this channel's writable() again (inlined _touch).
        m = self._map
        if type(m) is SocketMap:
            log = m._sockloop_log
            log.append(self._fileno)
            if len(log) > _LOG_LIMIT:
                m._sockloop_reset()
        self.initiate_send()

# ---------------------------------------------------------------------------
# used for debugging.
# ---------------------------------------------------------------------------

def compact_traceback():
    t, v, tb = sys.exc_info()
    tbinfo = []
    if not tb: # Must have a traceback
        raise AssertionError("traceback does not exist")
    while tb:
        tbinfo.append((
            tb.tb_frame.f_code.co_filename,
            tb.tb_frame.f_code.co_name,
            str(tb.tb_lineno)
            ))
        tb = tb.tb_next

    # just to be safe
    del tb

    file, function, line = tbinfo[-1]
    info = ' '.join(['[%s|%s|%s]' % x for x in tbinfo])
    return (file, function, line), t, v, info

def close_all(map=None, ignore_all=False):
    if map is None:
        map = socket_map
    for x in list(map.values()):
        try:
            x.close()
        except OSError as x:
            if x.errno == EBADF:
                pass
            elif not ignore_all:
                raise
        except _reraised_exceptions:
            raise
        except:
            if not ignore_all:
                raise
    map.clear()

# Asynchronous File I/O:
#
# After a little research (reading man pages on various unixen, and
# digging through the linux kernel), I've determined that select()
# isn't meant for doing asynchronous file i/o.
# Heartening, though - reading linux/mm/filemap.c shows that linux
# supports asynchronous read-ahead.  So _MOST_ of the time, the data
# will be sitting in memory for us already when we go to read it.
#
# What other OS's (besides NT) support async file i/o?  [VMS?]
#
# Regardless, this is useful for pipes, and stdin/stdout...

if os.name == 'posix':
    class file_wrapper:
        # Here we override just enough to make a file
        # look like a socket for the purposes of asyncore.
        # The passed fd is automatically os.dup()'d

        def __init__(self, fd):
            self.fd = os.dup(fd)

        def __del__(self):
            if self.fd >= 0:
                warnings.warn("unclosed file %r" % self, ResourceWarning,
                              source=self)
            self.close()

        def recv(self, *args):
            return os.read(self.fd, *args)

        def send(self, *args):
            return os.write(self.fd, *args)

        def getsockopt(self, level, optname, buflen=None):
            if (level == socket.SOL_SOCKET and
                optname == socket.SO_ERROR and
                not buflen):
                return 0
            raise NotImplementedError("Only asyncore specific behaviour "
                                      "implemented.")

        read = recv
        write = send

        def close(self):
            if self.fd < 0:
                return
            fd = self.fd
            self.fd = -1
            os.close(fd)

        def fileno(self):
            return self.fd

    class file_dispatcher(dispatcher):

        def __init__(self, fd, map=None):
            dispatcher.__init__(self, None, map)
            self.connected = True
            try:
                fd = fd.fileno()
            except AttributeError:
                pass
            self.set_file(fd)
            # set it to non-blocking mode
            os.set_blocking(fd, False)

        def set_file(self, fd):
            self.socket = file_wrapper(fd)
            self._fileno = self.socket.fileno()
            self.add_channel()

# The classes carry the module name users know (and that install() registers), so that
# repr() reads '<asyncore.dispatcher at 0x...>' as in CPython.
for _cls in (ExitNow, dispatcher, dispatcher_with_send, file_wrapper, file_dispatcher):
    _cls.__module__ = "asyncore"
del _cls
