"""The core answers readable()/writable() natively for the package's own dispatcher,
dispatcher_with_send and async_chat methods (issue 12, section 2): idle channels then cost no
Python call per pass, and output queued from outside a channel's handlers is still seen."""
import os
import socket
import threading
import time
import unittest

import sockloop
from sockloop import asynchat, asyncore

BACKENDS = ["select", "poll", "epoll"] if sockloop._core.default_backend() == "epoll" else ["select", "poll"]


class Chat(asynchat.async_chat):
    def __init__(self, sock, map):
        asynchat.async_chat.__init__(self, sock, map=map)
        self.set_terminator(b"\n")
        self.lines = []
        self.parts = []

    def collect_incoming_data(self, data):
        self.parts.append(data)

    def found_terminator(self):
        self.lines.append(b"".join(self.parts))
        self.parts = []


class NativeAnswers(unittest.TestCase):
    def pairs(self, n):
        out = []
        for _ in range(n):
            a, b = socket.socketpair()
            self.addCleanup(a.close)
            self.addCleanup(b.close)
            out.append((a, b))
        return out

    def python_calls(self):
        return sockloop._core.stats()["python_interest_calls"]

    def test_idle_chat_channels_cost_no_python_call_per_pass(self):
        for backend in BACKENDS:
            with self.subTest(backend=backend):
                m = asyncore.SocketMap()
                chans = [Chat(a, m) for a, _ in self.pairs(200)]
                asyncore.loop(timeout=0, map=m, count=2, backend=backend)
                before = self.python_calls()
                asyncore.loop(timeout=0, map=m, count=20, backend=backend)
                self.assertEqual(self.python_calls(), before)
                for c in chans:
                    c.close()

    def test_an_override_is_still_called(self):
        class Quiet(Chat):
            def writable(self):
                self.asked = getattr(self, "asked", 0) + 1
                return False

        for backend in BACKENDS:
            with self.subTest(backend=backend):
                m = asyncore.SocketMap()
                (a, b), = self.pairs(1)
                q = Quiet(a, m)
                asyncore.loop(timeout=0, map=m, count=3, backend=backend)
                self.assertGreaterEqual(q.asked, 3)
                plain = Chat(self.pairs(1)[0][0], m)
                plain.writable = lambda: False     # per instance too
                asyncore.loop(timeout=0, map=m, count=2, backend=backend)
                q.close()
                plain.close()

    def test_push_from_outside_a_handler_is_flushed(self):
        for backend in BACKENDS:
            with self.subTest(backend=backend):
                m = asyncore.SocketMap()
                (a, b), = self.pairs(1)
                c = Chat(a, m)
                asyncore.loop(timeout=0, map=m, count=2, backend=backend)
                payload = os.urandom(4 << 20)
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
                c.push(payload)            # far more than the socket takes at once
                while c.producer_fifo and time.monotonic() - start < 20:
                    asyncore.loop(timeout=5, map=m, count=1, backend=backend)
                t.join(timeout=30)
                self.assertLess(time.monotonic() - start, 4, "the leftover waited out a timeout")
                self.assertEqual(bytes(got), payload)
                c.close_when_done()        # from outside too: closes on the next pass
                asyncore.loop(timeout=5, map=m, count=1, backend=backend)
                self.assertEqual(m, {})


class NativeEvents(unittest.TestCase):
    """handle_read_event/handle_write_event run in Rust only while nobody replaced them."""

    def test_overrides_and_patches_of_the_event_methods_are_called(self):
        seen = []

        class R(asyncore.dispatcher):
            def writable(self):
                return False

            def handle_read(self):
                seen.append("read")
                self.recv(100)

        class Own(R):
            def handle_read_event(self):
                seen.append("own")
                R.handle_read_event(self)

        saved = asyncore.dispatcher.handle_read_event
        for backend in BACKENDS:
            with self.subTest(backend=backend):
                a, b = socket.socketpair()
                self.addCleanup(b.close)
                m = asyncore.SocketMap()
                r = R(a, m)

                def ping(expect):
                    seen.clear()
                    b.send(b"x")
                    asyncore.loop(timeout=5, map=m, count=1, backend=backend)
                    self.assertEqual(seen, expect)

                ping(["read"])
                r.handle_read_event = lambda: seen.append("instance")      # per instance
                ping(["instance"])
                del r.handle_read_event
                r.recv(100)
                ping(["read"])
                asyncore.dispatcher.handle_read_event = lambda self: (seen.append("patched"),
                                                                      self.recv(100))
                try:
                    ping(["patched"])                                     # patched globally
                finally:
                    asyncore.dispatcher.handle_read_event = saved
                ping(["read"])
                r.close()
                a, b2 = socket.socketpair()
                self.addCleanup(b2.close)
                o = Own(a, m)
                b = b2
                ping(["own", "read"])                                     # by a subclass
                o.close()


if __name__ == "__main__":
    unittest.main()
