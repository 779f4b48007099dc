"""What one event costs inside the server process, without a loop or a second process:

    python handler_cost.py sockloop|backport [BACKPORT_DIR]

A socketpair; each step the "client" end sends one 64-byte line, the channel's
`handle_read_event()` is called directly (the seed's echo handler on `dispatcher_with_send`,
or an `async_chat` line server pushing each line back), and the client reads the answer.
`raw` is the same socket traffic done by hand (no channel).  Each figure is the best of 300
batches of 500 steps (wall time, ns per step), so a busy machine only makes it noisier, not
slower.  `backport` loads CPython's own asyncore/asynchat as published on PyPI
(`pip install --target DIR pyasyncore pyasynchat`), so both run on the same interpreter."""
import socket
import sys
import time

LINE = b"y" * 63 + b"\n"


def load(which, where):
    if which == "backport":
        sys.path.insert(0, where)
        import asynchat
        import asyncore
        return asyncore, asynchat
    from sockloop import asynchat, asyncore
    return asyncore, asynchat


def classes(asyncore, asynchat):
    class Echo(asyncore.dispatcher_with_send):
        def handle_read(self):
            data = self.recv(8192)
            if data:
                self.send(data)

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

    return {"echo": Echo, "lines": Lines}


def best_ns(step, batches=300, size=500):
    best = float("inf")
    for _ in range(batches):
        start = time.perf_counter()
        for _ in range(size):
            step()
        best = min(best, (time.perf_counter() - start) / size)
    return best * 1e9


def main():
    which = sys.argv[1]
    asyncore, asynchat = load(which, sys.argv[2] if len(sys.argv) > 2 else "backport")
    out = []
    server, client = socket.socketpair()
    server.setblocking(False)

    def raw():
        client.send(LINE)
        server.send(server.recv(8192))
        client.recv(100)

    out.append("raw %.0f" % best_ns(raw))
    for name, cls in classes(asyncore, asynchat).items():
        server, client = socket.socketpair()
        channel = cls(server, {})
        event = channel.handle_read_event

        def step():
            client.send(LINE)
            event()
            client.recv(100)

        out.append("%s %.0f" % (name, best_ns(step)))
    print(which, "ns per step:", ", ".join(out))


if __name__ == "__main__":
    main()
