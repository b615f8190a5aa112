#!/usr/bin/env bash
# Benchmark: latency of a cold request for the seed's function (one that must start an instance), measured at
# the load balancer, with the zygote (instances forked from a template) and without (an interpreter per instance),
# and of a warm request for comparison. Instances are stopped as soon as they are idle (--idle-timeout 0), and the
# client pauses between requests so that each one finds no warm instance.
# Usage: bench/cold_start.sh [requests, default 50]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-50}
. bench/lib.sh

cargo build --release --quiet
echo "machine: $(nproc) cores, $(uname -r); $N requests each" >&2

measure() { # label idle-timeout zygote pause-ms
    local api lb
    api=$(free_port); lb=$(free_port)
    ./target/release/fnlb serve --data-dir "$WORK/$1" --api-addr "127.0.0.1:$api" --example --example-port "$lb" \
        --idle-timeout "$2" --zygote "$3" >"$WORK/$1.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    python3 - "$1" "http://127.0.0.1:$lb/" "$N" "$4" <<'PY'
import http.client, statistics, sys, time, urllib.parse
label, url, n, pause = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]) / 1000
u = urllib.parse.urlparse(url)
deadline = time.monotonic() + 30
while True:
    try:
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=5); c.request("GET", "/"); c.getresponse().read(); c.close(); break
    except OSError:
        if time.monotonic() > deadline: raise
        time.sleep(0.05)
samples = []
for _ in range(n):
    time.sleep(pause)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    c.connect()
    t = time.perf_counter()
    c.request("GET", "/")
    r = c.getresponse(); r.read()
    samples.append((time.perf_counter() - t) * 1000)
    assert r.status == 200
    c.close()
samples.sort()
print("%-36s median %7.2f ms   p90 %7.2f ms   min %7.2f ms" % (label, statistics.median(samples), samples[int(len(samples) * 0.9) - 1], samples[0]), file=sys.stderr)
PY
    kill "$pid"; wait "$pid" 2>/dev/null || true
}

measure "warm (instance reused)" 60 true 20
measure "cold, forked from the zygote" 0 true 100
measure "cold, new interpreter (no zygote)" 0 false 100
