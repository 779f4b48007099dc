"""User-space instructions per event, counted by callgrind (deterministic: the kernel's work
and the machine's load do not enter):

    python instr_count.py WHICH SHAPE MODE          # the counted figure (runs valgrind twice)
    python instr_count.py WHICH SHAPE MODE --steps N  # N steps, no valgrind (what is counted)

WHICH: `sockloop` (this package), `backport` (CPython 3.11's asyncore/asynchat from PyPI's
pyasyncore/pyasynchat, importable as `asyncore`/`asynchat`) or `stdlib` (the interpreter's own
modules: CPython 3.11). SHAPE: `echo` (the seed's handler on dispatcher_with_send) or `lines`
(an async_chat line server), the classes of handler_cost.py. MODE: `inproc` (one socketpair;
each step the client sends a line, `handle_read_event()` is called, the client reads the
answer) or `loop` (50 such channels in one map, `SocketMap` for sockloop, a dict otherwise;
each pass the 50 clients send, one `asyncore.loop(count=1, use_poll=True)` runs, the 50 read
the answers; a step is one event, so a pass is 50 steps).

The figure is (instructions of a run of 13 000 steps - those of a run of 3 000) / 10 000, with
PYTHONHASHSEED=0, so start-up, imports and set-up cancel out."""
import os
import re
import socket
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from handler_cost import LINE, classes  # noqa: E402

CHANNELS = 50


def load(which):
    if which == "sockloop":
        from sockloop import asynchat, asyncore
        return asyncore, asynchat
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import asynchat
        import asyncore
    return asyncore, asynchat


def run(which, shape, mode, steps):
    asyncore, asynchat = load(which)
    cls = classes(asyncore, asynchat)[shape]
    if mode == "inproc":
        server, client = socket.socketpair()
        channel = cls(server, {})
        event = channel.handle_read_event
        for _ in range(steps):
            client.send(LINE)
            event()
            client.recv(100)
        return
    m = asyncore.SocketMap() if which == "sockloop" else {}
    clients = []
    for _ in range(CHANNELS):
        server, client = socket.socketpair()
        cls(server, m)
        clients.append(client)
    for _ in range(steps // CHANNELS):
        for c in clients:
            c.send(LINE)
        asyncore.loop(timeout=5, use_poll=True, map=m, count=1)
        for c in clients:
            if c.recv(100) != LINE:
                raise SystemExit("wrong answer")


def counted(args, steps):
    env = dict(os.environ, PYTHONHASHSEED="0")
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
           sys.executable, os.path.abspath(__file__), *args, "--steps", str(steps)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stderr
    found = re.search(r"Collected\s*:\s*(\d+)", out)
    if not found:
        raise SystemExit("no callgrind total in:\n" + out)
    return int(found.group(1))


def main():
    args = sys.argv[1:4]
    if len(sys.argv) > 5 and sys.argv[4] == "--steps":
        run(*args, int(sys.argv[5]))
        return
    low, high = counted(args, 3000), counted(args, 13000)
    print("%s %s %s: %.0f instructions per step" % (*args, (high - low) / 10000))


if __name__ == "__main__":
    main()
