#!/usr/bin/env bash
# Benchmark: latency of a cold request for the seed's function (one that must start an instance), measured at
# the load balancer, with the zygote (instances forked from a template) and without (an interpreter per instance),
# and of a warm request for comparison. Instances are stopped as soon as they are idle (--idle-timeout 0), and the
# client pauses between requests so that each one finds no warm instance.
# The first request of a function just deployed, the first after its code is updated and the first of a version just
# published (through a rule bound to that version) are measured too, for Python (with and without the zygote) and
# for Node.js (from a spare the zygote's keepers started ahead of time, and with --node-spares 0, an interpreter per
# instance).
# Usage: bench/cold_start.sh [requests, default 50]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-50}
. bench/lib.sh

cargo build --release --quiet
echo "machine: $(nproc) cores, $(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r); $N requests each" >&2

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
print("%-36s median %7.2f ms   p90 %7.2f ms   p99 %7.2f ms   min %7.2f ms" % (label, statistics.median(samples),
      samples[int(len(samples) * 0.9) - 1], samples[max(0, int(len(samples) * 0.99) - 1)], samples[0]), file=sys.stderr)
PY
    kill "$pid"; wait "$pid" 2>/dev/null || true
}

measure "warm (instance reused)" 60 true 20
measure "cold, forked from the zygote" 0 true 100
measure "cold, new interpreter (no zygote)" 0 false 100

# The first request of a function deployed a moment before, and the first after its code is updated: each sample
# deploys (or updates) the seed's function through the API, binds it to a rule of its own on the example's listener,
# then times one request through the load balancer.
measure_deploys() { # label zygote runtime [node-spares] (Python3.9, or Nodejs18.15 for a Node.js port of the seed's function)
    local api lb spares=${4:-2}
    api=$(free_port); lb=$(free_port)
    ./target/release/fnlb serve --data-dir "$WORK/deploy-$3-$2-$spares" --api-addr "127.0.0.1:$api" --example \
        --example-port "$lb" --zygote "$2" --node-spares "$spares" >"$WORK/deploy-$3-$2-$spares.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait_http "http://127.0.0.1:$lb/"
    python3 - "$1" "$api" "$lb" "$N" "$WORK/deploy-$3-$2-$spares" "$3" <<'PY'
import base64, http.client, io, json, statistics, subprocess, sys, time, zipfile
label, api, lb, n, data, runtime = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
NODE_HELLO = """exports.main_handler = async (event, context) => ({
  isBase64Encoded: false, statusCode: 200, headers: {"Content-Type": "text/html"},
  body: "<html><body><h1>Hello CLB</h1></body></html>",
});
"""
def call(service, action, params):
    out = subprocess.run(["./target/release/fnlb", "call", "--endpoint", "http://127.0.0.1:" + api, "--data-dir", data,
                          service, action, json.dumps(params)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)
def package(text):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        if runtime.startswith("Nodejs"):
            z.writestr("index.js", NODE_HELLO.replace("Hello CLB", text))
        else:
            z.writestr("index.py", open("examples/hello-clb/index.py").read().replace("Hello CLB", text))
    return base64.b64encode(buf.getvalue()).decode()
lbs = call("clb", "DescribeLoadBalancers", {})["LoadBalancerSet"]
lb_id = lbs[0]["LoadBalancerId"]
listener = call("clb", "DescribeListeners", {"LoadBalancerId": lb_id})["Listeners"][0]["ListenerId"]
def first_request(path):
    c = http.client.HTTPConnection("127.0.0.1", lb, timeout=30); c.connect()
    t = time.perf_counter(); c.request("GET", path); r = c.getresponse(); body = r.read()
    took = (time.perf_counter() - t) * 1000
    assert r.status == 200, (r.status, body); c.close()
    return took, body
new, updated, published = [], [], []
for i in range(n):
    name, path = "bench-%d" % i, "/bench-%d" % i
    call("scf", "CreateFunction", {"FunctionName": name, "Runtime": runtime, "Handler": "index.main_handler",
                                   "Code": {"ZipFile": package("first %d" % i)}})
    rule = call("clb", "CreateRule", {"LoadBalancerId": lb_id, "ListenerId": listener,
                                      "Rules": [{"Domain": "127.0.0.1", "Url": path}]})["LocationIds"][0]
    call("clb", "RegisterFunctionTargets", {"LoadBalancerId": lb_id, "ListenerId": listener, "LocationId": rule,
         "FunctionTargets": [{"Function": {"FunctionNamespace": "default", "FunctionName": name,
                                           "FunctionQualifier": "$LATEST"}}]})
    took, body = first_request(path); new.append(took)
    assert b"first %d" % i in body, body
    call("scf", "UpdateFunctionCode", {"FunctionName": name, "ZipFile": package("second %d" % i)})
    took, body = first_request(path); updated.append(took)
    assert b"second %d" % i in body, body
    # A version just published, on a rule of its own: its own instances, started for its first request.
    version = call("scf", "PublishVersion", {"FunctionName": name})["FunctionVersion"]
    published_rule = call("clb", "CreateRule", {"LoadBalancerId": lb_id, "ListenerId": listener,
                                                "Rules": [{"Domain": "127.0.0.1", "Url": path + "-v"}]})["LocationIds"][0]
    call("clb", "RegisterFunctionTargets", {"LoadBalancerId": lb_id, "ListenerId": listener,
         "LocationId": published_rule, "FunctionTargets": [{"Function": {"FunctionNamespace": "default",
         "FunctionName": name, "FunctionQualifier": version}}]})
    took, body = first_request(path + "-v"); published.append(took)
    assert b"second %d" % i in body, body
    # Within the namespace's function quota, whatever the number of samples.
    call("clb", "DeleteRule", {"LoadBalancerId": lb_id, "ListenerId": listener, "LocationIds": [rule, published_rule]})
    call("scf", "DeleteFunction", {"FunctionName": name})
for what, samples in (("just deployed", new), ("after UpdateFunctionCode", updated), ("after PublishVersion", published)):
    samples.sort()
    print("%-36s median %7.2f ms   p99 %7.2f ms   min %7.2f ms" % (label + ", " + what, statistics.median(samples),
          samples[max(0, int(len(samples) * 0.99) - 1)], samples[0]), file=sys.stderr)
PY
    kill "$pid"; wait "$pid" 2>/dev/null || true
}

measure_deploys "zygote" true Python3.9
measure_deploys "no zygote" false Python3.9
measure_deploys "Node.js, from a spare" true Nodejs18.15
measure_deploys "Node.js, no spares" true Nodejs18.15 0
