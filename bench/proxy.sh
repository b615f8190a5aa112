#!/usr/bin/env bash
# Benchmark: fnlb as a reverse proxy in front of one HTTP server target, against nginx (1 worker, upstream
# keep-alive) and HAProxy (1 thread) doing the same job in the same run. The balancer runs on CPU 0 (taskset); the
# upstream (a small hyper server, examples/upstream.rs) and wrk share CPU 1. Prints req/s, p50/p99 and ratios.
#
# Needs: wrk, nginx, haproxy (Debian packages). Everything runs on 127.0.0.1 and is stopped at the end.
# Usage: bench/proxy.sh [duration, default 10s] [connections, default "64 256"]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10s}
CONNECTIONS=${2:-"64 256"}
. bench/lib.sh

cargo build --release --quiet --bin fnlb --example upstream
command -v haproxy >/dev/null || { echo "haproxy is not installed (apt-get install haproxy)" >&2; exit 1; }
echo "machine: $(nproc) cores, $(uname -r); wrk -t1 -d$DURATION" >&2

UP_PORT=$(free_port)
taskset -c 1 ./target/release/examples/upstream "127.0.0.1:$UP_PORT" & PIDS+=($!)
wait_http "http://127.0.0.1:$UP_PORT/"

# fnlb: a load balancer, an HTTP listener, a rule with the upstream as its one target (health checks off).
API_PORT=$(free_port); FNLB_PORT=$(free_port)
FNLB_DATA_DIR="$WORK/fnlb" taskset -c 0 ./target/release/fnlb serve --api-addr "127.0.0.1:$API_PORT" \
    --log-format text >"$WORK/fnlb.log" 2>&1 & PIDS+=($!)
call() { FNLB_DATA_DIR="$WORK/fnlb" ./target/release/fnlb call --endpoint "http://127.0.0.1:$API_PORT" "$@"; }
for _ in $(seq 1 100); do call clb DescribeLoadBalancers >/dev/null 2>&1 && break; python3 -c 'import time; time.sleep(0.1)'; done
LB=$(call clb CreateLoadBalancer '{"LoadBalancerType":"OPEN","Vip":"127.0.0.1"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["LoadBalancerIds"][0])')
LISTENER=$(call clb CreateListener "{\"LoadBalancerId\":\"$LB\",\"Ports\":[$FNLB_PORT],\"Protocol\":\"HTTP\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ListenerIds"][0])')
RULE=$(call clb CreateRule "{\"LoadBalancerId\":\"$LB\",\"ListenerId\":\"$LISTENER\",\"Rules\":[{\"Domain\":\"127.0.0.1\",\"Url\":\"/\",\"HealthCheck\":{\"HealthSwitch\":0}}]}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["LocationIds"][0])')
call clb RegisterTargets "{\"LoadBalancerId\":\"$LB\",\"ListenerId\":\"$LISTENER\",\"LocationId\":\"$RULE\",\"Targets\":[{\"EniIp\":\"127.0.0.1\",\"Port\":$UP_PORT}]}" >/dev/null
wait_http "http://127.0.0.1:$FNLB_PORT/"

NGINX_PORT=$(free_port); HAPROXY_PORT=$(free_port)
nginx_proxy_conf 256 "$NGINX_PORT:$UP_PORT"
taskset -c 0 nginx -c "$WORK/nginx.conf" -g 'daemon off;' & PIDS+=($!)
cat >"$WORK/haproxy.cfg" <<HAPROXY
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 4s
    timeout client 60s
    timeout server 60s
    http-reuse always
frontend web
    bind 127.0.0.1:$HAPROXY_PORT
    default_backend app
backend app
    server up 127.0.0.1:$UP_PORT
HAPROXY
taskset -c 0 haproxy -f "$WORK/haproxy.cfg" & PIDS+=($!)
wait_http "http://127.0.0.1:$NGINX_PORT/"
wait_http "http://127.0.0.1:$HAPROXY_PORT/"

measure() { # label url connections
    local out rps p50 p99
    taskset -c 1 wrk -t1 -c"$3" -d"$DURATION" --latency "$2" >/dev/null
    out=$(taskset -c 1 wrk -t1 -c"$3" -d"$DURATION" --latency "$2")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    printf '%-10s c=%-4s %10s req/s   p50 %-9s p99 %s\n' "$1" "$3" "$rps" "$p50" "$p99" >&2
    echo "$rps"
}
for c in $CONNECTIONS; do
    FNLB=$(measure fnlb "http://127.0.0.1:$FNLB_PORT/" "$c")
    NGINX=$(measure nginx "http://127.0.0.1:$NGINX_PORT/" "$c")
    HAPROXY=$(measure haproxy "http://127.0.0.1:$HAPROXY_PORT/" "$c")
    python3 -c "print('c=$c: fnlb / nginx: %.2fx; fnlb / haproxy: %.2fx' % ($FNLB / $NGINX, $FNLB / $HAPROXY))" >&2
done
