"""Memory over many connections: an asynchat line-echo server and a client in one process,
N connections one after another (connect, send a line, read it back, close), on sockloop's
loop. Prints tracemalloc's traced memory and the object count at checkpoints.

    python leak_check.py [N=100000] [backend=auto] [dict|SocketMap]"""
import gc
import socket
import sys
import time
import tracemalloc

from sockloop import asynchat, asyncore

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
BACKEND = sys.argv[2] if len(sys.argv) > 2 else "auto"
MAPTYPE = asyncore.SocketMap if sys.argv[3:] == ["SocketMap"] else dict


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
        self.set_reuse_addr()
        self.bind(("127.0.0.1", 0))
        self.listen(128)
        self.m = map

    def handle_accepted(self, sock, addr):
        Session(sock, self.m)


def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])


def main():
    m = MAPTYPE()
    server = Server(m)
    port = server.socket.getsockname()[1]
    checkpoints = {1_000, N // 10, N // 2, N}
    tracemalloc.start()
    base = None
    t0 = time.monotonic()
    for i in range(1, N + 1):
        c = socket.create_connection(("127.0.0.1", port))
        c.setblocking(False)
        line = b"line %d\n" % i
        c.send(line)
        got = b""
        while not got.endswith(b"\n"):
            asyncore.loop(timeout=1, map=m, count=1, backend=BACKEND)
            try:
                chunk = c.recv(100)
            except BlockingIOError:
                continue
            if not chunk:
                break
            got += chunk
        assert got == line, (got, line)
        c.close()
        while len(m) > 1:
            asyncore.loop(timeout=1, map=m, count=1, backend=BACKEND)
        if i in checkpoints:
            gc.collect()
            cur = tracemalloc.get_traced_memory()[0]
            if base is None:
                base = cur
            print("%7d connections: traced %8d B (%+d since 1000), %d objects, RSS %d KiB, %.1f s"
                  % (i, cur, cur - base, len(gc.get_objects()), rss_kib(), time.monotonic() - t0),
                  flush=True)
    server.close()


if __name__ == "__main__":
    main()
