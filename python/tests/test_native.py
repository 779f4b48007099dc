"""The core answers readable()/writable() natively for the package's own dispatcher,
dispatcher_with_send and async_chat methods (issue 12, section 2): idle channels then cost no
Python call per pass, and output queued from outside a channel's handlers is still seen."""
import collections
import errno
import os
import socket
import sys
import threading
import time
import unittest

import sockloop
from sockloop import asynchat, asyncore

from support import SocketPairs

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


class NativeCore(SocketPairs):
    """The hot methods are the native base's (`_core.Channel`), and each one still defers to
    a method replaced on a class or an instance."""

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


class Resolution(SocketPairs):
    """The native methods decide once per class what each name they call leads to, and keep
    that until the class (or a base) changes; instance attributes are looked at every time;
    the socket's descriptor and timeout are read from the socket object on every call. Each
    test warms the per-class decision up first, then changes something and expects Python's
    answer."""

    def echo_class(self, seen):
        class Echo(asyncore.dispatcher_with_send):
            def handle_read(self):
                seen.append("class")
                data = self.recv(100)
                if data:
                    self.send(data)
        return Echo

    def round_trip(self, ch, peer, m, backend=None):
        peer.send(b"ping")
        asyncore.loop(timeout=5, map=m, count=1, backend=backend)

    def test_a_method_reassigned_on_the_class_after_events_is_used_next(self):
        for backend in BACKENDS:
            with self.subTest(backend=backend):
                seen = []
                Echo = self.echo_class(seen)
                a, b = self.pair()
                m = asyncore.SocketMap()
                ch = Echo(a, m)
                for _ in range(3):
                    self.round_trip(ch, b, m, backend)
                    self.assertEqual(b.recv(100), b"ping")
                self.assertEqual(seen, ["class"] * 3)

                def replaced(self):
                    seen.append("replaced")
                    self.recv(100)
                Echo.handle_read = replaced
                self.round_trip(ch, b, m, backend)
                self.assertEqual(seen[-1], "replaced")
                Echo.handle_read = staticmethod(lambda: seen.append("static"))
                self.round_trip(ch, b, m, backend)
                self.assertEqual(seen[-1], "static")
                ch.recv(100)
                del Echo.handle_read        # back to dispatcher's: logs "unhandled read event"
                logged = []
                Echo.log_info = lambda self, msg, kind="info": logged.append(msg)
                self.round_trip(ch, b, m, backend)
                self.assertIn("unhandled read event", logged)
                ch.close()

    def test_a_base_class_patched_after_events_reaches_its_subclasses(self):
        seen = []
        Echo = self.echo_class(seen)
        a, b = self.pair()
        w = Echo(a, {})
        for _ in range(3):
            w.send(b"x")
            self.assertEqual(b.recv(10), b"x")
        saved = asyncore.dispatcher_with_send.initiate_send
        asyncore.dispatcher_with_send.initiate_send = lambda self: seen.append("patched")
        try:
            w.send(b"y")                 # queued only: the patched initiate_send sends nothing
        finally:
            asyncore.dispatcher_with_send.initiate_send = saved
        self.assertEqual((seen[-1], w.out_buffer), ("patched", b"y"))
        w.send(b"")
        self.assertEqual(b.recv(10), b"y")
        sent = []
        saved_send = asyncore.dispatcher.send
        asyncore.dispatcher.send = lambda self, data: sent.append(bytes(data)) or len(data)
        try:
            w.send(b"z")                 # initiate_send goes through dispatcher.send
        finally:
            asyncore.dispatcher.send = saved_send
        self.assertEqual((sent, w.out_buffer), ([b"z"], b""))

    def test_a_per_instance_method_set_after_events_is_used(self):
        seen = []
        Echo = self.echo_class(seen)
        a, b = self.pair()
        m = asyncore.SocketMap()
        ch = Echo(a, m)
        for _ in range(2):
            self.round_trip(ch, b, m)
            b.recv(100)
        ch.handle_read = lambda: (seen.append("instance"), ch.recv(100))
        self.round_trip(ch, b, m)
        self.assertEqual(seen[-1], "instance")
        ch.recv = lambda size: b"from the instance"
        del ch.handle_read
        self.round_trip(ch, b, m)          # the class's handle_read calls self.recv
        self.assertEqual(b.recv(100), b"from the instance")
        del ch.recv
        ch.recv(100)
        ch.close()

    def test_a_replaced_socket_is_the_one_read_and_written(self):
        a, b = self.pair()
        c, d = self.pair()
        w = asyncore.dispatcher_with_send(a, {})
        b.send(b"first")
        self.assertEqual(w.recv(100), b"first")
        w.send(b"to b")
        self.assertEqual(b.recv(100), b"to b")
        c.setblocking(False)
        w.socket = c
        d.send(b"second")
        b.send(b"not this")
        self.assertEqual(w.recv(100), b"second")
        w.send(b"to d")
        self.assertEqual(d.recv(100), b"to d")
        self.assertEqual(a.recv(100), b"not this")      # left on the old socket

    def test_a_socket_closed_behind_the_channel_is_not_read_through_its_old_number(self):
        a, b = socket.socketpair()
        self.addCleanup(b.close)
        closed = []

        class Ch(asyncore.dispatcher):
            def handle_close(self):
                closed.append(True)

        ch = Ch(a, {})
        number = a.fileno()
        a.close()
        c, d = self.pair()                 # most likely takes the freed number
        d.send(b"someone else's")
        self.assertEqual(ch.recv(100), b"")
        self.assertEqual(closed, [True])
        if c.fileno() == number:
            self.assertEqual(c.recv(100), b"someone else's")

    def test_a_timeout_set_behind_the_channel_is_honoured(self):
        a, b = self.pair()
        ch = asyncore.dispatcher(a, {})
        with self.assertRaises(BlockingIOError):
            ch.recv(10)                      # non-blocking: nothing there
        a.settimeout(0.2)
        start = time.monotonic()
        with self.assertRaises(TimeoutError):
            ch.recv(10)                      # waits as socket.recv with a timeout does
        self.assertGreater(time.monotonic() - start, 0.15)
        a.setblocking(False)
        b.send(b"ok")
        self.assertEqual(ch.recv(10), b"ok")

    def test_the_direct_methods_take_their_argument_as_python_methods_do(self):
        a, b = self.pair()
        w = asyncore.dispatcher_with_send(a, {})
        b.send(b"abc")
        self.assertEqual(w.recv(buffer_size=2), b"ab")
        self.assertEqual(asyncore.dispatcher.recv(w, 10), b"c")
        w.send(data=b"k")
        self.assertEqual(b.recv(10), b"k")
        self.assertEqual(asyncore.dispatcher.send(w, data=b"v"), 1)
        self.assertEqual(b.recv(10), b"v")
        for call in (lambda: w.recv(), lambda: w.recv(1, 2), lambda: w.recv(size=3),
                     lambda: w.send(), lambda: asyncore.dispatcher.recv(object(), 1)):
            with self.assertRaises(TypeError):
                call()
        c = Chat(self.pair()[0], {})
        c.push(data=b"q")
        self.assertEqual(list(c.producer_fifo), [] if c.connected else [b"q"])

    def test_a_property_on_the_class_wins_over_the_instance_dict(self):
        seen = []

        class P(asyncore.dispatcher):
            @property
            def handle_read(self):
                return lambda: seen.append("property")

        a, b = self.pair()
        m = asyncore.SocketMap()
        p = P(a, m)
        p.__dict__["handle_read"] = lambda: seen.append("dict")
        self.round_trip(p, b, m)
        self.assertEqual(seen, ["property"])
        p.close()


class NativeFields(SocketPairs):
    """`connected`, `accepting`, `connecting`, `debug` and `socket` live in the native object
    (issue 12, section 4): they still behave as plain attributes, a subclass may take one over,
    and assigning a flag from anywhere is seen by the next pass without a whole scan."""

    def full_scans(self):
        return sockloop._core.stats()["full_scans"]

    def test_they_read_back_what_was_assigned(self):
        d = asyncore.dispatcher()
        self.assertIs(d.connected, False)
        self.assertIs(d.accepting, False)
        self.assertIs(d.connecting, False)
        self.assertIs(d.debug, False)
        self.assertIsNone(d.socket)
        marker = object()
        d.connected, d.accepting, d.debug = 1, "", marker
        self.assertEqual((d.connected, d.accepting), (1, ""))
        self.assertIs(d.debug, marker)
        self.assertNotIn("connected", d.__dict__)
        bare = asyncore.dispatcher.__new__(asyncore.dispatcher)
        with self.assertRaises(AttributeError):
            bare.socket                     # never assigned: missing, as a plain attribute
        self.assertIs(bare.connected, False)
        with self.assertRaises(AttributeError):
            del d.connected

    def test_truthiness_of_any_assigned_value_is_what_the_state_machine_uses(self):
        events = []

        class Listener(asyncore.dispatcher):
            def handle_accept(self):
                events.append("accept")

            def handle_read(self):
                events.append("read")

        a, b = self.pair()
        ch = Listener(a, {})
        ch.accepting = [1]                  # truthy, not a bool
        ch.handle_read_event()
        ch.accepting = []
        ch.handle_read_event()
        self.assertEqual(events, ["accept", "read"])

    def test_a_subclass_class_attribute_takes_the_name_over(self):
        events = []

        class AlwaysListening(asyncore.dispatcher):
            accepting = True                # class level, as an old program might write it

            def handle_accept(self):
                events.append("accept")

            def handle_read(self):
                events.append("read")

        class NeverConnected(asyncore.dispatcher_with_send):
            connected = False

            def handle_read(self):
                events.append("read")

        a, b = self.pair()
        ch = AlwaysListening(a, {})
        self.assertIn("accepting", AlwaysListening.__dict__)
        ch.handle_read_event()
        self.assertEqual(events, ["accept"])
        ch.accepting = False                # goes to the instance dict, and wins there
        self.assertIn("accepting", ch.__dict__)
        self.assertIs(ch.accepting, False)
        self.assertIs(AlwaysListening.accepting, True)
        events.clear()
        ch.handle_read_event()              # the instance's False: a read, not an accept
        self.assertEqual(events, ["read"])
        a2, b2 = self.pair()
        nc = NeverConnected(a2, {})
        self.assertTrue(nc.connected)       # __init__ assigned it on the instance
        self.assertFalse(nc.writable())     # connected, nothing to send
        del nc.connected                    # a plain instance attribute here: del works
        self.assertFalse(nc.connected)
        self.assertTrue(nc.writable())

    def test_assigning_a_flag_from_outside_is_seen_by_the_next_pass(self):
        written = []

        class Quiet(asyncore.dispatcher_with_send):
            def handle_read(self):
                self.recv(100)

            def handle_write(self):
                written.append(1)
                self.connected = True       # writable again only while connected is false

        for backend in BACKENDS:
            with self.subTest(backend=backend):
                written.clear()
                m = asyncore.SocketMap()
                a, b = self.pair()
                q = Quiet(a, m)
                for _ in range(3):          # an event: the channel is "touched", then idle
                    b.send(b"x")
                    asyncore.loop(timeout=5, map=m, count=1, backend=backend)
                self.assertEqual(written, [])
                scans = self.full_scans()
                q.connected = False         # from outside any handler
                asyncore.loop(timeout=5, map=m, count=1, backend=backend)
                self.assertEqual(written, [1])
                self.assertEqual(self.full_scans(), scans, "found by a whole scan, not a mark")
                q.close()

    def test_changes_after_an_event_are_seen_without_a_whole_scan(self):
        # A touched channel is not asked again when nothing it answers from can have changed
        # unseen; each way of changing that must still be seen on the next pass.
        written = []

        class Echo(asyncore.dispatcher_with_send):
            def handle_read(self):
                data = self.recv(100)
                if data == b"grow":         # a bytearray buffer growing in place
                    self.out_buffer = bytearray()
                    self.out_buffer += b""
                    self.out_buffer.extend(b"late")
                elif data == b"inst":
                    self.writable = lambda: True
                elif data:
                    self.send(data)

            def handle_write(self):
                written.append(bytes(self.out_buffer) if self.out_buffer else b"")
                dispatcher_with_send_write(self)

        dispatcher_with_send_write = asyncore.dispatcher_with_send.handle_write
        saved = Echo.writable
        for backend in BACKENDS:
            with self.subTest(backend=backend):
                written.clear()
                m = asyncore.SocketMap()
                a, b = self.pair()
                e = Echo(a, m)
                b.send(b"ping")
                asyncore.loop(timeout=5, map=m, count=1, backend=backend)
                self.assertEqual(b.recv(100), b"ping")
                scans = self.full_scans()
                b.send(b"grow")
                asyncore.loop(timeout=5, map=m, count=1, backend=backend)
                asyncore.loop(timeout=5, map=m, count=1, backend=backend)
                self.assertEqual(b.recv(100), b"late")
                e.out_buffer = b""
                b.send(b"inst")
                asyncore.loop(timeout=5, map=m, count=1, backend=backend)
                written.clear()
                asyncore.loop(timeout=5, map=m, count=1, backend=backend)
                self.assertEqual(written, [b""], "the instance's writable was not asked")
                del e.writable
                asyncore.loop(timeout=0, map=m, count=1, backend=backend)
                written.clear()
                Echo.writable = lambda self: True   # the class, after the events
                try:
                    asyncore.loop(timeout=5, map=m, count=1, backend=backend)
                    self.assertEqual(written, [b""])
                finally:
                    Echo.writable = saved
                self.assertLessEqual(self.full_scans() - scans, 1)  # the class change only
                e.close()

    def test_a_chat_queue_changed_in_place_by_a_handler_is_seen_next_pass(self):
        class Direct(Chat):
            def found_terminator(self):
                Chat.found_terminator(self)
                self.producer_fifo.append(b"ack\n")     # not push(): no native method runs

        for backend in BACKENDS:
            with self.subTest(backend=backend):
                m = asyncore.SocketMap()
                a, b = self.pair()
                c = Direct(a, m)
                asyncore.loop(timeout=0, map=m, count=1, backend=backend)
                scans = self.full_scans()
                b.send(b"one\n")
                asyncore.loop(timeout=5, map=m, count=1, backend=backend)   # the read
                self.assertEqual(c.lines, [b"one"])
                asyncore.loop(timeout=5, map=m, count=1, backend=backend)   # the write
                self.assertEqual(b.recv(100), b"ack\n")
                self.assertEqual(self.full_scans(), scans)
                c.close()

    def test_push_honours_the_instance_buffer_size_and_initiate_send(self):
        a, b = self.pair()
        c = Chat(a, {})
        c.ac_out_buffer_size = 3            # on the instance: pieces of 3, one send per push
        c.push(b"abcdefg")
        self.assertEqual(b.recv(100), b"abc")
        self.assertEqual(list(c.producer_fifo), [b"def", b"g"])
        calls = []
        c.initiate_send = lambda: calls.append("instance")
        c.push(b"h")
        self.assertEqual(calls, ["instance"])
        self.assertEqual(list(c.producer_fifo), [b"def", b"g", b"h"])
        del c.initiate_send
        c.push(b"i")                        # native again, on what is queued first
        self.assertEqual(b.recv(100), b"def")
        self.assertEqual(list(c.producer_fifo), [b"g", b"h", b"i"])

    def test_a_list_as_producer_fifo_is_drained_one_send_at_a_time(self):
        # Python's initiate_send drops the head with `del fifo[0]`, so a list of bytes in place
        # of the deque worked there; it must here too.
        a, b = self.pair()
        b.settimeout(5)
        c = Chat(a, {})
        c.producer_fifo = [b"ab", b"cd"]
        c.initiate_send()
        self.assertEqual(c.producer_fifo, [b"cd"])
        c.initiate_send()
        self.assertEqual(c.producer_fifo, [])
        got = b""
        while len(got) < 4:
            got += b.recv(10)
        self.assertEqual(got, b"abcd")

    def test_recv_and_send_call_an_instance_handle_close_when_the_peer_goes(self):
        # The direct recv/send entries look for the instance's own handle_close only on the
        # way out; it must still be the one called.
        for method in ("recv", "send"):
            with self.subTest(method=method):
                a, b = socket.socketpair()
                self.addCleanup(a.close)
                d = asyncore.dispatcher(a, {})
                closed = []
                d.handle_close = lambda: closed.append(method)
                b.close()
                if method == "recv":
                    self.assertEqual(d.recv(10), b"")
                else:
                    self.assertEqual(d.send(b"x" * 4), 0)
                self.assertEqual(closed, [method])

    def test_a_flag_given_to_the_class_after_events_takes_over_at_once(self):
        events = []

        class Ch(asyncore.dispatcher):
            def handle_accept(self):
                events.append("accept")

            def handle_read(self):
                events.append("read")

        a, b = self.pair()
        ch = Ch(a, {})
        ch.handle_read_event()              # the fields are the base's: known for the class
        Ch.accepting = True                 # now the class says otherwise, for every instance
        ch.handle_read_event()
        del Ch.accepting                    # and the instance's own field again
        ch.handle_read_event()
        self.assertEqual(events, ["read", "accept", "read"])


class InlineValues(SocketPairs):
    """Channels are made by `object.__new__` (`_core._OBJECT_NEW`), so on 3.12 their attributes
    are the interpreter's inline values, and the native methods read and write them without
    making the instance a `__dict__`: the handlers' own `self.x` then run the interpreter's
    specialised instructions. What Python code sees of the attributes stays the same."""

    def run_lines(self, cls, n):
        a, b = self.pair()
        m = asyncore.SocketMap()
        c = cls(a, m)
        for i in range(n):
            b.send(b"line %d\n" % i)
            asyncore.loop(timeout=5, map=m, count=1)
            self.assertEqual(b.recv(100), b"line %d\n" % i)
        return c, b, m

    @unittest.skipUnless(sys.version_info[:2] == (3, 12), "inline values of a native base's "
                         "subclass: CPython 3.12's layout")
    def test_the_handlers_attribute_loads_stay_specialised_for_inline_values(self):
        import dis

        class Lines(asynchat.async_chat):
            def __init__(self, sock, map):
                asynchat.async_chat.__init__(self, sock, map=map)
                self.set_terminator(b"\n")
                self.parts = []

            def collect_incoming_data(self, data):
                self.parts.append(data)

            def found_terminator(self):
                line, self.parts = b"".join(self.parts), []
                self.push(line + b"\n")

        self.assertTrue(sockloop._core._OBJECT_NEW)
        c, _, _ = self.run_lines(Lines, 30)
        ops = {i.opname for f in (Lines.collect_incoming_data, Lines.found_terminator)
               for i in dis.get_instructions(f, adaptive=True)}
        # With a real __dict__ these would be LOAD_ATTR_WITH_HINT, STORE_ATTR_WITH_HINT and an
        # unspecialised LOAD_ATTR for the method.
        self.assertIn("LOAD_ATTR_INSTANCE_VALUE", ops)
        self.assertIn("STORE_ATTR_INSTANCE_VALUE", ops)
        self.assertIn("LOAD_ATTR_METHOD_WITH_VALUES", ops)
        c.close()

    def test_the_state_written_natively_reads_back_through_dict_and_getattr(self):
        a, b = self.pair()
        c = Chat(a, {})
        c.set_terminator(b"\r\n")
        b.send(b"one\r\ntw\r")
        c.handle_read_event()
        self.assertEqual(c.lines, [b"one"])
        self.assertEqual(c.parts, [b"tw"])
        self.assertEqual(c.ac_in_buffer, b"\r")     # may begin the terminator
        c.set_terminator(5)
        b.send(b"\nab")
        c.handle_read_event()
        self.assertEqual(vars(c)["terminator"], 1)   # counted down by what arrived
        self.assertEqual(c.get_terminator(), 1)
        # After __dict__ was made, the natives read and write through it as before.
        vars(c)["terminator"] = b"!"
        b.send(b"x!")
        c.handle_read_event()
        self.assertEqual(c.lines, [b"one", b"tw\r\nabx"])
        c.close()

    def test_ac_in_buffer_and_producer_fifo_are_fields_that_act_as_attributes(self):
        a, b = self.pair()
        c = Chat(a, {})
        self.assertNotIn("ac_in_buffer", vars(c))
        self.assertNotIn("producer_fifo", vars(c))
        self.assertEqual(c.ac_in_buffer, b"")
        c.ac_in_buffer = b"par"
        b.send(b"tial\nrest")
        c.handle_read_event()
        self.assertEqual(c.lines, [b"partial"])
        self.assertEqual(c.parts, [b"rest"])
        with self.assertRaises(AttributeError):
            del c.ac_in_buffer                           # as with the other fields
        c.producer_fifo = None                           # any object, None included
        self.assertIsNone(c.producer_fifo)
        c.producer_fifo = collections.deque()
        with self.assertRaisesRegex(AttributeError, "'dispatcher' object has no attribute 'producer_fifo'"):
            asyncore.dispatcher().producer_fifo          # only async_chat sets one
        self.assertIsInstance(c.producer_fifo, collections.deque)
        c.discard_buffers()
        self.assertEqual((c.ac_in_buffer, len(c.producer_fifo)), (b"", 0))
        c.close()

    def test_a_new_producer_fifo_assigned_from_outside_is_sent_on_the_next_pass(self):
        a, b = self.pair()
        m = asyncore.SocketMap()
        c = Chat(a, m)
        asyncore.loop(timeout=0, map=m, count=2)
        c.producer_fifo = collections.deque([b"queued\n"])
        asyncore.loop(timeout=5, map=m, count=1)
        self.assertEqual(b.recv(100), b"queued\n")
        c.close()

    def test_a_class_level_ac_in_buffer_takes_the_name_over(self):
        class Prop(Chat):
            @property
            def ac_in_buffer(self):
                return self.__dict__.get("buf", b"")

            @ac_in_buffer.setter
            def ac_in_buffer(self, value):
                self.__dict__["buf"] = value

        a, b = self.pair()
        c = Prop(a, {})
        b.send(b"ab\ncd")
        c.handle_read_event()
        self.assertEqual(c.lines, [b"ab"])
        self.assertEqual(c.parts, [b"cd"])
        c.set_terminator(b"\r\n")
        b.send(b"\r")
        c.handle_read_event()
        self.assertEqual(vars(c)["buf"], b"\r")       # written through the property
        c.close()

    def test_an_override_put_in_dict_after_events_is_called(self):
        got = []
        a, b = self.pair()
        m = asyncore.SocketMap()
        c = Chat(a, m)
        b.send(b"first\n")
        asyncore.loop(timeout=5, map=m, count=1)
        c.__dict__["found_terminator"] = lambda: got.append(b"".join(c.parts))
        c.__dict__["readable"] = lambda: True
        b.send(b"second\n")
        asyncore.loop(timeout=5, map=m, count=1)
        self.assertEqual(c.lines, [b"first"])
        self.assertEqual(got, [b"second"])
        c.close()

    def test_the_constructor_takes_any_arguments_and_makes_a_plain_instance(self):
        d = asyncore.dispatcher.__new__(asyncore.dispatcher, 1, two=2)
        self.assertIsInstance(d, sockloop._core.Channel)
        self.assertFalse(d.connected)
        self.assertEqual(vars(d), {})
        d.x = 1
        self.assertEqual(vars(d), {"x": 1})
        ch = sockloop._core.Channel()
        with self.assertRaises(AttributeError):
            ch.socket


class PushOntoAnEmptyQueue(SocketPairs):
    """`push` onto an empty queue sends without going through it (python/src/channel.rs,
    `push_direct`); what Python code can see must be what push + initiate_send leave."""

    def fill(self, sock):
        """Fills `sock`'s send buffer (non-blocking) until the kernel takes no more."""
        sent = 0
        while True:
            try:
                sent += sock.send(b"f" * 4096)
            except BlockingIOError:
                return sent

    def test_what_the_kernel_does_not_take_is_queued_and_sent_in_order(self):
        a, b = self.pair()
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        m = asyncore.SocketMap()
        c = Chat(a, m)
        filled = self.fill(a)
        c.push(b"first\n")                       # nothing goes: queued whole
        self.assertEqual(list(c.producer_fifo), [b"first\n"])
        payload = bytes(range(256)) * 200        # within ac_out_buffer_size
        c.push(payload)                          # behind it, in order
        b.setblocking(False)
        got = bytearray()
        want = filled + len(b"first\n") + len(payload)
        for _ in range(10000):
            if len(got) >= want:
                break
            try:
                got += b.recv(65536)
            except BlockingIOError:
                asyncore.loop(timeout=1, map=m, count=1)
        self.assertEqual(bytes(got[filled:]), b"first\n" + payload)
        self.assertEqual(len(c.producer_fifo), 0)
        c.close()

    def test_a_partial_send_queues_the_rest(self):
        a, b = self.pair()
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        c = Chat(a, {})
        payload = b"p" * 60000                   # more than the socket takes at once
        c.push(payload)
        queued = b"".join(c.producer_fifo)
        self.assertGreater(len(queued), 0)
        self.assertLess(len(queued), len(payload))
        b.setblocking(False)
        got = bytearray()
        while len(got) < len(payload) - len(queued):
            got += b.recv(65536)
        self.assertEqual(bytes(got), payload[:len(payload) - len(queued)])
        c.close()

    def test_a_peer_gone_calls_handle_close_with_the_data_queued(self):
        seen = []

        class Closing(Chat):
            def handle_close(self):
                seen.append(list(self.producer_fifo))
                self.close()

        a, b = self.pair()
        c = Closing(a, {})
        b.close()
        c.push(b"late\n")
        self.assertEqual(seen, [[b"late\n"]])

    def test_other_send_errors_reach_handle_error_with_the_data_queued(self):
        seen = []

        class Failing(Chat):
            def handle_error(self):
                seen.append((sys.exc_info()[1], list(self.producer_fifo)))

        a, b = self.pair()
        c = Failing(a, {})
        # An unconnected datagram socket: send(2) fails with EDESTADDRREQ, not a disconnect.
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(udp.close)
        udp.setblocking(False)
        c.socket = udp
        c.push(b"x")
        self.assertEqual(len(seen), 1)
        err, queued = seen[0]
        self.assertIsInstance(err, OSError)
        self.assertEqual(err.errno, errno.EDESTADDRREQ)
        self.assertEqual(queued, [b"x"])

    def test_a_send_or_initiate_send_set_on_the_instance_is_called(self):
        a, b = self.pair()
        c = Chat(a, {})
        sent = []
        c.send = lambda data: sent.append(data) or len(data)
        c.push(b"via instance\n")
        self.assertEqual(sent, [b"via instance\n"])
        self.assertEqual(len(c.producer_fifo), 0)
        del c.send
        c.push(b"native\n")
        self.assertEqual(b.recv(100), b"native\n")

    def test_not_connected_keeps_the_data_queued(self):
        a, b = self.pair()
        c = Chat(a, {})
        c.connected = False
        c.push(b"held\n")
        self.assertEqual(list(c.producer_fifo), [b"held\n"])
        c.connected = True
        c.initiate_send()
        self.assertEqual(b.recv(100), b"held\n")


class SendWithNothingBuffered(SocketPairs):
    """`dispatcher_with_send.send` with an empty buffer is one send(2) (`ws_send_direct`);
    `out_buffer` must be what send + initiate_send leave, at every point Python code runs."""

    def test_what_the_kernel_does_not_take_stays_in_out_buffer(self):
        a, b = self.pair()
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        d = asyncore.dispatcher_with_send(a, {})
        payload = bytes(range(256)) * 200
        d.send(payload)
        rest = d.out_buffer
        self.assertGreater(len(rest), 0)
        self.assertEqual(payload[len(payload) - len(rest):], rest)
        d.send(b"tail")                           # behind what is buffered
        self.assertTrue(d.out_buffer.endswith(b"tail"))
        b.setblocking(False)
        got = bytearray()
        for _ in range(10000):
            if not d.out_buffer and len(got) == len(payload) + 4:
                break
            try:
                got += b.recv(65536)
            except BlockingIOError:
                d.initiate_send()
        self.assertEqual(bytes(got), payload + b"tail")
        d.close()

    def test_a_full_socket_keeps_all_of_it(self):
        a, b = self.pair()
        d = asyncore.dispatcher_with_send(a, {})
        while True:
            try:
                a.send(b"f" * 4096)
            except BlockingIOError:
                break
        d.send(b"waiting")
        self.assertEqual(d.out_buffer, b"waiting")
        d.close()

    def test_a_peer_gone_calls_handle_close_with_the_data_buffered(self):
        seen = []

        class Closing(asyncore.dispatcher_with_send):
            def handle_close(self):
                seen.append(self.out_buffer)
                self.close()

        a, b = self.pair()
        d = Closing(a, {})
        b.close()
        d.send(b"late")
        self.assertEqual(seen, [b"late"])

    def test_another_send_error_propagates_with_the_data_buffered(self):
        a, b = self.pair()
        d = asyncore.dispatcher_with_send(a, {})
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)   # send(2): EDESTADDRREQ
        self.addCleanup(udp.close)
        udp.setblocking(False)
        d.socket = udp
        with self.assertRaises(OSError) as caught:
            d.send(b"x")
        self.assertEqual(caught.exception.errno, errno.EDESTADDRREQ)
        self.assertEqual(d.out_buffer, b"x")

    def test_a_replaced_initiate_send_or_dispatcher_send_is_used(self):
        a, b = self.pair()
        d = asyncore.dispatcher_with_send(a, {})
        calls = []
        d.initiate_send = lambda: calls.append(d.out_buffer)
        d.send(b"one")
        self.assertEqual(calls, [b"one"])
        del d.initiate_send
        d.out_buffer = b""
        original = asyncore.dispatcher.send
        try:
            asyncore.dispatcher.send = lambda self, data: calls.append(data) or 1
            d.send(b"two")
        finally:
            asyncore.dispatcher.send = original
        self.assertEqual(calls, [b"one", b"two"])
        self.assertEqual(d.out_buffer, b"wo")
        d.close()


class OwnAttributes(SocketPairs):
    """The natives tell that an instance does not shadow a method by reading its attributes
    where CPython keeps them (`_core._own_layout()`), checked once per interpreter. An
    attribute an instance gets puts its name in the shared keys of its class, for every
    instance: only the instance that has it may be sent to it."""

    def test_the_layout_is_read_on_3_12_and_3_13(self):
        if sys.version_info[:2] in ((3, 12), (3, 13)) and not sys.abiflags:
            self.assertEqual(sockloop._core._own_layout(), "%d.%d" % sys.version_info[:2])
        else:
            self.assertIsNone(sockloop._core._own_layout())

    def line(self, ch, peer, m, text):
        peer.send(text + b"\n")
        asyncore.loop(timeout=5, map=m, count=1)

    def test_an_instance_override_is_that_instance_s_alone(self):
        m = asyncore.SocketMap()
        (a, b), (c, d) = self.pair(), self.pair()
        first, second = Chat(a, m), Chat(c, m)
        got = []
        self.line(first, b, m, b"one")
        first.found_terminator = lambda: (got.append(b"".join(first.parts)), first.parts.clear())
        for text in (b"two", b"three"):
            self.line(first, b, m, text)
            self.line(second, d, m, text)
        self.assertEqual((first.lines, got), ([b"one"], [b"two", b"three"]))
        self.assertEqual(second.lines, [b"two", b"three"])
        e, f = self.pair()
        third = Chat(e, m)                                   # made after the keys grew
        self.line(third, f, m, b"x")
        self.assertEqual((third.lines, got), ([b"x"], [b"two", b"three"]))
        del first.found_terminator
        self.line(first, b, m, b"four")
        self.assertEqual(first.lines, [b"one", b"four"])
        for ch in (first, second, third):
            ch.close()

    def test_an_instance_readable_set_between_passes_is_asked(self):
        m = asyncore.SocketMap()
        a, b = self.pair()
        ch = Chat(a, m)
        self.line(ch, b, m, b"one")
        ch.readable = lambda: False
        b.send(b"two\n")
        asyncore.loop(timeout=0.05, map=m, count=2)
        self.assertEqual(ch.lines, [b"one"])
        del ch.readable
        asyncore.loop(timeout=5, map=m, count=1)
        self.assertEqual(ch.lines, [b"one", b"two"])
        ch.close()


    def test_a_plain_attribute_is_the_instance_s_then_the_class_s(self):
        class Small(Chat):
            pass

        m = asyncore.SocketMap()
        a, b = self.pair()
        ch = Small(a, m)
        b.send(b"abcdefghijklmnopqrstuvwxyz")
        reads = []

        def read_once():
            before = len(b"".join(ch.parts))
            ch.handle_read_event()
            reads.append(len(b"".join(ch.parts)) - before)

        ch.ac_in_buffer_size = 3            # the instance's own, in its inline values
        read_once()
        del ch.ac_in_buffer_size            # the class's again (asynchat's default)
        Small.ac_in_buffer_size = 2         # ... which the class now replaces
        read_once()
        vars(ch)["ac_in_buffer_size"] = 4   # the instance's, in a real __dict__ now
        read_once()
        del vars(ch)["ac_in_buffer_size"]
        read_once()
        self.assertEqual(reads, [3, 2, 4, 2])
        ch.close()


    def test_a_key_whose_comparison_replaces_the_dict_is_survived(self):
        m = asyncore.SocketMap()
        a, b = self.pair()
        ch = Chat(a, m)
        compared, panics = [], []

        class Colliding(str):
            def __hash__(self):
                return hash("found_terminator")

            def __eq__(self, other):
                compared.append(other)
                ch.__dict__ = dict(ch.__dict__)     # the dictionary being searched goes
                fresh = type("Fresh", (Chat,), {})  # and a class never seen is looked up
                try:
                    fresh.__new__(fresh).handle_read_event()
                except Exception:
                    pass
                except BaseException as e:          # a panic of the extension's
                    panics.append(e)
                return False

            __ne__ = str.__ne__

        vars(ch)[Colliding("other")] = 1
        b.send(b"one\n")
        asyncore.loop(timeout=5, map=m, count=1)
        self.assertIn("found_terminator", compared)
        self.assertEqual((ch.lines, panics), ([b"one"], []))
        ch.close()

    def test_a_class_value_whose_type_gains_get_is_then_a_descriptor(self):
        class Size(int):
            pass

        class Small(Chat):
            ac_in_buffer_size = Size(5)

        a, b = self.pair()
        ch = Small(a, asyncore.SocketMap())
        b.send(b"abcdefghijklmnopqrstuvwxyz")
        ch.handle_read_event()
        Size.__get__ = lambda self, obj, cls=None: 2
        ch.handle_read_event()
        self.assertEqual(b"".join(ch.parts), b"abcdefg")
        ch.close()

    def test_a_field_descriptor_under_a_method_name_gives_its_value(self):
        class Odd(Chat):
            handle_read = sockloop._core.Channel.connected

        a, b = self.pair()
        ch = Odd(a, asyncore.SocketMap())
        with self.assertRaisesRegex(TypeError, "'bool' object is not callable"):
            ch.handle_read_event()
        ch.close()


if __name__ == "__main__":
    unittest.main()
