"""Server CPU per round trip of the seed's echo server (python/examples/echo_server.py):

    python echo_bench.py SERVER_PYTHON MODE [--conns 50] [--idle 0] [--trips 20000]

MODE `sockloop`: the script runs on SERVER_PYTHON after sockloop.install() (default backend);
MODE `cpython-poll`: SERVER_PYTHON is CPython 3.11 and the script runs on its own asyncore with
`use_poll=True` (the script calls asyncore.loop(); the runner makes use_poll default to True).
The client (this process) opens IDLE connections that stay silent, then CONNS connections that
each ping-pong 64 bytes; the server's utime+stime (from /proc/PID/stat) over the measured
round trips, divided by their number, is printed as one JSON line."""
import argparse
import json
import os
import selectors
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(os.path.dirname(HERE), "examples", "echo_server.py")
RUNNERS = {
    "sockloop": "import sockloop, runpy, sys; sockloop.install(); sys.argv = sys.argv[1:]; "
                "runpy.run_path(sys.argv[0], run_name='__main__')",
    "cpython-poll": "import asyncore, functools, runpy, sys, warnings; "
                    "asyncore.loop = functools.partial(asyncore.loop, use_poll=True); "
                    "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')",
}
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("python")
    ap.add_argument("mode", choices=sorted(RUNNERS))
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--idle", type=int, default=0)
    ap.add_argument("--trips", type=int, default=20000)
    a = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([a.python, "-c", RUNNERS[a.mode], SCRIPT, "127.0.0.1", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    out = proc.stdout
    socks = []
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socks.append(socket.create_connection(("127.0.0.1", port)))
                break
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        out.readline()

        def connect():
            c = socket.create_connection(("127.0.0.1", port))
            out.readline()  # the server printed its accept: keeps listen(5) from overflowing
            return c

        idle = [connect() for _ in range(a.idle)]
        active = [connect() for _ in range(a.conns)]
        sel = selectors.DefaultSelector()
        msg = b"x" * 64
        for c in active:
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c.setblocking(False)
            sel.register(c, selectors.EVENT_READ, bytearray())

        def run(trips):
            left = trips
            for c in active:
                c.send(msg)
            inflight = len(active)
            while inflight:
                for key, _ in sel.select(10):
                    buf = key.data
                    chunk = key.fileobj.recv(4096)
                    if not chunk:
                        raise RuntimeError("server closed")
                    buf += chunk
                    if len(buf) >= 64:
                        assert bytes(buf[:64]) == msg
                        del buf[:64]
                        left -= 1
                        if left >= inflight:
                            key.fileobj.send(msg)
                        else:
                            inflight -= 1

        run(min(2000, a.trips))  # warm-up
        c0, t0 = cpu_seconds(proc.pid), time.monotonic()
        run(a.trips)
        c1, t1 = cpu_seconds(proc.pid), time.monotonic()
        print(json.dumps({
            "mode": a.mode, "python": a.python.rsplit("/", 1)[-1], "conns": a.conns,
            "idle": a.idle, "trips": a.trips,
            "server_cpu_us_per_trip": round((c1 - c0) / a.trips * 1e6, 2),
            "trips_per_s": round(a.trips / (t1 - t0)),
        }), flush=True)
        for c in idle + active:
            c.close()
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    main()
