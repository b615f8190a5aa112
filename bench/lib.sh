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
    FNLB_DATA_DIR="$WORK/fnlb" taskset -c 0 ./target/release/fnlb serve --api-addr "127.0.0.1:$API_PORT" \
        --admin-addr 127.0.0.1:0 \
        --log-format text "$@" >"$WORK/fnlb.log" 2>&1 &
    FNLB_PID=$!
    PIDS+=("$FNLB_PID")
    for _ in $(seq 1 100); do fnlb_call clb DescribeLoadBalancers >/dev/null 2>&1 && return 0; sleep 0.1; done
    echo "fnlb did not start" >&2
    return 1
}

fnlb_call() { FNLB_DATA_DIR="$WORK/fnlb" ./target/release/fnlb call --endpoint "http://127.0.0.1:$API_PORT" "$@"; }

# field NAME: the first element of the JSON array NAME in the answer on stdin.
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'][0])"; }

# Creates a load balancer on 127.0.0.1 and a listener of PROTOCOL on PORT (EXTRA: more CreateListener fields,
# as JSON members), with a rule on `/` of 127.0.0.1 forwarding to the server on 127.0.0.1:UPSTREAM_PORT.
# Sets LB, LISTENER and RULE. Usage: fnlb_proxy PROTOCOL PORT UPSTREAM_PORT [EXTRA]
fnlb_proxy() {
    local extra=${4:+,$4}
    LB=$(fnlb_call clb CreateLoadBalancer '{"LoadBalancerType":"OPEN","Vip":"127.0.0.1"}' | field LoadBalancerIds)
    LISTENER=$(fnlb_call clb CreateListener "{\"LoadBalancerId\":\"$LB\",\"Ports\":[$2],\"Protocol\":\"$1\"$extra}" | field ListenerIds)
    RULE=$(fnlb_call clb CreateRule "{\"LoadBalancerId\":\"$LB\",\"ListenerId\":\"$LISTENER\",\"Rules\":[{\"Domain\":\"127.0.0.1\",\"Url\":\"/\",\"HealthCheck\":{\"HealthSwitch\":0}}]}" | field LocationIds)
    fnlb_call clb RegisterTargets "{\"LoadBalancerId\":\"$LB\",\"ListenerId\":\"$LISTENER\",\"LocationId\":\"$RULE\",\"Targets\":[{\"EniIp\":\"127.0.0.1\",\"Port\":$3}]}" >/dev/null
}

# wrk on CPU 1 (a warm-up run, then the measured one): prints "LABEL c=N REQ/S p50 p99" on stderr and the
# req/s on stdout. Usage: measure LABEL URL CONNECTIONS [wrk options…]
measure() {
    taskset -c 1 wrk -t1 -c"$3" -d"$DURATION" "${@:4}" "$2" >/dev/null
    measure_once "$@"
}

# One measured wrk run on CPU 1, no warm-up: prints "LABEL c=N REQ/S p50 p99" on stderr and the req/s on stdout.
# Usage: measure_once LABEL URL CONNECTIONS [wrk options…]
measure_once() {
    local label=$1 url=$2 c=$3 out rps p50 p99
    shift 3
    out=$(taskset -c 1 wrk -t1 -c"$c" -d"$DURATION" --latency "$@" "$url")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    printf '%-20s c=%-4s %10s req/s   p50 %-9s p99 %s\n' "$label" "$c" "$rps" "$p50" "$p99" >&2
    echo "$rps"
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
