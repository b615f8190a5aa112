#!/usr/bin/env bash
# Benchmark: user-space instructions per proxied request, fnlb against nginx, under valgrind's callgrind. Each
# balancer proxies one HTTP server (examples/upstream.rs) with upstream keep-alive; instrumentation is switched on
# only around REQUESTS keep-alive requests from one client, so start-up and configuration are not counted.
#
# Needs: valgrind, nginx. Everything runs on 127.0.0.1 and is stopped at the end.
# Usage: bench/callgrind.sh [requests, default 2000]; with CALLGRIND_KEEP=DIR the profiles are copied there
# (read them with callgrind_annotate); with BASELINE=PATH another fnlb binary (an earlier build) is counted in the
# same run, for a before/after comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${1:-2000}
. bench/lib.sh

cargo build --release --quiet --bin fnlb --example upstream
UP_PORT=$(free_port)
./target/release/examples/upstream "127.0.0.1:$UP_PORT" & PIDS+=($!)
wait_http "http://127.0.0.1:$UP_PORT/"

# requests URL: REQUESTS GETs over one keep-alive connection (a warm-up of 200 first, outside the count when
# instrumentation is off).
requests() {
    python3 - "$1" "$2" <<'PY'
import http.client, sys, urllib.parse
url, n = urllib.parse.urlsplit(sys.argv[1]), int(sys.argv[2])
conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
for _ in range(n):
    conn.request("GET", "/")
    response = conn.getresponse()
    response.read()
    assert response.status == 200, response.status
PY
}

# count LABEL PID URL: switches instrumentation on around the requests, prints instructions per request.
count() {
    requests "$3" 200
    callgrind_control -i on "$2" >/dev/null 2>&1
    requests "$3" "$REQUESTS"
    callgrind_control -i off "$2" >/dev/null 2>&1
    callgrind_control -d "$2" >/dev/null 2>&1
    local total
    total=$(cat "$WORK"/callgrind.out."$2"* | awk '/^totals:/ {t += $2} END {print t}')
    if [ -n "${CALLGRIND_KEEP:-}" ]; then mkdir -p "$CALLGRIND_KEEP"; cp "$WORK"/callgrind.out."$2"* "$CALLGRIND_KEEP/"; fi
    printf '%-6s %8d instructions per request (%s requests)\n' "$1" $((total / REQUESTS)) "$REQUESTS" >&2
    echo $((total / REQUESTS))
}

# fnlb_count LABEL BINARY: the binary under callgrind, proxying the upstream; prints instructions per request.
fnlb_count() {
    API_PORT=$(free_port); FNLB_PORT=$(free_port)
    FNLB_DATA_DIR="$WORK/$1" valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/callgrind.out.%p" \
        "$2" serve --api-addr "127.0.0.1:$API_PORT" --log-format text >"$WORK/$1.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    for _ in $(seq 1 600); do FNLB_HOME="$WORK/$1" fnlb_call clb DescribeLoadBalancers >/dev/null 2>&1 && break; sleep 0.2; done
    FNLB_HOME="$WORK/$1" fnlb_proxy HTTP "$FNLB_PORT" "$UP_PORT"
    wait_http "http://127.0.0.1:$FNLB_PORT/"
    count "$1" "$pid" "http://127.0.0.1:$FNLB_PORT/"
    kill "$pid" 2>/dev/null || true
}

FNLB=$(fnlb_count fnlb ./target/release/fnlb)
if [ -n "${BASELINE:-}" ]; then
    BEFORE=$(fnlb_count before "$BASELINE")
    python3 -c "print('fnlb / the baseline build instructions per request: %.3fx' % ($FNLB / $BEFORE))" >&2
fi

NGINX_PORT=$(free_port)
nginx_proxy_conf 256 "$NGINX_PORT:$UP_PORT"
sed -i '1i master_process off;' "$WORK/nginx.conf"
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/callgrind.out.%p" \
    nginx -c "$WORK/nginx.conf" -g 'daemon off;' 2>"$WORK/nginx-valgrind.log" &
NGINX_PID=$!; PIDS+=("$NGINX_PID")
wait_http "http://127.0.0.1:$NGINX_PORT/"
NGINX=$(count nginx "$NGINX_PID" "http://127.0.0.1:$NGINX_PORT/")
python3 -c "print('fnlb / nginx instructions per request: %.2fx' % ($FNLB / $NGINX))" >&2
# nginx without a master process may not stop on SIGTERM under valgrind.
kill -9 "$NGINX_PID" 2>/dev/null || true
