"""The seed's two asyncore examples, unmodified scripts run on sockloop after install(),
driven by real clients: 200 concurrent sockets for the echo server (every byte checked),
`python -m http.server` for the HTTP client."""
import ast
import os
import random
import select
import selectors
import socket
import subprocess
import sys
import tempfile
import time
import unittest

from support import EXAMPLES, free_port, start_installed, stop, wait_listening

CLIENTS = 200
PAYLOAD = 32 * 1024


class LineReader:
    """Reads the server's output lines with a bound on each wait."""

    def __init__(self, pipe):
        self.pipe = pipe
        self.buf = b""

    def next(self, timeout=10):
        end = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = end - time.monotonic()
            if left <= 0 or not select.select([self.pipe], [], [], left)[0]:
                raise AssertionError("no output from the server in %s s" % timeout)
            chunk = os.read(self.pipe.fileno(), 65536)
            if not chunk:
                raise AssertionError("server output ended: %r" % self.buf)
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()


class EchoServerExample(unittest.TestCase):
    def test_200_concurrent_clients_every_byte_back(self):
        for attempt in range(3):
            # The port is picked free and given to the script; another process on the machine
            # may take it first, which the script reports by exiting: try another.
            port = free_port()
            proc = start_installed(os.path.join(EXAMPLES, "echo_server.py"), "127.0.0.1", port,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            try:
                with proc.stdout:
                    try:
                        probe = wait_listening(port, proc)
                    except AssertionError:
                        log = proc.stdout.read().decode()
                        if "Address already in use" in log and attempt < 2:
                            continue
                        raise AssertionError(log[-2000:])
                    lines = LineReader(proc.stdout)
                    self.assertTrue(lines.next().startswith("Incoming connection from"))
                    probe.close()
                    self._drive(port, lines)
            finally:
                stop(proc)
            break

    def _drive(self, port, lines):
        sel = selectors.DefaultSelector()
        state = {}
        try:
            for i in range(CLIENTS):
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                # The script prints a line per accept: waiting for it keeps the seed's
                # listen(5) backlog from overflowing (a dropped SYN costs a 1 s retransmit).
                line = lines.next()
                self.assertTrue(line.startswith("Incoming connection from ('127.0.0.1', "), line)
                s.setblocking(False)
                data = random.Random(i).randbytes(PAYLOAD)
                state[s] = {"data": data, "sent": 0, "got": bytearray()}
                sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
            deadline = time.monotonic() + 60
            pending = len(state)
            while pending:
                self.assertLess(time.monotonic(), deadline, "echo did not complete in 60 s")
                for key, mask in sel.select(timeout=1):
                    s = key.fileobj
                    st = state[s]
                    if mask & selectors.EVENT_WRITE and st["sent"] < PAYLOAD:
                        # Uneven pieces, so the server sees many read sizes.
                        n = min(PAYLOAD - st["sent"], 1 + (st["sent"] * 7919) % 6000)
                        try:
                            st["sent"] += s.send(st["data"][st["sent"]:st["sent"] + n])
                        except BlockingIOError:
                            pass
                        if st["sent"] == PAYLOAD:
                            sel.modify(s, selectors.EVENT_READ)
                    if mask & selectors.EVENT_READ:
                        try:
                            chunk = s.recv(65536)
                        except BlockingIOError:
                            continue
                        self.assertTrue(chunk, "server closed a connection early")
                        st["got"] += chunk
                        if len(st["got"]) >= PAYLOAD:
                            self.assertEqual(bytes(st["got"]), st["data"])
                            sel.unregister(s)
                            pending -= 1
        finally:
            for s in state:
                s.close()
            sel.close()


class HTTPClientExample(unittest.TestCase):
    def test_get_from_python_http_server(self):
        with tempfile.TemporaryDirectory() as root:
            body = random.Random(8).randbytes(200_000)
            with open(os.path.join(root, "data.bin"), "wb") as f:
                f.write(body)
            server = subprocess.Popen(
                [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1",
                 "--directory", root],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            with server.stdout:
                line = server.stdout.readline()  # "Serving HTTP on 127.0.0.1 port N (...)"
                port = int(line.split(" port ")[1].split()[0])
                client = start_installed(os.path.join(EXAMPLES, "http_client.py"),
                                         "127.0.0.1", port, "/data.bin",
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                try:
                    out, err = client.communicate(timeout=60)
                finally:
                    stop(server)
        self.assertEqual(client.returncode, 0, err.decode()[-2000:])
        # The example prints each recv() result: bytes reprs, one per line.
        raw = b"".join(ast.literal_eval(l) for l in out.decode().splitlines() if l)
        head, _, got = raw.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.0 200 OK"), head[:200])
        self.assertIn(b"Content-Length: %d" % len(body), head)
        self.assertEqual(got, body)


if __name__ == "__main__":
    unittest.main()
