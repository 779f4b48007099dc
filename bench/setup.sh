#!/usr/bin/env bash
# Installs what the benchmark needs beyond Rust: wrk (Debian's package) for the HTTP scenario,
# and nginx (Debian's nginx-light) as the file-serving peer of bench/files.
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
# nginx, the file-serving peer of bench/files (Debian's nginx-light: the core modules, which is
# all a static file server needs). bench/files runs it as one foreground process with its own
# configuration; the package's own service is not started or used.
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    echo "bench/setup.sh: installing nginx-light" >&2
    if ! apt-get install -y nginx-light >/dev/null 2>&1; then
        apt-get update >/dev/null 2>&1 && apt-get install -y nginx-light >/dev/null 2>&1 \
            || echo "bench/setup.sh: could not install nginx; bench/files will skip it" >&2
    fi
fi
for tool in taskset strace perf; do
    command -v "$tool" >/dev/null 2>&1 || echo "bench/setup.sh: $tool is missing" >&2
done
exit 0
