#!/usr/bin/env bash
# Benchmark: HTTPS termination. fnlb, nginx (1 worker) and HAProxy (1 thread) each terminate TLS with the same
# ECDSA P-256 certificate and proxy to one HTTP server (examples/upstream.rs) with upstream keep-alive. Two loads
# per balancer: keep-alive HTTPS requests, and a new connection (a full TLS 1.3 handshake) for every request.
# The balancer runs on CPU 0 (taskset); the upstream and wrk share CPU 1. Each balancer is warmed up once per
# load, then measured in rounds that take each in turn; prints each run (with the balancer's CPU time per
# request), then the medians and their ratios.
#
# Needs: wrk (with TLS), nginx, haproxy, openssl. Everything runs on 127.0.0.1 and is stopped at the end.
# Usage: bench/proxy_tls.sh [duration, default 10s] [connections, default 64] [rounds, default 3]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10s}
C=${2:-64}
ROUNDS=${3:-3}
. bench/lib.sh

cargo build --release --quiet --bin fnlb --example upstream
command -v haproxy >/dev/null || { echo "haproxy is not installed (apt-get install haproxy)" >&2; exit 1; }
echo "machine: $(nproc) cores, $(uname -r); wrk -t1 -c$C -d$DURATION" >&2

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=127.0.0.1 \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
cat "$WORK/cert.pem" "$WORK/key.pem" >"$WORK/combined.pem"

UP_PORT=$(free_port)
taskset -c 1 ./target/release/examples/upstream "127.0.0.1:$UP_PORT" & PIDS+=($!)
wait_http "http://127.0.0.1:$UP_PORT/"

FNLB_PORT=$(free_port)
fnlb_start
CERT=$(python3 -c 'import json,sys; print(json.dumps({"SSLMode": "UNIDIRECTIONAL", "CertName": "bench", "CertContent": open(sys.argv[1]).read(), "CertKey": open(sys.argv[2]).read()}))' "$WORK/cert.pem" "$WORK/key.pem")
fnlb_proxy HTTPS "$FNLB_PORT" "$UP_PORT" "\"Certificate\":$CERT"

NGINX_PORT=$(free_port); HAPROXY_PORT=$(free_port)
NGINX_TLS="$WORK/cert.pem $WORK/key.pem" nginx_proxy_conf 256 "$NGINX_PORT:$UP_PORT"
taskset -c 0 nginx -c "$WORK/nginx.conf" -g 'daemon off;' & PIDS+=($!)
NGINX_PID=$(nginx_worker $!)
haproxy_conf "$HAPROXY_PORT" "$UP_PORT" "ssl crt $WORK/combined.pem"
taskset -c 0 haproxy -f "$WORK/haproxy.cfg" & PIDS+=($!)
HAPROXY_PID=$!
for port in "$FNLB_PORT" "$NGINX_PORT" "$HAPROXY_PORT"; do wait_http "https://127.0.0.1:$port/"; done

compare keep-alive https "$C"
compare handshakes https "$C" -H "Connection: close"
