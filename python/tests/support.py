"""Helpers for sockloop's own Python tests: run scripts after sockloop.install(), bounded."""
import os
import socket
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(os.path.dirname(HERE), "examples")
RUN_INSTALLED = os.path.join(HERE, "run_installed.py")


class SocketPairs(unittest.TestCase):
    """A test case whose `pair()` gives a connected socket pair, closed when the test ends."""

    def pair(self):
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        return a, b


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_installed(script, *args, **kw):
    """Starts `script` (which imports plain asyncore) on sockloop's modules."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, RUN_INSTALLED, script, *map(str, args)], env=env, **kw)


def wait_listening(port, proc, deadline=15.0):
    """Readiness probe: connects until the server accepts (bounded); fails if it exits."""
    end = time.monotonic() + deadline
    while True:
        if proc.poll() is not None:
            raise AssertionError("server exited with %s before listening" % proc.returncode)
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=5)
        except ConnectionRefusedError:
            if time.monotonic() > end:
                raise
            time.sleep(0.02)  # probe interval, not synchronisation: the connect decides


def stop(proc):
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
