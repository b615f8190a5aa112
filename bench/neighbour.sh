#!/usr/bin/env bash
# Benchmark: a noisy neighbour. The seed's function answers requests one at a time while another function of the
# same memory size (128 MB) runs eight busy processes; its latency is measured alone and beside the neighbour, with
# the processor quota in proportion to MemorySize (the default, --function-mb-per-cpu 128) and without it (0: only
# the proportional share under contention).
# Usage: bench/neighbour.sh [requests per case, default 300]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-300}
. bench/lib.sh

cargo build --release --quiet
echo "machine: $(nproc) cores, $(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r); $N requests each" >&2

measure() { # mb-per-cpu
    local api lb
    api=$(free_port); lb=$(free_port)
    ./target/release/fnlb serve --data-dir "$WORK/n$1" --api-addr "127.0.0.1:$api" --example --example-port "$lb" \
        --function-mb-per-cpu "$1" >"$WORK/n$1.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait_http "http://127.0.0.1:$lb/"
    python3 - "$1" "$api" "$lb" "$N" "$WORK/n$1" <<'PY'
import base64, http.client, io, json, statistics, subprocess, sys, time, zipfile
quota, api, lb, n, data = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
def call(service, action, params):
    subprocess.run(["./target/release/fnlb", "call", "--endpoint", "http://127.0.0.1:" + api, "--data-dir", data,
                    service, action, json.dumps(params)], check=True, capture_output=True)
code = """import os, time
def main_handler(event, context):
    end = time.time() + float(event.get("seconds", 1))
    children = []
    for _ in range(8):
        pid = os.fork()
        if pid == 0:
            while time.time() < end:
                pass
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)
    return "done"
"""
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w") as z:
    z.writestr("index.py", code)
call("scf", "CreateFunction", {"FunctionName": "spinner", "Runtime": "Python3.9", "Handler": "index.main_handler",
                               "MemorySize": 128, "Timeout": 60, "Code": {"ZipFile": base64.b64encode(buf.getvalue()).decode()}})
def latencies():
    c = http.client.HTTPConnection("127.0.0.1", lb, timeout=30)
    out = []
    for _ in range(n):
        t = time.perf_counter(); c.request("GET", "/"); r = c.getresponse(); r.read()
        out.append((time.perf_counter() - t) * 1000)
        assert r.status == 200
    return out
def report(label, samples):
    samples.sort()
    print("%-44s mean %6.2f ms   p50 %6.2f ms   p99 %6.2f ms" % (label, statistics.mean(samples), statistics.median(samples),
          samples[int(len(samples) * 0.99) - 1]), file=sys.stderr)
latencies()  # warm-up
report("alone (mb-per-cpu %s)" % quota, latencies())
call("scf", "Invoke", {"FunctionName": "spinner", "InvocationType": "Event", "ClientContext": json.dumps({"seconds": 30})})
time.sleep(1)  # the neighbour's processes are running
report("beside 8 busy processes (mb-per-cpu %s)" % quota, latencies())
PY
    kill "$pid"; wait "$pid" 2>/dev/null || true
}

measure 128
measure 0
