"""One benchmark run of every server, 64 B ping-pong, 50 connections, with 0 and with 5000
idle connections added; prints JSON lines, then a Markdown table of ratios (same run) and one of
where each server's time goes at 50 connections (user and system CPU, and syscalls per round
trip, counted by `perf stat` where perf runs, in one more round of its own).

    python run_all.py --py312 VENV_PYTHON --py311 PYTHON3.11 --mio MIO_ECHO [--trips N]
                      [--rounds N] [--pin]

VENV_PYTHON: a Python 3.12 with sockloop and uvloop installed; PYTHON3.11: CPython 3.11
(its own asyncore); MIO_ECHO: bench's mio_echo binary
(`cargo build --release --manifest-path bench/Cargo.toml --bin mio_echo`)."""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def median(runs, key):
    """The median of one field over a server's runs ("-" where no run has it)."""
    values = sorted(r[key] for r in runs if r.get(key) is not None)
    return values[len(values) // 2] if values else "-"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--py312", required=True)
    ap.add_argument("--py311", required=True)
    ap.add_argument("--mio", required=True)
    ap.add_argument("--trips", type=int, default=20000)
    ap.add_argument("--idle", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=1,
                    help="interleaved rounds; the table shows each server's median")
    ap.add_argument("--pin", action="store_true",
                    help="each server on CPU 1, the client on CPU 0 (echo_bench.py --pin)")
    a = ap.parse_args()
    servers = [("mio", a.py312), ("uvloop", a.py312), ("sockloop", a.py312),
               ("cpython-poll", a.py311), ("asyncio", a.py312),
               ("chat-sockloop", a.py312), ("chat-cpython", a.py311)]
    samples = {}
    split = {}
    for _ in range(a.rounds):
        for idle in (0, a.idle):
            for mode, py in servers:
                cmd = [sys.executable, os.path.join(HERE, "echo_bench.py"), py, mode,
                       "--trips", str(a.trips), "--idle", str(idle), "--server-bin", a.mio]
                cmd += ["--pin"] if a.pin else []
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
                if out.returncode != 0:
                    print("%s idle=%d failed: %s" % (mode, idle, out.stderr[-2000:]), flush=True)
                    continue
                r = json.loads(out.stdout.strip().splitlines()[-1])
                print(json.dumps(r), flush=True)
                samples.setdefault((mode, idle), []).append(r["server_cpu_us_per_trip"])
                if idle == 0:
                    split.setdefault(mode, []).append(r)
    # Counting syscalls costs each one a tracepoint: a round of its own, not in the timings.
    calls = {}
    for mode, py in servers:
        cmd = [sys.executable, os.path.join(HERE, "echo_bench.py"), py, mode, "--syscalls",
               "--trips", str(max(a.trips // 4, 2000)), "--server-bin", a.mio]
        cmd += ["--pin"] if a.pin else []
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if out.returncode == 0:
            calls[mode] = json.loads(out.stdout.strip().splitlines()[-1])["server_syscalls_per_trip"]
    results = {k: sorted(v)[len(v) // 2] for k, v in samples.items()}
    mio = results.get(("mio", 0))
    print()
    print("samples (us): " + "; ".join("%s/%d: %s" % (k[0], k[1], v) for k, v in samples.items()))
    print("| server | CPU/round trip, 50 conns | vs mio | + %d idle | vs its own cost without idle |" % a.idle)
    print("|---|---:|---:|---:|---:|")
    for mode, _ in servers:
        base, loaded = results.get((mode, 0)), results.get((mode, a.idle))
        print("| %s | %s us | %s | %s us | %s |" % (
            mode, base, "%.2fx" % (base / mio) if base and mio else "-", loaded,
            "%.2fx" % (loaded / base) if base and loaded else "-"))
    print()
    print("| server, 50 conns | user us/round trip | system us/round trip | syscalls/round trip |")
    print("|---|---:|---:|---:|")
    for mode, _ in servers:
        if mode in split:
            print("| %s | %s | %s | %s |" % (mode, median(split[mode], "server_user_us_per_trip"),
                                             median(split[mode], "server_sys_us_per_trip"),
                                             calls.get(mode) or "-"))
    pairs = [("sockloop", "cpython-poll"), ("sockloop", "uvloop"), ("chat-sockloop", "chat-cpython")]
    for x, y in pairs:
        if (x, 0) in results and (y, 0) in results:
            print("- %s / %s at 50 connections: %.2fx" % (x, y, results[(x, 0)] / results[(y, 0)]))


if __name__ == "__main__":
    main()
