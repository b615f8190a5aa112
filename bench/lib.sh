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
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        python3 -c 'import time; time.sleep(0.1)'
    done
    echo "no answer from $1" >&2
    return 1
}

# Writes $WORK/nginx.conf: nginx with one worker, proxying each LISTEN_PORT:UPSTREAM_PORT pair on 127.0.0.1 with
# upstream keep-alive (KEEPALIVE idle connections). Usage: nginx_proxy_conf KEEPALIVE PAIR...
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
            echo "        listen 127.0.0.1:$listen;"
            echo "        location / { proxy_pass http://u$listen; proxy_http_version 1.1; proxy_set_header Connection \"\"; }"
            echo "    }"
        done
        echo "}"
    } >"$WORK/nginx.conf"
}
