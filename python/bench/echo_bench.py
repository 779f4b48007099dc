"""Server CPU per round trip of echo servers, 64 B ping-pong:

    python echo_bench.py SERVER_PYTHON MODE [--conns 50] [--idle 0] [--trips 20000]
                         [--server-bin PATH] [--profile FILE] [--pin]

MODEs:
- `sockloop`: the seed's echo server (python/examples/echo_server.py, unmodified) on
  SERVER_PYTHON after sockloop.install() (default backend);
- `cpython-poll`: the same script on CPython 3.11's own asyncore (SERVER_PYTHON is 3.11),
  with `use_poll=True` (the runner makes it asyncore.loop's default);
- `chat-sockloop` / `chat-cpython`: chat_server.py, an async_chat line server (terminator
  b"\n", `push` of each line), on sockloop or on CPython 3.11's asynchat;
- `uvloop` / `asyncio`: uvloop_echo.py, an asyncio Protocol echo on uvloop / plain asyncio;
- `mio`: the repository's hand-written Rust mio server (bench's `mio_echo`, --server-bin).
The client (this process) opens IDLE connections that stay silent, then CONNS connections that
each ping-pong one 64-byte line; the server's utime+stime (from /proc/PID/stat) over the
measured round trips, divided by their number, is printed as one JSON line, with its user and
system parts, how often per round trip it blocked (voluntary context switches), (and, with --syscalls, the server's syscalls per round trip, from `perf stat`).  With --profile
(sockloop and cpython modes) the server runs under cProfile and FILE gets its call counts per round trip
together with the core's counters (passes, OS waits, events, Python interest calls)."""
import argparse
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = os.path.join(os.path.dirname(HERE), "examples", "echo_server.py")
CHAT = os.path.join(HERE, "chat_server.py")
UV = os.path.join(HERE, "uvloop_echo.py")
ON_SOCKLOOP = ("import sockloop, runpy, sys; sockloop.install(); sys.argv = sys.argv[1:]; "
               "runpy.run_path(sys.argv[0], run_name='__main__')")
ON_CPYTHON = ("import asyncore, functools, runpy, sys, warnings; "
              "asyncore.loop = functools.partial(asyncore.loop, use_poll=True); "
              "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")
# Under cProfile: SIGTERM writes the call counts and the core's counters, then exits.
PROFILED = ("import cProfile, json, pstats, signal, sys, runpy\n"
            "if sys.argv[1] == 'sockloop':\n"
            "    import sockloop; sockloop.install()\n"
            "else:\n"
            "    import asyncore, functools, warnings\n"
            "    asyncore.loop = functools.partial(asyncore.loop, use_poll=True)\n"
            "kind = sys.argv.pop(1)\n"
            "out = sys.argv.pop(1)\n"
            "prof = cProfile.Profile()\n"
            "def stop(*_):\n"
            "    prof.disable()\n"
            "    st = pstats.Stats(prof)\n"
            "    calls = {'%s:%s' % (k[0].rsplit('/', 1)[-1], k[2]): v[1] for k, v in st.stats.items()}\n"
            "    core = sys.modules['sockloop']._core.stats() if kind == 'sockloop' else {}\n"
            "    json.dump({'calls': calls, 'core': core}, open(out, 'w'))\n"
            "    sys.exit(0)\n"
            "signal.signal(signal.SIGTERM, stop)\n"
            "sys.argv = sys.argv[1:]\n"
            "prof.enable()\n"
            "runpy.run_path(sys.argv[0], run_name='__main__')\n")
# mode -> (how to start it, does it print one line per accepted connection)
MODES = {
    "sockloop": (lambda py, port: [py, "-c", ON_SOCKLOOP, SEED, "127.0.0.1", str(port)], True),
    "cpython-poll": (lambda py, port: [py, "-c", ON_CPYTHON, SEED, "127.0.0.1", str(port)], True),
    "chat-sockloop": (lambda py, port: [py, "-c", ON_SOCKLOOP, CHAT, "127.0.0.1", str(port)], False),
    "chat-cpython": (lambda py, port: [py, "-W", "ignore", CHAT, "127.0.0.1", str(port)], False),
    "uvloop": (lambda py, port: [py, UV, "127.0.0.1", str(port)], False),
    "asyncio": (lambda py, port: [py, UV, "127.0.0.1", str(port), "--asyncio"], False),
    "mio": (None, False),
}
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_times(pid):
    """The process's (user, system) CPU seconds so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS


def sleeps(pid):
    """How often the process has blocked so far (its voluntary context switches)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    return 0


def count_syscalls(pid):
    """Attaches `perf stat` to the server, counting its syscall entries, and returns once perf
    has enabled the count (it acknowledges on its control pipe); None where perf cannot."""
    ctl_r, ctl_w = os.pipe()
    ack_r, ack_w = os.pipe()
    try:
        perf = subprocess.Popen(["perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter", "-D", "-1",
                                 "--control", "fd:%d,%d" % (ctl_r, ack_w), "-p", str(pid)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                pass_fds=(ctl_r, ack_w))
    except OSError:
        perf = None
    finally:
        os.close(ctl_r)
        os.close(ack_w)
    try:
        if perf is None:
            return None
        os.write(ctl_w, b"enable\n")
        ready = selectors.DefaultSelector()
        ready.register(ack_r, selectors.EVENT_READ)
        if not ready.select(30) or not os.read(ack_r, 16).startswith(b"ack"):
            perf.kill()
            perf.wait()
            return None
        return perf
    finally:
        os.close(ctl_w)
        os.close(ack_r)


def syscalls_counted(perf):
    """Stops a `count_syscalls` run and returns its count (None if perf gave none)."""
    if perf is None:
        return None
    perf.send_signal(signal.SIGINT)
    err = perf.communicate(timeout=30)[1]
    for line in err.splitlines():
        fields = line.split(",")
        if len(fields) > 2 and fields[2].startswith("raw_syscalls:sys_enter") and fields[0].isdigit():
            return int(fields[0])
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("python")
    ap.add_argument("mode", choices=sorted(MODES))
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--idle", type=int, default=0)
    ap.add_argument("--trips", type=int, default=20000)
    ap.add_argument("--server-bin", help="the mio_echo binary (mode mio)")
    ap.add_argument("--profile", help="write call counts per round trip here (sockloop modes)")
    ap.add_argument("--syscalls", action="store_true",
                    help="also count the server's syscalls over the measured trips (perf stat)")
    ap.add_argument("--pin", action="store_true",
                    help="run the server on CPU 1 and this client on CPU 0 (less variance "
                         "on a shared machine; every server alike)")
    a = ap.parse_args()
    pin_server = None
    if a.pin:
        os.sched_setaffinity(0, {0})

        def pin_server():
            os.sched_setaffinity(0, {1})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start, per_accept = MODES[a.mode]
    if a.mode == "mio":
        argv = [a.server_bin, "--bind", "127.0.0.1:%d" % port]
    else:
        argv = start(a.python, port)
    if a.profile:
        if a.mode not in ("sockloop", "chat-sockloop", "cpython-poll", "chat-cpython"):
            ap.error("--profile needs a sockloop or cpython mode")
        kind = "sockloop" if a.mode.endswith("sockloop") else "cpython"
        script = SEED if a.mode in ("sockloop", "cpython-poll") else CHAT
        argv = [a.python, "-W", "ignore", "-c", PROFILED, kind, a.profile, script,
                "127.0.0.1", str(port)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"), preexec_fn=pin_server)
    out = proc.stdout
    socks = []
    try:
        deadline = time.monotonic() + 20
        if not per_accept:
            line = out.readline()
            if not line.startswith(b"listening on"):
                raise RuntimeError("server did not start: %r" % line)
        while True:
            try:
                socks.append(socket.create_connection(("127.0.0.1", port)))
                break
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)  # start-up probe interval; the connect decides
        if per_accept:
            out.readline()

        def connect():
            c = socket.create_connection(("127.0.0.1", port))
            if per_accept:
                out.readline()  # the server printed its accept: keeps listen(5) from overflowing
            return c

        idle = [connect() for _ in range(a.idle)]
        active = [connect() for _ in range(a.conns)]
        sel = selectors.DefaultSelector()
        msg = b"x" * 63 + b"\n"
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
        perf = count_syscalls(proc.pid) if a.syscalls else None
        (u0, s0), w0, t0 = cpu_times(proc.pid), sleeps(proc.pid), time.monotonic()
        run(a.trips)
        (u1, s1), w1, t1 = cpu_times(proc.pid), sleeps(proc.pid), time.monotonic()
        calls = syscalls_counted(perf)
        if a.profile:
            proc.terminate()
            proc.wait(timeout=30)
            with open(a.profile) as f:
                prof = json.load(f)
            total = a.trips + min(2000, a.trips)
            prof["per_trip"] = {k: round(v / total, 2) for k, v in
                                sorted(prof.pop("calls").items(), key=lambda kv: -kv[1])
                                if v >= total / 10}
            prof["core_per_trip"] = {k: round(v / total, 3) for k, v in prof["core"].items()}
            with open(a.profile, "w") as f:
                json.dump(prof, f, indent=1)
        print(json.dumps({
            "mode": a.mode, "python": a.python.rsplit("/", 1)[-1], "conns": a.conns,
            "idle": a.idle, "trips": a.trips, "pinned": a.pin,
            "server_cpu_us_per_trip": round((u1 + s1 - u0 - s0) / a.trips * 1e6, 2),
            "server_user_us_per_trip": round((u1 - u0) / a.trips * 1e6, 2),
            "server_sys_us_per_trip": round((s1 - s0) / a.trips * 1e6, 2),
            "server_sleeps_per_trip": round((w1 - w0) / a.trips, 3),
            "server_syscalls_per_trip": round(calls / a.trips, 3) if calls is not None else None,
            "trips_per_s": round(a.trips / (t1 - t0)),
        }), flush=True)
        for c in idle + active:
            c.close()
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    main()
