#!/usr/bin/env bash
# Needs the .venv that scripts/test makes (the Tencent SDK creates the namespaces).
# Benchmark: resident memory of fnlb itself with 100 functions deployed, and of an idle warm Python instance
# (RSS, and PSS, which counts pages shared with the zygote once per sharer).
# Usage: bench/memory.sh [functions, default 100]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100}
. bench/lib.sh
kb() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }

cargo build --release --quiet
API=$(free_port); LB=$(free_port)
./target/release/fnlb serve --data-dir "$WORK/data" --api-addr "127.0.0.1:$API" --example --example-port "$LB" \
    >"$WORK/fnlb.log" 2>&1 &
PID=$!
PIDS+=("$PID")
wait_http "http://127.0.0.1:$LB/"
fnlb() { ./target/release/fnlb "$@" --endpoint "http://127.0.0.1:$API" --data-dir "$WORK/data" >/dev/null; }
# Namespaces through the API with the Tencent SDK's wire format (the fnlb CLI has no namespace command).
fnlb_ns() {
    .venv/bin/python - "$API" "$WORK/data/credentials.json" "$1" <<'PY'
import json, sys
from tencentcloud.common import credential
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.scf.v20180416 import scf_client, models
api, creds, ns = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3]
client = scf_client.ScfClient(credential.Credential(creds["secretId"], creds["secretKey"]), "ap-guangzhou",
                              ClientProfile(httpProfile=HttpProfile(protocol="http", endpoint="127.0.0.1:" + api)))
req = models.CreateNamespaceRequest(); req.Namespace = ns
client.CreateNamespace(req)
PY
}
echo "fnlb with 1 function, 1 warm instance: $(kb "$PID" VmRSS) kB RSS" >&2
# 50 functions per namespace at most (contract 2.9): spread them over namespaces of their own.
for i in $(seq 1 "$N"); do
    ns="bench-$(( (i - 1) / 50 ))"
    if [ $(( (i - 1) % 50 )) -eq 0 ]; then
        fnlb_ns "$ns"
    fi
    fnlb function create "bench-$i" --namespace "$ns" --code examples/hello-clb --runtime Python3.9 2>/dev/null
done
echo "fnlb with $((N + 1)) functions: $(kb "$PID" VmRSS) kB RSS" >&2
# The example's warm instance: the forked runtime, a child of the zygote.
for p in $(pgrep -f "bootstrap.py"); do
    if grep -q "SCF_FUNCTIONNAME=hello-clb" "/proc/$p/environ" 2>/dev/null && [ "$(ps -o comm= -p "$p")" = "python3" ]; then
        pss=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup")
        echo "python3 process $p (zygote or instance): $(kb "$p" VmRSS) kB RSS, $pss kB PSS" >&2
    fi
done
