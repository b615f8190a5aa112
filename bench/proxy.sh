#!/usr/bin/env bash
# Benchmark: fnlb as a reverse proxy in front of one HTTP server target, against nginx (1 worker, upstream
# keep-alive) and HAProxy (1 thread) doing the same job in the same run. The balancer runs on CPU 0 (taskset); the
# upstream (a small hyper server, examples/upstream.rs) and wrk share CPU 1. Each balancer is warmed up once per
# connection count, then measured in rounds that take each in turn (so that a change in the machine's speed weighs
# on all three). Prints req/s, p50/p99 and the balancer's CPU time per request of each run, then the medians and
# their ratios.
#
# Needs: wrk, nginx, haproxy (Debian packages). Everything runs on 127.0.0.1 and is stopped at the end.
# Usage: bench/proxy.sh [duration, default 10s] [connections, default "64 256"] [rounds, default 3]; with
# BASELINE=PATH another fnlb binary (an earlier build) is measured in the same rounds, for a before/after ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10s}
CONNECTIONS=${2:-"64 256"}
ROUNDS=${3:-3}
. bench/lib.sh

cargo build --release --quiet --bin fnlb --example upstream
command -v haproxy >/dev/null || { echo "haproxy is not installed (apt-get install haproxy)" >&2; exit 1; }
echo "machine: $(nproc) cores, $(uname -r); wrk -t1 -d$DURATION" >&2

UP_PORT=$(free_port)
taskset -c 1 ./target/release/examples/upstream "127.0.0.1:$UP_PORT" & PIDS+=($!)
wait_http "http://127.0.0.1:$UP_PORT/"

# The baseline build first (when given), the same way.
if [ -n "${BASELINE:-}" ]; then
    BEFORE_PORT=$(free_port)
    FNLB_BIN=$BASELINE FNLB_HOME="$WORK/before" fnlb_start
    FNLB_HOME="$WORK/before" fnlb_proxy HTTP "$BEFORE_PORT" "$UP_PORT"
    BEFORE_PID=$FNLB_PID
    wait_http "http://127.0.0.1:$BEFORE_PORT/"
fi

# fnlb: a load balancer, an HTTP listener, a rule with the upstream as its one target (health checks off).
FNLB_PORT=$(free_port)
fnlb_start
fnlb_proxy HTTP "$FNLB_PORT" "$UP_PORT"
wait_http "http://127.0.0.1:$FNLB_PORT/"

NGINX_PORT=$(free_port); HAPROXY_PORT=$(free_port)
nginx_proxy_conf 256 "$NGINX_PORT:$UP_PORT"
taskset -c 0 nginx -c "$WORK/nginx.conf" -g 'daemon off;' & PIDS+=($!)
NGINX_PID=$(nginx_worker $!)
haproxy_conf "$HAPROXY_PORT" "$UP_PORT"
taskset -c 0 haproxy -f "$WORK/haproxy.cfg" & PIDS+=($!)
HAPROXY_PID=$!
wait_http "http://127.0.0.1:$NGINX_PORT/"
wait_http "http://127.0.0.1:$HAPROXY_PORT/"

for c in $CONNECTIONS; do
    compare "c=$c" http "$c"
done
