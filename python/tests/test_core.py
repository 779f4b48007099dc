"""sockloop's own behaviour beyond CPython's suites: backends, sockets closed behind the loop's
back, exceptions, the GIL released while waiting, descriptors past select's 1024, maps whose
entries are replaced, and no growth in memory over many connections. Every test runs over
every backend."""
import fcntl
import gc
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
import unittest

import sockloop
from sockloop import asyncore, asynchat

from support import SocketPairs

BACKENDS = ["select", "poll", "epoll"] if sockloop._core.default_backend() == "epoll" else ["select", "poll"]


class Reader(asyncore.dispatcher):
    def __init__(self, sock, map):
        asyncore.dispatcher.__init__(self, sock, map=map)
        self.data = b""
        self.closed_by_loop = False
        self.errors = []

    def writable(self):
        return False

    def handle_read(self):
        self.data += self.recv(100)

    def handle_close(self):
        self.closed_by_loop = True
        self.close()

    def handle_error(self):
        self.errors.append(sys.exc_info()[1])
        self.close()


class CoreTests(SocketPairs):
    def test_backend_argument(self):
        self.assertEqual(sockloop.backends()[0], "auto")
        with self.assertRaises(ValueError):
            asyncore.loop(map={1: object()}, backend="kqueue9", count=1)
        for backend in BACKENDS + ["auto"]:
            a, b = self.pair()
            m = {}
            r = Reader(a, m)
            b.send(b"x")
            asyncore.loop(timeout=5, map=m, count=1, backend=backend)
            self.assertEqual(r.data, b"x", backend)
            r.close()

    def test_socket_closed_behind_the_loops_back_gets_handle_close(self):
        for backend in BACKENDS:
            with self.subTest(backend=backend):
                a, b = self.pair()
                m = {}
                r = Reader(a, m)
                asyncore.loop(timeout=0, map=m, count=1, backend=backend)  # registered
                r.socket.close()  # behind the loop's back: the map still has the fd
                asyncore.loop(timeout=5, map=m, count=3, backend=backend)
                self.assertTrue(r.closed_by_loop)
                self.assertEqual(m, {})
                self.assertEqual(r.errors, [])

    def test_handler_exception_reaches_handle_error_with_traceback(self):
        seen = []

        class Crash(Reader):
            def handle_read(self):
                raise ZeroDivisionError("boom")

            def handle_error(self):
                nil, t, v, tbinfo = asyncore.compact_traceback()
                seen.append((t, tbinfo))
                self.close()

        for backend in BACKENDS:
            with self.subTest(backend=backend):
                seen.clear()
                a, b = self.pair()
                m = {}
                Crash(a, m)
                b.send(b"x")
                asyncore.loop(timeout=5, map=m, count=2, backend=backend)
                self.assertEqual(len(seen), 1)
                self.assertIs(seen[0][0], ZeroDivisionError)
                self.assertIn("test_core.py|handle_read|", seen[0][1])
                self.assertEqual(m, {})

    def test_exit_now_keyboard_interrupt_system_exit_propagate(self):
        for exc in (asyncore.ExitNow, KeyboardInterrupt, SystemExit):
            class Stop(Reader):
                def handle_read(self):
                    raise exc("stop")

            for backend in BACKENDS:
                with self.subTest(exc=exc, backend=backend):
                    a, b = self.pair()
                    m = {}
                    s = Stop(a, m)
                    b.send(b"x")
                    with self.assertRaises(exc):
                        asyncore.loop(timeout=5, map=m, count=1, backend=backend)
                    self.assertEqual(s.errors, [])
                    s.close()

    def test_gil_is_released_while_waiting(self):
        for backend in BACKENDS:
            with self.subTest(backend=backend):
                a, b = self.pair()
                m = {}
                r = Reader(a, m)

                def other():
                    # Needs the GIL; then wakes the loop. Without the GIL released, the loop's
                    # pass would run out its 20 s timeout first.
                    sum(range(200_000))
                    b.send(b"y")

                t = threading.Thread(target=other)
                start = time.monotonic()
                t.start()
                asyncore.loop(timeout=20, map=m, count=1, backend=backend)
                t.join()
                self.assertEqual(r.data, b"y")
                self.assertLess(time.monotonic() - start, 10)
                r.close()

    def test_descriptors_past_1024(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < 1200:
            if hard != resource.RLIM_INFINITY and hard < 1200:
                self.skipTest("RLIMIT_NOFILE hard limit below 1200")
            resource.setrlimit(resource.RLIMIT_NOFILE, (1200, hard))
            self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        a, b = self.pair()
        for backend in ["auto"] + BACKENDS:
            with self.subTest(backend=backend):
                # A descriptor numbered 1100 or more for the channel, whatever else is open.
                high = socket.socket(fileno=fcntl.fcntl(a.fileno(), fcntl.F_DUPFD_CLOEXEC, 1100))
                self.assertGreaterEqual(high.fileno(), 1100)
                m = {}
                r = Reader(high, m)
                b.send(b"z")
                if backend == "select":
                    with self.assertRaises(ValueError):
                        asyncore.loop(timeout=5, map=m, count=1, backend=backend)
                    a.recv(10)
                else:
                    asyncore.loop(timeout=5, map=m, count=1, backend=backend)
                    self.assertEqual(r.data, b"z")
                r.close()

    def test_replaced_map_entry_gets_the_events(self):
        for backend, maptype in [(b, t) for b in BACKENDS for t in (dict, asyncore.SocketMap)]:
            with self.subTest(backend=backend, map=maptype.__name__):
                a, b = self.pair()
                m = maptype()
                first = Reader(a, m)
                asyncore.loop(timeout=0, map=m, count=1, backend=backend)
                second = Reader.__new__(Reader)
                Reader.__init__(second, a, m)  # same socket, new object in the map
                self.assertIs(m[a.fileno()], second)
                b.send(b"q")
                asyncore.loop(timeout=5, map=m, count=1, backend=backend)
                self.assertEqual((first.data, second.data), (b"", b"q"))
                # An entry that stops wanting anything, then wants again.
                second.readable = lambda: False
                b.send(b"r")
                asyncore.loop(timeout=0.05, map=m, count=1, backend=backend)
                self.assertEqual(second.data, b"q")
                del second.readable
                asyncore.loop(timeout=5, map=m, count=1, backend=backend)
                self.assertEqual(second.data, b"qr")
                # Replaced through the dict itself, then removed.
                third = Reader.__new__(Reader)
                third.__dict__.update(second.__dict__, data=b"")
                # socket and the flags live in the native object, not in __dict__.
                third.socket, third.connected = second.socket, second.connected
                m[a.fileno()] = third
                b.send(b"s")
                asyncore.loop(timeout=5, map=m, count=1, backend=backend)
                self.assertEqual((second.data, third.data), (b"qr", b"s"))
                del m[a.fileno()]
                b.send(b"t")
                asyncore.loop(timeout=0.05, map=m, count=1, backend=backend)
                self.assertEqual(third.data, b"s")

    def test_send_from_outside_a_handler_is_flushed(self):
        # A dispatcher_with_send's interest is computed natively; data handed to send() from
        # outside its handlers (here, between passes) must still make it writable.
        for backend, maptype in [(b, t) for b in BACKENDS for t in (dict, asyncore.SocketMap)]:
            with self.subTest(backend=backend, map=maptype.__name__):
                a, b = self.pair()
                m = maptype()
                w = asyncore.dispatcher_with_send(a, map=m)
                w.handle_read = lambda: None
                asyncore.loop(timeout=0, map=m, count=2, backend=backend)
                payload = os.urandom(4 << 20)  # far more than the socket buffers hold
                got = bytearray()

                def drain():
                    while len(got) < len(payload):
                        chunk = b.recv(1 << 20)
                        if not chunk:
                            break
                        got.extend(chunk)

                t = threading.Thread(target=drain)
                t.start()
                start = time.monotonic()
                w.send(payload)
                self.assertTrue(w.out_buffer)
                # Each pass may wait 5 s: only a write interest registered at once (the send
                # told the loop) keeps this well under that.
                for _ in range(100_000):
                    if not w.out_buffer:
                        break
                    asyncore.loop(timeout=5, map=m, count=1, backend=backend)
                t.join(timeout=30)
                self.assertLess(time.monotonic() - start, 4)
                self.assertEqual(bytes(got), payload)
                self.assertEqual(w.out_buffer, b"")
                w.close()

    def test_call_later_runs_in_order_and_cancel_works(self):
        for backend in BACKENDS:
            with self.subTest(backend=backend):
                a, b = self.pair()
                m = asyncore.SocketMap()
                r = Reader(a, m)
                fired = []
                start = time.monotonic()
                asyncore.call_later(0.06, fired.append, "second", map=m)
                asyncore.call_later(0.03, fired.append, "first", map=m)
                asyncore.call_later(0.04, fired.append, "cancelled", map=m).cancel()
                asyncore.call_later(0.09, r.close, map=m)
                asyncore.loop(timeout=30, map=m, backend=backend)  # ends when r closes
                self.assertEqual(fired, ["first", "second"])
                self.assertGreaterEqual(time.monotonic() - start, 0.09)
                self.assertLess(time.monotonic() - start, 10)
                with self.assertRaises(TypeError):
                    asyncore.call_later(1, print, map={})

    def test_wake_and_call_later_from_another_thread(self):
        for backend in BACKENDS:
            with self.subTest(backend=backend):
                a, b = self.pair()
                m = asyncore.SocketMap()
                r = Reader(a, m)
                t = threading.Thread(target=lambda: asyncore.call_later(0, r.close, map=m))
                start = time.monotonic()
                t.start()
                asyncore.loop(timeout=30, map=m, backend=backend)  # woken, runs the close
                t.join()
                self.assertLess(time.monotonic() - start, 10)
                self.assertEqual(m, {})

    def test_ctrl_c_interrupts_a_long_wait(self):
        # The wait runs with the GIL released; SIGINT ends it (the wake pair is Python's signal
        # wakeup descriptor while the loop runs), its handler runs and KeyboardInterrupt
        # leaves loop().
        code = (
            # Python leaves SIGINT alone when it starts ignored (a background job of a shell
            # without job control): give it the usual handler, so the test does not depend on
            # how the suite was started.
            "import signal, socket, sys\n"
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "from sockloop import asyncore\n"
            "a, b = socket.socketpair()\n"
            "class R(asyncore.dispatcher):\n"
            "    def writable(self): return False\n"
            "R(a)\n"
            "try:\n"
            "    print('ready', flush=True)\n"  # inside the try: SIGINT may come at once
            "    asyncore.loop(timeout=60)\n"
            "except KeyboardInterrupt:\n"
            "    print('interrupted', flush=True)\n"
        )
        for backend in BACKENDS:
            with self.subTest(backend=backend):
                env = dict(os.environ, SOCKLOOP_BACKEND=backend)
                p = subprocess.Popen([sys.executable, "-c", code], env=env,
                                     stdout=subprocess.PIPE, text=True)
                with p.stdout:
                    self.assertEqual(p.stdout.readline().strip(), "ready")
                    start = time.monotonic()
                    p.send_signal(signal.SIGINT)
                    self.assertEqual(p.stdout.readline().strip(), "interrupted")
                self.assertEqual(p.wait(timeout=30), 0)
                self.assertLess(time.monotonic() - start, 10)

    def test_socket_map_is_a_dict(self):
        m = asyncore.SocketMap({1: "a"})
        m[2] = "b"
        m.update({3: "c"})
        m |= {4: "d"}
        self.assertEqual(m.pop(1), "a")
        self.assertEqual(m.setdefault(5, "e"), "e")
        self.assertIsInstance(m, dict)
        self.assertEqual(dict(m), {2: "b", 3: "c", 4: "d", 5: "e"})
        self.assertIsInstance(asyncore.socket_map, asyncore.SocketMap)
        m.clear()
        self.assertEqual(m, {})
        # The change log stays bounded when no sockloop loop reads it.
        for i in range(200_000):
            m[i % 10] = i
        self.assertLessEqual(len(m._sockloop_log), 65_537)

    def test_no_growth_over_many_connections(self):
        # Each connection: accept, echo a line through asynchat, close. Memory after a warm-up
        # must not grow with the number of connections.
        class Session(asynchat.async_chat):
            def __init__(self, sock, map):
                asynchat.async_chat.__init__(self, sock, map=map)
                self.set_terminator(b"\n")
                self.buf = []

            def collect_incoming_data(self, data):
                self.buf.append(data)

            def found_terminator(self):
                self.push(b"".join(self.buf) + b"\n")
                self.close_when_done()

        class Server(asyncore.dispatcher):
            def __init__(self, map):
                asyncore.dispatcher.__init__(self, map=map)
                self.create_socket()
                self.bind(("127.0.0.1", 0))
                self.listen(64)
                self.m = map

            def handle_accepted(self, sock, addr):
                Session(sock, self.m)

        for backend in BACKENDS:
            with self.subTest(backend=backend):
                m = {}
                server = Server(m)
                port = server.socket.getsockname()[1]

                def serve(n):
                    for i in range(n):
                        c = socket.create_connection(("127.0.0.1", port))
                        c.setblocking(False)
                        c.send(b"hello %d\n" % i)
                        got = b""
                        for _ in range(100):
                            asyncore.loop(timeout=1, map=m, count=1, backend=backend)
                            try:
                                chunk = c.recv(100)
                            except BlockingIOError:
                                continue
                            got += chunk
                            if not chunk or got.endswith(b"\n"):
                                break
                        self.assertEqual(got, b"hello %d\n" % i)
                        c.close()
                    while len(m) > 1:
                        asyncore.loop(timeout=1, map=m, count=1, backend=backend)

                serve(200)
                gc.collect()
                tracemalloc.start()
                before = tracemalloc.get_traced_memory()[0]
                serve(1000)
                gc.collect()
                after = tracemalloc.get_traced_memory()[0]
                tracemalloc.stop()
                server.close()
                self.assertLess(after - before, 64 * 1024, (before, after))


if __name__ == "__main__":
    unittest.main()
