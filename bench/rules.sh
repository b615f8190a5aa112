#!/usr/bin/env bash
# Benchmark: proxy throughput with 10,000 rules on the listener against 1 rule. Two HTTP listeners of one fnlb
# forward to the same server (examples/upstream.rs): one with a single rule, one with 10,000 rules in the router
# micro-benchmark's mix (exact, wildcard and regex domains; prefix, exact and regex URLs). Both get the same
# request, which goes to one of the last rules on the large listener and to the default domain on the other. fnlb
# runs on CPU 0 (taskset); the upstream and wrk share CPU 1. Both listeners are measured in rounds that take each
# in turn, with fnlb's CPU time per request; prints the medians and their ratio.
#
# Needs: wrk. Everything runs on 127.0.0.1 and is stopped at the end.
# Usage: bench/rules.sh [duration, default 10s] [connections, default 64] [rounds, default 3]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10s}
C=${2:-64}
ROUNDS=${3:-3}
RULES=10000
. bench/lib.sh

cargo build --release --quiet --bin fnlb --example upstream
echo "machine: $(nproc) cores, $(uname -r); wrk -t1 -c$C -d$DURATION" >&2

UP_PORT=$(free_port)
taskset -c 1 ./target/release/examples/upstream "127.0.0.1:$UP_PORT" & PIDS+=($!)
wait_http "http://127.0.0.1:$UP_PORT/"

ONE_PORT=$(free_port); MANY_PORT=$(free_port)
fnlb_start --rules-per-listener "$RULES"
fnlb_proxy HTTP "$ONE_PORT" "$UP_PORT"
MANY=$(fnlb_call clb CreateListener "{\"LoadBalancerId\":\"$LB\",\"Ports\":[$MANY_PORT],\"Protocol\":\"HTTP\",\"KeepaliveEnable\":1}" | field ListenerIds)

# The rules, 50 to a CreateRule call; the target goes to rule 9997 (d2499.example.com, /api/v9997/).
started=$(date +%s)
TARGET_RULE=$(FNLB_DATA_DIR="$WORK/fnlb" python3 - "$LB" "$MANY" "$RULES" "http://127.0.0.1:$API_PORT" <<'PY'
import json, subprocess, sys
lb, listener, n, endpoint = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
def rule(i):
    domain = {0: f"*.w{i}.example.com", 1: f"www.t{i}.*"}.get(i % 10)
    if domain is None:
        domain = f"~^api{i}\\d+\\.example\\.com$" if i % 100 == 2 else f"d{i // 4}.example.com"
    url = ["/", f"/api/v{i}/", f"= /exact/{i}", f"~* \\.(gif|jpg|png){i}$"][i % 4]
    return {"Domain": domain, "Url": url, "HealthCheck": {"HealthSwitch": 0}}
ids = []
for start in range(0, n, 50):
    params = {"LoadBalancerId": lb, "ListenerId": listener, "Rules": [rule(i) for i in range(start, min(n, start + 50))]}
    command = ["./target/release/fnlb", "call", "--endpoint", endpoint, "clb", "CreateRule", json.dumps(params)]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    ids += json.loads(out.stdout)["LocationIds"]
print(ids[9997])
PY
)
echo "created $RULES rules in $(( $(date +%s) - started )) s" >&2
fnlb_call clb RegisterTargets "{\"LoadBalancerId\":\"$LB\",\"ListenerId\":\"$MANY\",\"LocationId\":\"$TARGET_RULE\",\"Targets\":[{\"EniIp\":\"127.0.0.1\",\"Port\":$UP_PORT}]}" >/dev/null
wait_http "http://127.0.0.1:$ONE_PORT/"
curl -fsS -o /dev/null -H 'Host: d2499.example.com' "http://127.0.0.1:$MANY_PORT/api/v9997/items"

warm_up "http://127.0.0.1:$ONE_PORT/api/v9997/items" "$C" -H 'Host: d2499.example.com'
warm_up "http://127.0.0.1:$MANY_PORT/api/v9997/items" "$C" -H 'Host: d2499.example.com'
ONE=() MANY_RPS=()
for round in $(seq 1 "$ROUNDS"); do
    ONE+=("$(CPU_PID=$FNLB_PID measure_once "1 rule, round $round" \
        "http://127.0.0.1:$ONE_PORT/api/v9997/items" "$C" -H 'Host: d2499.example.com')")
    MANY_RPS+=("$(CPU_PID=$FNLB_PID measure_once "$RULES rules, round $round" \
        "http://127.0.0.1:$MANY_PORT/api/v9997/items" "$C" -H 'Host: d2499.example.com')")
done
python3 - "${ONE[*]}" "${MANY_RPS[*]}" >&2 <<'PY'
import statistics, sys
one, many = [[float(x) for x in a.split()] for a in sys.argv[1:]]
m = statistics.median
print('medians: 1 rule %.0f, 10,000 rules %.0f req/s; 10,000 rules / 1 rule: %.2fx (rounds: %s)' % (
    m(one), m(many), m(many) / m(one), ' '.join('%.2f' % (b / a) for a, b in zip(one, many))))
PY
