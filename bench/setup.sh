#!/usr/bin/env bash
# Installs what the benchmark needs beyond Rust: wrk (Debian's package) for the HTTP scenario.
# strace and perf are expected to be installed already; Python's asyncore comes from pyenv's
# 3.11.7 when present. Nothing here is fatal: the runner skips what is missing and says so.
set -uo pipefail
if ! command -v wrk >/dev/null 2>&1; then
    echo "bench/setup.sh: installing wrk" >&2
    if ! apt-get install -y wrk >/dev/null 2>&1; then
        apt-get update >/dev/null 2>&1 && apt-get install -y wrk >/dev/null 2>&1 \
            || echo "bench/setup.sh: could not install wrk; the HTTP scenario will be skipped" >&2
    fi
fi
for tool in taskset strace perf; do
    command -v "$tool" >/dev/null 2>&1 || echo "bench/setup.sh: $tool is missing" >&2
done
exit 0
