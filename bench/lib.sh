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
