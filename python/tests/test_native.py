"""The core answers readable()/writable() natively for the package's own dispatcher,
dispatcher_with_send and async_chat methods (issue 12, section 2): idle channels then cost no
Python call per pass, and output queued from outside a channel's handlers is still seen."""
import os
import socket
import sys
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


def python_frames(fn):
    """Runs fn() and returns the names of the Python functions called meanwhile (not C ones)."""
    names = []

    def prof(frame, event, arg):
        if event == "call":
            names.append(frame.f_code.co_name)

    sys.setprofile(prof)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return names


class NativeCore(unittest.TestCase):
    """The hot methods are the native base's (`_core.Channel`), and each one still defers to
    a method replaced on a class or an instance."""

    def pair(self):
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        return a, b

    def test_the_classes_stand_on_the_native_base(self):
        self.assertTrue(issubclass(asyncore.dispatcher, sockloop._core.Channel))
        self.assertIs(asyncore.dispatcher.recv, sockloop._core.Channel.recv)
        self.assertIs(asynchat.async_chat.push, sockloop._core.Channel._chat_push)
        with self.assertRaises(AttributeError):
            asyncore.dispatcher().out_buffer       # only dispatcher_with_send has one
        with self.assertRaises(TypeError):
            asyncore.dispatcher.recv(object(), 10)  # a Python exception, not a crash

    def test_an_echo_round_trip_runs_one_python_frame(self):
        class Echo(asyncore.dispatcher_with_send):
            def handle_read(self):
                data = self.recv(8192)
                if data:
                    self.send(data)

        for backend in BACKENDS:
            with self.subTest(backend=backend):
                a, b = self.pair()
                m = asyncore.SocketMap()
                e = Echo(a, m)
                asyncore.loop(timeout=0, map=m, count=2, backend=backend)

                def trips():
                    for i in range(20):
                        b.send(b"ping %d" % i)
                        asyncore.loop(timeout=5, map=m, count=1, backend=backend)
                        self.assertEqual(b.recv(100), b"ping %d" % i)

                frames = python_frames(trips)
                self.assertEqual(frames.count("handle_read"), 20)
                self.assertEqual(frames.count("loop"), 20)
                for name in ("recv", "send", "initiate_send", "handle_read_event",
                             "readable", "writable"):
                    self.assertNotIn(name, frames)
                e.close()

    def test_a_line_server_runs_only_its_own_frames(self):
        class Lines(Chat):
            def found_terminator(self):
                self.push(b"".join(self.parts) + b"!\n")
                self.parts = []

        a, b = self.pair()
        m = asyncore.SocketMap()
        c = Lines(a, m)
        asyncore.loop(timeout=0, map=m, count=2)

        def trips():
            for i in range(10):
                b.send(b"line %d\n" % i)
                asyncore.loop(timeout=5, map=m, count=1)
                self.assertEqual(b.recv(100), b"line %d!\n" % i)

        frames = python_frames(trips)
        self.assertEqual(frames.count("found_terminator"), 10)
        self.assertEqual(frames.count("collect_incoming_data"), 10)
        native = {"handle_read", "handle_read_event", "get_terminator", "push", "initiate_send",
                  "recv", "send", "_collect_incoming_data", "readable", "writable"}
        self.assertEqual(native & set(frames), set())
        c.close()

    def test_overrides_on_class_and_instance_are_called(self):
        calls = []

        class Mine(asyncore.dispatcher_with_send):
            def initiate_send(self):
                calls.append("class")
                asyncore.dispatcher_with_send.initiate_send(self)

        a, b = self.pair()
        m = {}
        w = Mine(a, m)
        w.send(b"one")
        self.assertEqual((calls, b.recv(10)), (["class"], b"one"))
        w.initiate_send = lambda: calls.append("instance")
        w.send(b"two")
        self.assertEqual(calls, ["class", "instance"])
        self.assertEqual(w.out_buffer, b"two")     # the instance's version sent nothing
        del w.initiate_send
        w.send(b"")
        self.assertEqual((calls[-1], b.recv(10)), ("class", b"two"))

        a, b = self.pair()
        c = Chat(a, m)
        c._peer_recv = lambda: b.recv(10)
        saved = asynchat.async_chat.initiate_send
        asynchat.async_chat.initiate_send = lambda self: calls.append("patched")
        try:
            c.push(b"x")                            # patched on the class after import
        finally:
            asynchat.async_chat.initiate_send = saved
        self.assertEqual(calls[-1], "patched")
        self.assertEqual(list(c.producer_fifo), [b"x"])
        c.push(b"y")                                # native again: one send per call
        self.assertEqual((list(c.producer_fifo), c._peer_recv()), ([b"y"], b"x"))

    def test_dispatcher_send_patched_is_what_initiate_send_uses(self):
        seen = []
        saved = asyncore.dispatcher.send
        asyncore.dispatcher.send = lambda self, data: seen.append(bytes(data)) or len(data)
        try:
            a, b = self.pair()
            w = asyncore.dispatcher_with_send(a, {})
            w.send(b"abc")
        finally:
            asyncore.dispatcher.send = saved
        self.assertEqual((seen, w.out_buffer), ([b"abc"], b""))

    def feed(self, chat, pieces):
        a = chat.socket
        for piece in pieces:
            chat._peer.send(piece)
            chat.handle_read()
        return a

    def chat(self, terminator, cls=Chat):
        a, b = self.pair()
        c = cls(a, {})
        c._peer = b
        c.set_terminator(terminator)
        return c

    def test_byte_terminators_split_across_reads(self):
        c = self.chat(b"\r\n")
        self.feed(c, [b"ab\r", b"\ncd", b"\r", b"\n\r\nef"])
        self.assertEqual(c.lines, [b"ab", b"cd", b""])
        self.assertEqual((c.parts, c.ac_in_buffer), ([b"ef"], b""))
        long = self.chat(b"END")
        self.feed(long, [b"xE", b"EN", b"ENDyEN", b"Dz"])
        self.assertEqual(long.lines, [b"xEEN", b"y"])
        self.assertEqual(long.parts, [b"z"])

    def test_count_and_none_terminators_and_changes_in_found_terminator(self):
        class Switch(Chat):
            # A header line tells how many bytes of body follow.
            def found_terminator(self):
                Chat.found_terminator(self)
                if self.get_terminator() == b"\n":
                    self.set_terminator(int(self.lines[-1]))
                else:
                    self.set_terminator(b"\n")

        c = self.chat(b"\n", Switch)
        self.feed(c, [b"5\nab", b"cde3", b"\nxyz"])
        self.assertEqual(c.lines, [b"5", b"abcde", b"3", b"xyz"])
        n = self.chat(7)
        self.feed(n, [b"abc", b"defgh"])
        self.assertEqual((n.lines, n.get_terminator(), n.parts), ([b"abcdefg"], 0, [b"h"]))
        none = self.chat(None)
        self.feed(none, [b"a\nb", b"c"])
        self.assertEqual((none.lines, none.parts), ([], [b"a\nb", b"c"]))

    def test_str_terminator_with_use_encoding(self):
        class Enc(Chat):
            use_encoding = 1

        c = self.chat("--", Enc)
        self.assertEqual(c.get_terminator(), b"--")
        self.feed(c, [b"a-", b"-b--"])
        self.assertEqual(c.lines, [b"a", b"b"])

    def test_a_cycle_through_out_buffer_is_collected(self):
        import gc
        import weakref

        class Holder(bytes):
            pass

        w = asyncore.dispatcher_with_send()
        w.out_buffer = Holder(b"queued")
        w.out_buffer.owner = w            # channel -> out_buffer -> channel
        gone = weakref.ref(w)
        del w
        gc.collect()
        self.assertIsNone(gone())

    def test_bad_input_gives_python_exceptions(self):
        c = self.chat(b"\n")
        with self.assertRaises(TypeError):
            c.push(3)
        with self.assertRaises(TypeError):
            c.push("text")
        c.ac_out_buffer_size = 0
        with self.assertRaises(ValueError):
            c.push(b"needs splitting")
        bare = asyncore.dispatcher()
        with self.assertRaises(AttributeError):
            bare.recv(10)                          # no socket at all
        w = asyncore.dispatcher_with_send()
        with self.assertRaises(TypeError):
            w.send(12)                             # bytes + int
        self.assertEqual(w.out_buffer, b"")


if __name__ == "__main__":
    unittest.main()
