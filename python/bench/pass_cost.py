"""Cost of one loop pass over N idle dispatcher_with_send channels (socketpairs), nothing ready.

    python pass_cost.py [N=5000]            # sockloop: SocketMap and plain dict, each backend
    python3.11 pass_cost.py [N] --cpython   # CPython 3.11's own asyncore, select and poll

Prints microseconds per pass."""
import socket
import sys
import time
import warnings

N = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 5000
CPYTHON = "--cpython" in sys.argv
if CPYTHON:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import asyncore
else:
    from sockloop import asyncore


class Idle(asyncore.dispatcher_with_send):
    def handle_read(self):
        self.recv(10)


def measure(m, passes, **kw):
    asyncore.loop(timeout=0, map=m, count=3, **kw)
    t = time.perf_counter()
    asyncore.loop(timeout=0, map=m, count=passes, **kw)
    return (time.perf_counter() - t) / passes * 1e6


def main():
    pairs = [socket.socketpair() for _ in range(N // 2)]
    try:
        if CPYTHON:
            m = {}
            for a, b in pairs:
                Idle(a, map=m), Idle(b, map=m)
            for name, use_poll in (("select", False), ("poll", True)):
                try:
                    print("cpython %-7s plain dict  %5d idle: %9.1f us/pass"
                          % (name, len(m), measure(m, 50, use_poll=use_poll)))
                except ValueError as e:
                    print("cpython %-7s plain dict  %5d idle: %s" % (name, len(m), e))
            return
        for maptype in (asyncore.SocketMap, dict):
            m = maptype()
            for a, b in pairs:
                Idle(a, map=m), Idle(b, map=m)
            for backend in ("select", "poll", "epoll"):
                try:
                    us = measure(m, 200, backend=backend)
                    print("sockloop %-6s %-10s %5d idle: %9.1f us/pass"
                          % (backend, maptype.__name__, len(m), us))
                except ValueError:
                    print("sockloop %-6s %-10s %5d idle: refused (descriptors past 1023)"
                          % (backend, maptype.__name__, len(m)))
            for fd in list(m):
                del m[fd]
    finally:
        for a, b in pairs:
            a.close()
            b.close()


if __name__ == "__main__":
    main()
