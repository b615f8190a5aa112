# Shared by the benchmarks (sourced): a scratch directory and the processes to stop, both cleaned up on exit,
# a free loopback port, and a bounded wait for an HTTP endpoint to answer.
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_http() { # url: poll until it answers, for at most 30 s
    for _ in $(seq 1 300); do
        curl -fsSk -o /dev/null "$1" 2>/dev/null && return 0
        python3 -c 'import time; time.sleep(0.1)'
    done
    echo "no answer from $1" >&2
    return 1
}

# Writes $WORK/nginx.conf: nginx with one worker, proxying each LISTEN_PORT:UPSTREAM_PORT pair on 127.0.0.1 with
# upstream keep-alive (KEEPALIVE idle connections); with NGINX_TLS="CERT KEY" set, the listeners speak HTTPS.
# Usage: nginx_proxy_conf KEEPALIVE PAIR...
nginx_proxy_conf() {
    local keepalive=$1 pair listen upstream
    shift
    mkdir -p "$WORK/nginx"
    {
        echo "worker_processes 1;"
        echo "pid $WORK/nginx/nginx.pid;"
        echo "error_log $WORK/nginx/error.log;"
        echo "events { worker_connections 4096; }"
        echo "http {"
        echo "    access_log off;"
        echo "    client_body_temp_path $WORK/nginx; proxy_temp_path $WORK/nginx; fastcgi_temp_path $WORK/nginx;"
        echo "    uwsgi_temp_path $WORK/nginx; scgi_temp_path $WORK/nginx;"
        for pair in "$@"; do
            listen=${pair%%:*} upstream=${pair##*:}
            echo "    upstream u$listen { server 127.0.0.1:$upstream; keepalive $keepalive; }"
            echo "    server {"
            if [ -n "${NGINX_TLS:-}" ]; then
                echo "        listen 127.0.0.1:$listen ssl;"
                echo "        ssl_certificate ${NGINX_TLS% *}; ssl_certificate_key ${NGINX_TLS#* };"
                echo "        ssl_protocols TLSv1.2 TLSv1.3;"
            else
                echo "        listen 127.0.0.1:$listen;"
            fi
            echo "        location / { proxy_pass http://u$listen; proxy_http_version 1.1; proxy_set_header Connection \"\"; }"
            echo "    }"
        done
        echo "}"
    } >"$WORK/nginx.conf"
}

# Starts fnlb (release build) on CPU 0 with its data in $WORK/fnlb and waits for its API; extra flags are passed
# to `fnlb serve`. Sets FNLB_PID and API_PORT.
fnlb_start() {
    API_PORT=$(free_port)
    FNLB_DATA_DIR="${FNLB_HOME:-$WORK/fnlb}" taskset -c 0 "${FNLB_BIN:-./target/release/fnlb}" serve --api-addr "127.0.0.1:$API_PORT" \
        --admin-addr 127.0.0.1:0 \
        --log-format text "$@" >"$WORK/fnlb.log" 2>&1 &
    FNLB_PID=$!
    PIDS+=("$FNLB_PID")
    for _ in $(seq 1 100); do fnlb_call clb DescribeLoadBalancers >/dev/null 2>&1 && return 0; sleep 0.1; done
    echo "fnlb did not start" >&2
    return 1
}

fnlb_call() { FNLB_DATA_DIR="${FNLB_HOME:-$WORK/fnlb}" ./target/release/fnlb call --endpoint "http://127.0.0.1:$API_PORT" "$@"; }

# field NAME: the first element of the JSON array NAME in the answer on stdin.
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'][0])"; }

# Creates a load balancer on 127.0.0.1 and a listener of PROTOCOL on PORT keeping its server connections alive
# (`KeepaliveEnable`, as nginx's upstream `keepalive`; EXTRA: more CreateListener fields, as JSON members), with a
# rule on `/` of 127.0.0.1 forwarding to the server on 127.0.0.1:UPSTREAM_PORT.
# Sets LB, LISTENER and RULE. Usage: fnlb_proxy PROTOCOL PORT UPSTREAM_PORT [EXTRA]
fnlb_proxy() {
    local extra=${4:+,$4}
    LB=$(fnlb_call clb CreateLoadBalancer '{"LoadBalancerType":"OPEN","Vip":"127.0.0.1"}' | field LoadBalancerIds)
    LISTENER=$(fnlb_call clb CreateListener "{\"LoadBalancerId\":\"$LB\",\"Ports\":[$2],\"Protocol\":\"$1\",\"KeepaliveEnable\":1$extra}" | field ListenerIds)
    RULE=$(fnlb_call clb CreateRule "{\"LoadBalancerId\":\"$LB\",\"ListenerId\":\"$LISTENER\",\"Rules\":[{\"Domain\":\"127.0.0.1\",\"Url\":\"/\",\"HealthCheck\":{\"HealthSwitch\":0}}]}" | field LocationIds)
    fnlb_call clb RegisterTargets "{\"LoadBalancerId\":\"$LB\",\"ListenerId\":\"$LISTENER\",\"LocationId\":\"$RULE\",\"Targets\":[{\"EniIp\":\"127.0.0.1\",\"Port\":$3}]}" >/dev/null
}

# warm_up URL CONNECTIONS [wrk options…]: one unmeasured wrk run on CPU 1 of the benchmark's duration.
warm_up() {
    taskset -c 1 wrk -t1 -c"$2" -d"$DURATION" "${@:3}" "$1" >/dev/null
}

# One measured wrk run on CPU 1, no warm-up: prints "LABEL c=N REQ/S p50 p99" on stderr and the req/s on stdout,
# with how busy CPU 1 (wrk and the upstream) was. With CPU_PID set, the line also gives that process's CPU time
# (user + system, all its threads) per request.
# Usage: [CPU_PID=PID] measure_once LABEL URL CONNECTIONS [wrk options…]
measure_once() {
    local label=$1 url=$2 c=$3 out rps p50 p99 before load_before cpu=""
    shift 3
    [ -n "${CPU_PID:-}" ] && before=$(cpu_ticks "$CPU_PID")
    load_before=$(core_ticks 1)
    out=$(taskset -c 1 wrk -t1 -c"$c" -d"$DURATION" --latency "$@" "$url")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    if [ -n "${CPU_PID:-}" ]; then
        cpu=$(awk -v t="$(( $(cpu_ticks "$CPU_PID") - before ))" -v hz="$(getconf CLK_TCK)" \
            '/ requests in / {printf "   cpu %.1f us/req", t * 1e6 / hz / $1}' <<<"$out")
    fi
    cpu+=$(awk -v a="$load_before" -v b="$(core_ticks 1)" \
        'BEGIN {split(a, x); split(b, y); printf "   CPU 1 busy %.0f%%", 100 * (y[1] - x[1]) / (y[2] - x[2])}')
    printf '%-28s c=%-4s %10s req/s   p50 %-9s p99 %-9s%s\n' "$label" "$c" "$rps" "$p50" "$p99" "$cpu" >&2
    echo "$rps"
}

# compare LABEL SCHEME CONNECTIONS [wrk options…]: fnlb, nginx and HAProxy ($FNLB_PORT, $NGINX_PORT and
# $HAPROXY_PORT on 127.0.0.1; their CPU time from $FNLB_PID, $NGINX_PID and $HAPROXY_PID) each warmed up, then
# measured in $ROUNDS rounds that take each in turn (so that a change in the machine's speed weighs on all three);
# prints every run, then the medians and their ratios.
compare() {
    local label=$1 scheme=$2 c=$3 port round fnlb=() nginx=() haproxy=() before=()
    shift 3
    for port in "$FNLB_PORT" "$NGINX_PORT" "$HAPROXY_PORT" ${BEFORE_PORT:-}; do
        warm_up "$scheme://127.0.0.1:$port/" "$c" "$@"
    done
    for round in $(seq 1 "$ROUNDS"); do
        fnlb+=("$(CPU_PID=$FNLB_PID measure_once "fnlb $label, round $round" "$scheme://127.0.0.1:$FNLB_PORT/" "$c" "$@")")
        nginx+=("$(CPU_PID=$NGINX_PID measure_once "nginx $label, round $round" "$scheme://127.0.0.1:$NGINX_PORT/" "$c" "$@")")
        haproxy+=("$(CPU_PID=$HAPROXY_PID measure_once "haproxy $label, round $round" \
            "$scheme://127.0.0.1:$HAPROXY_PORT/" "$c" "$@")")
        if [ -n "${BEFORE_PORT:-}" ]; then
            before+=("$(CPU_PID=$BEFORE_PID measure_once "before $label, round $round" \
                "$scheme://127.0.0.1:$BEFORE_PORT/" "$c" "$@")")
        fi
    done
    print_medians "$label" "${fnlb[*]}" "${nginx[*]}" "${haproxy[*]}" "${before[*]}"
}

# print_medians LABEL FNLB NGINX HAPROXY [BEFORE] (each a space-separated list of req/s, one per round): the
# medians, the ratio of fnlb's to nginx's with each round's, the ratio of fnlb's to HAProxy's, and to the baseline
# build's when there is one, on stderr.
print_medians() {
    python3 - "$@" >&2 <<'PY'
import statistics, sys
label, fnlb, nginx, haproxy, before = sys.argv[1], *[[float(x) for x in a.split()] for a in (sys.argv[2:] + [''])[:4]]
m = statistics.median
print('%s medians: fnlb %.0f, nginx %.0f, haproxy %.0f req/s; fnlb / nginx: %.2fx (rounds: %s); fnlb / haproxy: %.2fx' % (
    label, m(fnlb), m(nginx), m(haproxy), m(fnlb) / m(nginx),
    ' '.join('%.2f' % (f / n) for f, n in zip(fnlb, nginx)), m(fnlb) / m(haproxy)))
if before:
    print('%s: fnlb / the baseline build: %.3fx (baseline %.0f req/s; rounds: %s)' % (
        label, m(fnlb) / m(before), m(before), ' '.join('%.2f' % (f / b) for f, b in zip(fnlb, before))))
PY
}

# cpu_ticks PID: the user + system clock ticks PID has used so far (all its threads).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# core_ticks N: "BUSY TOTAL", the clock ticks CPU N has spent so far (busy: all but idle and I/O wait).
core_ticks() { awk -v cpu="cpu$1" '$1 == cpu {t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t}' /proc/stat; }

# nginx_worker MASTER_PID: the PID of nginx's (single) worker process, once it is there (at most 10 s).
nginx_worker() {
    for _ in $(seq 1 100); do
        pgrep -P "$1" && return 0
        sleep 0.1
    done
    echo "nginx started no worker" >&2
    return 1
}

# Writes $WORK/haproxy.cfg: HAProxy with one thread, proxying 127.0.0.1:LISTEN_PORT to 127.0.0.1:UPSTREAM_PORT
# with connection reuse; BIND_OPTIONS are added to the bind line (`ssl crt FILE`).
# Usage: haproxy_conf LISTEN_PORT UPSTREAM_PORT [BIND_OPTIONS]
haproxy_conf() {
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
    bind 127.0.0.1:$1 ${3:-}
    default_backend app
backend app
    server up 127.0.0.1:$2
HAPROXY
}
