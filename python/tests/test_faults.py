"""Faults found by a review of the package (issue 12, section 3), each pinned by a test.
Every test runs over every backend; time bounds are generous for a loaded 2-core machine,
and the stimuli (timers, other threads) are never what a result waits on: each wait is on a
condition with a deadline."""
import gc
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest
import warnings
import weakref

import sockloop
from sockloop import asyncore

from support import SocketPairs

BACKENDS = ["select", "poll", "epoll"] if sockloop._core.default_backend() == "epoll" else ["select", "poll"]


class Idle(asyncore.dispatcher):
    """Reads, never writes; counts how often the loop asks it for its interest."""

    def __init__(self, sock, map):
        asyncore.dispatcher.__init__(self, sock, map=map)
        self.asked = 0
        self.data = b""

    def readable(self):
        self.asked += 1
        return True

    def writable(self):
        return False

    def handle_read(self):
        self.data += self.recv(1000)

    def handle_close(self):
        self.close()


class Sink(asyncore.dispatcher_with_send):
    def handle_read(self):
        self.recv(1000)


class Base(SocketPairs):
    def cases(self, maps=(dict, asyncore.SocketMap)):
        return [(backend, maptype()) for backend in BACKENDS for maptype in maps]


class InternalWakeups(Base):
    def test_wakes_are_not_passes_and_do_not_shorten_the_timeout(self):
        for backend, m in self.cases():
            with self.subTest(backend=backend, map=type(m).__name__):
                a, b = self.pair()
                ch = Idle(a, m)
                stop = threading.Event()

                def nudge():
                    while not stop.wait(0.02):
                        asyncore.wake(m)

                t = threading.Thread(target=nudge)
                start = time.monotonic()
                t.start()
                try:
                    asyncore.loop(timeout=0.2, map=m, count=2, backend=backend)
                finally:
                    stop.set()
                    t.join()
                took = time.monotonic() - start
                self.assertGreaterEqual(took, 0.38, "woken passes counted or timeout shortened")
                self.assertLess(took, 5)
                ch.close()

    def test_timers_far_away_do_not_end_the_pass(self):
        for backend, m in self.cases(maps=(asyncore.SocketMap,)):
            with self.subTest(backend=backend, map=type(m).__name__):
                a, b = self.pair()
                ch = Idle(a, m)
                h = asyncore.call_later(60, self.fail, "must not run", map=m)
                start = time.monotonic()
                asyncore.loop(timeout=0.15, map=m, count=2, backend=backend)
                self.assertGreaterEqual(time.monotonic() - start, 0.28)
                h.cancel()
                ch.close()

    def test_out_buffer_filled_by_another_handler_is_sent_at_once(self):
        # B's handler appends to A's out_buffer directly (no send()): the loop must see A
        # become writable without waiting for its 30 s timeout.
        for backend, m in self.cases():
            with self.subTest(backend=backend, map=type(m).__name__):
                a1, a2 = self.pair()
                b1, b2 = self.pair()
                sink = Sink(a1, m)

                class Relay(Idle):
                    def handle_read(self):
                        if self.recv(100):
                            sink.out_buffer += b"relayed"

                relay = Relay(b1, m)
                asyncore.loop(timeout=0, map=m, count=2, backend=backend)  # all registered, idle
                b2.send(b"x")
                a2.settimeout(10)
                start = time.monotonic()
                got = b""
                while len(got) < 7 and time.monotonic() - start < 10:
                    asyncore.loop(timeout=30, map=m, count=1, backend=backend)
                    a2.setblocking(False)
                    try:
                        got += a2.recv(100)
                    except BlockingIOError:
                        pass
                self.assertEqual(got, b"relayed")
                self.assertLess(time.monotonic() - start, 5)
                sink.close()
                relay.close()


class Signals(Base):
    def test_a_signal_handler_runs_at_once_and_the_wait_resumes(self):
        # PEP 475: the wait ends on the signal, the handler runs, the wait goes on with the
        # time left (so the loop still takes its whole timeout).
        for backend, m in self.cases(maps=(asyncore.SocketMap,)):
            with self.subTest(backend=backend, map=type(m).__name__):
                a, b = self.pair()
                ch = Idle(a, m)
                ran = []
                old = signal.signal(signal.SIGALRM, lambda *_: ran.append(time.monotonic()))
                try:
                    start = time.monotonic()
                    signal.setitimer(signal.ITIMER_REAL, 0.2)
                    asyncore.loop(timeout=1.2, map=m, count=1, backend=backend)
                    end = time.monotonic()
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                    signal.signal(signal.SIGALRM, old)
                self.assertEqual(len(ran), 1)
                self.assertLess(ran[0] - start, 0.7, "handler ran late: the wait was not interrupted")
                self.assertGreaterEqual(end - start, 1.1, "the signal shortened the timeout")
                self.assertLessEqual(ch.asked, 4)
                ch.close()

    def test_keyboard_interrupt_leaves_a_long_wait_at_once(self):
        code = (
            "import signal, socket, time\n"
            "from sockloop import asyncore\n"
            "a, b = socket.socketpair()\n"
            "class R(asyncore.dispatcher):\n"
            "    def writable(self): return False\n"
            "R(a)\n"
            "signal.setitimer(signal.ITIMER_REAL, 0.3)\n"
            "signal.signal(signal.SIGALRM, signal.default_int_handler)\n"
            "start = time.monotonic()\n"
            "try:\n"
            "    asyncore.loop(timeout=60)\n"
            "except KeyboardInterrupt:\n"
            "    print('%.3f' % (time.monotonic() - start), flush=True)\n"
        )
        for backend in BACKENDS:
            with self.subTest(backend=backend):
                env = dict(os.environ, SOCKLOOP_BACKEND=backend)
                r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                   text=True, timeout=60)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertLess(float(r.stdout), 0.9, "Ctrl-C waited for a 1 s slice")

    def test_call_later_and_wake_from_a_signal_handler_never_deadlock(self):
        code = (
            "import signal\n"
            "from sockloop import asyncore\n"
            "m = asyncore.SocketMap()\n"
            "fired = []\n"
            "def on_alarm(*_):\n"
            "    asyncore.call_later(0, fired.append, 1, map=m).cancel()\n"
            "    asyncore.call_later(0, fired.append, 1, map=m)\n"
            "    asyncore.wake(m)\n"
            "signal.signal(signal.SIGALRM, on_alarm)\n"
            "signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)\n"
            "for i in range(100000):\n"
            "    asyncore.call_later(30, print, map=m).cancel()\n"
            "    asyncore.wake(m)\n"
            "    if i % 100 == 0:\n"
            "        asyncore._run_timers(m)\n"
            "signal.setitimer(signal.ITIMER_REAL, 0)\n"
            "print('done', len(m._sockloop_timers) < 2000, flush=True)\n"
        )
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.split(), ["done", "True"])


class Timeouts(Base):
    def test_select_rules_refuse_bad_timeouts(self):
        for backend, m in self.cases():
            with self.subTest(backend=backend, map=type(m).__name__):
                a, b = self.pair()
                ch = Idle(a, m)
                for bad, exc in ((-1, ValueError), (math.nan, ValueError), (math.inf, OverflowError)):
                    with self.assertRaises(exc):
                        asyncore.loop(timeout=bad, use_poll=False, map=m, count=1, backend=backend)
                    with self.assertRaises(exc):
                        asyncore.poll(bad, m, backend=backend)
                ch.close()

    def test_poll_rules(self):
        for backend, m in self.cases():
            with self.subTest(backend=backend, map=type(m).__name__):
                a, b = self.pair()
                ch = Idle(a, m)
                for bad, exc in ((math.nan, ValueError), (math.inf, OverflowError)):
                    with self.assertRaises(exc):
                        asyncore.loop(timeout=bad, use_poll=True, map=m, count=1, backend=backend)
                    with self.assertRaises(exc):
                        asyncore.poll2(bad, m, backend=backend)
                # A negative timeout waits without limit, blocking (never spinning) until data.
                t = threading.Timer(0.3, b.send, (b"late",))
                start = time.monotonic()
                t.start()
                asyncore.loop(timeout=-1, use_poll=True, map=m, count=1, backend=backend)
                t.join()
                self.assertEqual(ch.data, b"late")
                self.assertGreaterEqual(time.monotonic() - start, 0.25)
                self.assertLessEqual(ch.asked, 2, "the wait spun")
                ch.close()

    def test_an_empty_map_ignores_the_timeout(self):
        asyncore.loop(timeout=math.nan, map={})
        asyncore.poll(-1, {})


class FastPathFollowsPatches(Base):
    def test_dispatcher_writable_patched_after_the_first_loop(self):
        class W(asyncore.dispatcher):
            writes = 0

            def handle_write(self):
                W.writes += 1

        saved = asyncore.dispatcher.writable
        for backend, m in self.cases():
            with self.subTest(backend=backend, map=type(m).__name__):
                a, b = self.pair()
                w = W(a, m)
                asyncore.loop(timeout=1, map=m, count=1, backend=backend)
                self.assertEqual(W.writes, 1)
                asyncore.dispatcher.writable = lambda self: False
                try:
                    asyncore.loop(timeout=0.05, map=m, count=2, backend=backend)
                finally:
                    asyncore.dispatcher.writable = saved
                self.assertEqual(W.writes, 1, "a patched dispatcher.writable was ignored")
                W.writable = lambda self: False           # and on the subclass itself
                try:
                    asyncore.loop(timeout=0.05, map=m, count=2, backend=backend)
                finally:
                    del W.writable
                self.assertEqual(W.writes, 1)
                asyncore.loop(timeout=1, map=m, count=1, backend=backend)
                self.assertEqual(W.writes, 2, "the native answer did not come back")
                W.writes = 0
                w.close()


class References(Base):
    def test_an_abandoned_map_and_its_channels_are_freed(self):
        for backend, m in self.cases():
            with self.subTest(backend=backend, map=type(m).__name__):
                a, b = socket.socketpair()
                b.close()
                ch = Idle(a, m)
                asyncore.loop(timeout=0, map=m, count=1, backend=backend)
                gone_ch, gone_sock = weakref.ref(ch), weakref.ref(ch.socket)
                del ch, m, a
                gc.collect()
                self.assertIsNone(gone_ch(), "the poller cache kept the channel alive")
                self.assertIsNone(gone_sock())

    def test_a_closed_channel_is_freed_at_once(self):
        for backend, m in self.cases():
            with self.subTest(backend=backend, map=type(m).__name__):
                a, b = self.pair()
                keep = Idle(self.pair()[0], m)
                ch = Idle(a, m)
                asyncore.loop(timeout=0, map=m, count=1, backend=backend)
                ch.close()
                gone = weakref.ref(ch)
                del ch
                self.assertIsNone(gone(), "a closed channel stayed referenced")
                # ... and one closed inside a pass too.

                class Closer(Idle):
                    def handle_read(self):
                        self.recv(10)
                        self.close()
                        refs.append(weakref.ref(self))

                refs = []
                c1, c2 = self.pair()
                Closer(c1, m)
                c2.send(b"x")
                asyncore.loop(timeout=5, map=m, count=1, backend=backend)
                self.assertEqual(len(refs), 1)
                self.assertIsNone(refs[0]())
                keep.close()

    def test_cancelled_timers_leave_the_heap(self):
        m = asyncore.SocketMap()
        a, b = self.pair()
        ch = Idle(a, m)
        for i in range(100_000):
            asyncore.call_later(60, print, map=m).cancel()
            if i % 50 == 0:
                asyncore.poll(0, m)   # the loop's passes drop them
        self.assertLess(len(m._sockloop_timers), 200)
        live = [asyncore.call_later(60 + i, print, map=m) for i in range(10)]
        for i in range(10_000):
            asyncore.call_later(60, print, map=m).cancel()
            if i % 50 == 0:
                asyncore.poll(0, m)
        self.assertEqual(sorted(e[2] for e in m._sockloop_timers if e[2] is not None), sorted(live))
        for h in live:
            h.cancel()
        ch.close()


class ClosedDescriptors(Base):
    def test_no_python_fstat_while_waiting(self):
        calls = []
        real = os.fstat

        def counting(fd):
            calls.append(fd)
            return real(fd)

        for backend, m in self.cases():
            with self.subTest(backend=backend, map=type(m).__name__):
                a, b = self.pair()
                ch = Idle(a, m)
                os.fstat = counting
                try:
                    asyncore.loop(timeout=1.3, map=m, count=1, backend=backend)
                finally:
                    os.fstat = real
                ch.close()
        self.assertEqual(calls, [])

    def test_select_keeps_its_wake_pair_below_1024(self):
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < 1300:
            if hard != resource.RLIM_INFINITY and hard < 1300:
                self.skipTest("RLIMIT_NOFILE hard limit below 1300")
            resource.setrlimit(resource.RLIMIT_NOFILE, (1300, hard))
            self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        # Fill every descriptor up to past 1024, then free one low slot.
        held = []
        while True:
            fd = os.dup(0) if not held else os.dup(held[0])
            held.append(fd)
            if fd > 1100:
                break
        self.addCleanup(lambda: [os.close(fd) for fd in held if fd >= 0])
        for _ in range(3):     # two for the socket pair below, one for the wake pair
            os.close(held.pop(5))
        a, b = self.pair()
        m = asyncore.SocketMap()
        r = Idle(a, m)
        threading.Timer(0.2, asyncore.call_later, (0, r.close), {"map": m}).start()
        start = time.monotonic()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            asyncore.loop(timeout=20, map=m, backend="select")   # ends when woken
        self.assertLess(time.monotonic() - start, 5, "the wake pair was not watched")
        self.assertEqual(m, {})
        # With nothing free below 1024 the package says so instead of silently not waking.
        for fd in held:
            os.close(fd)
        held.clear()
        nothing_low = []
        while True:
            fd = os.dup(0)
            nothing_low.append(fd)
            if fd > 1100:
                break
        self.addCleanup(lambda: [os.close(fd) for fd in nothing_low])
        with self.assertWarns(RuntimeWarning):
            sockloop._core.Poller("select", asyncore._reraised_exceptions,
                                  asyncore._handle_error_in_except)


if __name__ == "__main__":
    unittest.main()
