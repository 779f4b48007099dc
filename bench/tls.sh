#!/usr/bin/env bash
# TLS benchmark (issue 13): http_server --tls-cert/--tls-key against nginx (one worker, no
# master, same ECDSA P-256 certificate, TLS 1.3), both pinned to CPU 0, wrk pinned to CPU 1.
#   keep-alive: wrk -c50 GETs of a 2 KiB file over 50 TLS connections;
#   pipelined:  the same with 10 GETs written at once per connection (wrk's pipelining script):
#               several responses per handler, which a TLS channel sends as one record;
#   handshakes: wrk -c50 with `Connection: close`, so every request is a new connection and a
#               full TLS 1.3 handshake (wrk does not resume sessions);
#   echo:       echo_server plain and with --tls-cert, 50 connections of 64 B ping-pong from
#               bench's tls_pingpong (rustls clients).
# Server CPU is utime+stime from /proc/PID/stat over wrk's run, divided by its requests.
# ROUNDS rounds run the six measurements in turn (each server against its peer in the same
# round, so both see the same load); the end prints each figure's median and the median of
# the per-round ratios. STRACE=1 adds syscalls per request (keep-alive and pipelined) for
# each server (`strace -c -f` over a separate 2 s wrk run; strace slows the server, so only
# the counts are meaningful). BASELINE=DIR also measures DIR/http_server and DIR/echo_server (an
# older build) in every round, for before/after ratios under the same load.
# usage: bench/tls.sh [SECONDS] [ROUNDS]   (needs nginx and wrk; run after `cargo build
#        --release --examples` and `cargo build --release -p sockloop-bench`)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
rounds=${2:-1}
bin=${CARGO_TARGET_DIR:-target}/release/examples
dir=$(mktemp -d /tmp/sockloop-tls-bench.XXXXXX)
trap 'kill $(cat "$dir"/pids 2>/dev/null) 2>/dev/null || true; rm -rf "$dir"' EXIT
# A CA and an ECDSA P-256 server certificate it signs (webpki refuses a CA as the server's).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/ca.key" \
    -out "$dir/ca.pem" -days 2 -subj /CN=bench-ca 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/key.pem" \
    -out "$dir/leaf.csr" -subj /CN=localhost 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$dir/ext"
openssl x509 -req -in "$dir/leaf.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
    -out "$dir/cert.pem" -days 2 -extfile "$dir/ext" 2>/dev/null
mkdir "$dir/root"
head -c 2048 /dev/urandom > "$dir/root/f2k.bin"
cat > "$dir/pipeline.lua" <<'LUA'
init = function(args)
    local r = {}
    for i = 1, 10 do r[i] = wrk.format(nil, "/f2k.bin") end
    req = table.concat(r)
end
request = function() return req end
LUA
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# Runs wrk against https://127.0.0.1:$2/f2k.bin for server pid $1; prints requests and CPU/request.
measure() {
    local pid=$1 port=$2 label=$3; shift 3
    wrk -t1 -c50 -d1s "$@" "https://127.0.0.1:$port/f2k.bin" >/dev/null 2>&1 # warm-up
    local t0; t0=$(ticks "$pid")
    local out; out=$(taskset -c 1 wrk -t1 -c50 -d"${secs}s" "$@" "https://127.0.0.1:$port/f2k.bin")
    local t1; t1=$(ticks "$pid")
    local reqs; reqs=$(awk '/requests in/ {print $1}' <<<"$out")
    local errs; errs=$(grep -E "Non-2xx|Socket errors" <<<"$out" | tr -s ' ' | paste -sd';' || true)
    awk -v r="$reqs" -v t=$((t1 - t0)) -v hz="$hz" -v s="$secs" -v l="$label" -v e="$errs" \
        'BEGIN { printf "%-34s %9d req %9.0f req/s %7.1f us CPU/req %s\n", l, r, r / s, t / hz * 1e6 / r, e }' |
        tee -a "$dir/results"
}

# Syscalls per request of server pid $1 on port $2: strace -c over a 2 s wrk run (its 50 new
# connections' handshakes included).
syscalls() {
    local pid=$1 port=$2 label=$3; shift 3
    strace -c -f -p "$pid" -o "$dir/strace" 2>/dev/null &
    local st=$!
    sleep 0.5 # strace attaches
    local out; out=$(taskset -c 1 wrk -t1 -c50 -d2s "$@" "https://127.0.0.1:$port/f2k.bin")
    kill -INT "$st"; wait "$st" || true
    local reqs; reqs=$(awk '/requests in/ {print $1}' <<<"$out")
    awk -v l="$label" -v r="$reqs" '$1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" { calls[$NF] = $4 }
        END { printf "%-34s syscalls per request:", l; for (k in calls) if (calls[k] / r >= 0.01) printf " %s %.2f", k, calls[k] / r; printf "\n" }' "$dir/strace"
}

port_n=$((20000 + RANDOM % 20000))
cat > "$dir/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1; pid $dir/nginx.pid; error_log $dir/error.log;
events { worker_connections 4096; }
http {
    access_log off; sendfile on; open_file_cache max=100; keepalive_requests 1000000;
    client_body_temp_path $dir; proxy_temp_path $dir; fastcgi_temp_path $dir; uwsgi_temp_path $dir; scgi_temp_path $dir;
    server {
        listen 127.0.0.1:$port_n ssl; root $dir/root;
        ssl_certificate $dir/cert.pem; ssl_certificate_key $dir/key.pem; ssl_protocols TLSv1.3;
    }
}
CONF
taskset -c 0 nginx -c "$dir/nginx.conf" & echo $! >> "$dir/pids"
ngx=$!
taskset -c 0 "$bin/http_server" --bind 127.0.0.1:0 --root "$dir/root" --tls-cert "$dir/cert.pem" \
    --tls-key "$dir/key.pem" > "$dir/hs.out" & echo $! >> "$dir/pids"
hs=$!
for _ in $(seq 50); do grep -q "listening on" "$dir/hs.out" 2>/dev/null && break; sleep 0.1; done
port_s=$(sed -n 's/^listening on 127.0.0.1://p' "$dir/hs.out")
base=${BASELINE:-}
if [ -n "$base" ]; then
    taskset -c 0 "$base/http_server" --bind 127.0.0.1:0 --root "$dir/root" --tls-cert "$dir/cert.pem" \
        --tls-key "$dir/key.pem" > "$dir/hb.out" & echo $! >> "$dir/pids"
    hb=$!
    for _ in $(seq 50); do grep -q "listening on" "$dir/hb.out" 2>/dev/null && break; sleep 0.1; done
    port_b=$(sed -n 's/^listening on 127.0.0.1://p' "$dir/hb.out")
fi
sleep 0.5

# echo_server, plain then TLS: server CPU per 64 B round trip at 50 connections.
echo_run() {
    local label=$1 es_bin=$2; shift 2
    : > "$dir/es.out"
    taskset -c 0 "$es_bin" --bind 127.0.0.1:0 --quiet "$@" > "$dir/es.out" & echo $! >> "$dir/pids"
    local es=$!
    for _ in $(seq 50); do grep -q "listening on" "$dir/es.out" 2>/dev/null && break; sleep 0.1; done
    local addr; addr=$(sed -n 's/^listening on //p' "$dir/es.out")
    local t0; t0=$(ticks "$es")
    local rts; rts=$(taskset -c 1 "$pp" "$addr" --conns 50 --secs "$secs" $tls_ca)
    local t1; t1=$(ticks "$es")
    kill "$es"
    # The window is secs plus the 0.5 s warm-up (connections and handshakes) the CPU also covers.
    awk -v r="$rts" -v t=$((t1 - t0)) -v hz="$hz" -v s="$secs" -v l="$label" \
        'BEGIN { printf "%-34s %9d rt  %9.0f rt/s  %7.2f us CPU/rt (incl. warm-up)\n", l, r, r / s, t / hz * 1e6 / r }' |
        tee -a "$dir/results"
}
pp=${CARGO_TARGET_DIR:-target}/release/tls_pingpong
[ -x "$pp" ] || echo "(no $pp: cargo build --release -p sockloop-bench for the echo figures)"
for round in $(seq "$rounds"); do
    echo "== round $round/$rounds, $(date -u +%FT%TZ), $(nproc) CPUs, loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
    # Even rounds run each group in reverse order, so no server always goes first.
    keepalive=(
        'measure "$hs" "$port_s" "sockloop http_server keep-alive"'
        'measure "$ngx" "$port_n" "nginx keep-alive"'
    )
    [ -z "$base" ] || keepalive+=('measure "$hb" "$port_b" "baseline http_server keep-alive"')
    pipelined=(
        'measure "$hs" "$port_s" "sockloop http_server pipelined" -s "$dir/pipeline.lua"'
        'measure "$ngx" "$port_n" "nginx pipelined" -s "$dir/pipeline.lua"'
    )
    [ -z "$base" ] || pipelined+=('measure "$hb" "$port_b" "baseline http_server pipelined" -s "$dir/pipeline.lua"')
    handshakes=(
        'measure "$hs" "$port_s" "sockloop http_server handshakes" -H "Connection: close"'
        'measure "$ngx" "$port_n" "nginx handshakes" -H "Connection: close"'
    )
    echoes=()
    if [ -x "$pp" ]; then
        echoes=(
            'tls_ca="" echo_run "echo_server plain, 64 B x 50" "$bin/echo_server"'
            'tls_ca="--ca $dir/ca.pem" echo_run "echo_server TLS 1.3, 64 B x 50" "$bin/echo_server" --tls-cert "$dir/cert.pem" --tls-key "$dir/key.pem"'
        )
        [ -z "$base" ] || echoes+=('tls_ca="--ca $dir/ca.pem" echo_run "baseline echo_server TLS 64 B x 50" "$base/echo_server" --tls-cert "$dir/cert.pem" --tls-key "$dir/key.pem"')
    fi
    for group in keepalive pipelined handshakes echoes; do
        unset -n cmds 2>/dev/null || true
        declare -n cmds=$group
        n=${#cmds[@]}
        for ((i = 0; i < n; i++)); do
            j=$((round % 2 ? i : n - 1 - i))
            eval "${cmds[$j]}"
        done
    done
done
if [ "${STRACE:-0}" = 1 ]; then
    syscalls "$hs" "$port_s" "sockloop http_server keep-alive"
    syscalls "$ngx" "$port_n" "nginx keep-alive"
    [ -z "$base" ] || syscalls "$hb" "$port_b" "baseline http_server keep-alive"
    syscalls "$hs" "$port_s" "sockloop http_server pipelined" -s "$dir/pipeline.lua"
    syscalls "$ngx" "$port_n" "nginx pipelined" -s "$dir/pipeline.lua"
    [ -z "$base" ] || syscalls "$hb" "$port_b" "baseline http_server pipelined" -s "$dir/pipeline.lua"
fi
echo "== medians over $rounds round(s), loadavg at the end $(cut -d' ' -f1-3 /proc/loadavg)"
# The CPU figure of each line is the field before "us"; lines come in round order.
awk '{ for (i = 1; i <= NF; i++) if ($i == "us") v = $(i - 1); l = substr($0, 1, 34); sub(/ +$/, "", l)
       n[l]++; x[l, n[l]] = v; if (!(l in seen)) { seen[l] = 1; order[++k] = l } }
     function median(a, l, m,   i, j, t, s) { for (i = 1; i <= m; i++) s[i] = a[l, i]
         for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (s[j] < s[i]) { t = s[i]; s[i] = s[j]; s[j] = t }
         return m % 2 ? s[(m + 1) / 2] : (s[m / 2] + s[m / 2 + 1]) / 2 }
     function ratios(a, b, label,   i, r, m) { if (!(a in seen) || !(b in seen)) return
         m = n[a] < n[b] ? n[a] : n[b]; for (i = 1; i <= m; i++) r["r", i] = x[a, i] / x[b, i]
         printf "  ratio %-28s %6.2fx (median of per-round ratios; rounds:", label, median(r, "r", m)
         for (i = 1; i <= m; i++) printf " %.2f", r["r", i]; printf ")\n" }
     END { for (i = 1; i <= k; i++) printf "  %-34s %8.2f us (median of %d)\n", order[i], median(x, order[i], n[order[i]]), n[order[i]]
           ratios("sockloop http_server keep-alive", "nginx keep-alive", "keep-alive sockloop/nginx")
           ratios("sockloop http_server pipelined", "nginx pipelined", "pipelined sockloop/nginx")
           ratios("sockloop http_server handshakes", "nginx handshakes", "handshakes sockloop/nginx")
           ratios("echo_server TLS 1.3, 64 B x 50", "echo_server plain, 64 B x 50", "echo TLS/plain")
           ratios("baseline http_server keep-alive", "nginx keep-alive", "keep-alive baseline/nginx")
           ratios("sockloop http_server keep-alive", "baseline http_server keep-alive", "keep-alive sockloop/baseline")
           ratios("sockloop http_server pipelined", "baseline http_server pipelined", "pipelined sockloop/baseline")
           ratios("echo_server TLS 1.3, 64 B x 50", "baseline echo_server TLS 64 B x 50", "echo TLS sockloop/baseline") }' "$dir/results"
