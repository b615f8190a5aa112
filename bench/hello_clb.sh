#!/usr/bin/env bash
# Benchmark: the seed's Hello CLB function behind an fnlb HTTP listener, against the conventional setups doing the
# same job: nginx (1 worker, upstream keep-alive) in front of uvicorn (2 workers, uvloop + httptools) serving the
# same answer as an ASGI app, and in front of gunicorn (2 sync workers) as a WSGI app; measured in the same run with
# the same wrk command, in rounds that take each setup in turn (so that a change in the machine's speed during the
# run weighs on all of them). Prints req/s and p50/p99 of each run, then the medians and their ratios.
#
# With BUSY=1 another process keeps one core busy during the rounds (a bounded `stress-ng --cpu 1`, Debian's
# stress-ng). Each run also counts the context switches of the whole machine (`perf stat -a`, when perf works) per
# request.
#
# Needs: wrk, nginx (Debian packages), python3 with venv. Everything runs on 127.0.0.1 and is stopped at the end.
# Usage: [BUSY=1] bench/hello_clb.sh [duration, default 10s] [connections, default 64] [rounds, default 3]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10s}
CONNS=${2:-64}
ROUNDS=${3:-3}
. bench/lib.sh

run_wrk() { # label url: prints "REQ/S P99" on stdout, the run's line on stderr
    local out switches=""
    if perf stat -a -e context-switches -o "$WORK/perf.txt" true 2>/dev/null; then
        out=$(perf stat -a -e context-switches -o "$WORK/perf.txt" wrk -t1 -c"$CONNS" -d"$DURATION" --latency "$2")
        switches=$(awk '/context-switches/ {gsub(",", "", $1); print $1}' "$WORK/perf.txt")
    else
        out=$(wrk -t1 -c"$CONNS" -d"$DURATION" --latency "$2")
    fi
    local rps p50 p99 requests
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    requests=$(awk '/requests in/ {print $1}' <<<"$out")
    local per=""
    [ -n "$switches" ] && per=$(python3 -c "print('  %.2f context switches/request' % ($switches / max($requests, 1)))")
    printf '%-40s %10s req/s   p50 %-9s p99 %-9s%s\n' "$1" "$rps" "$p50" "$p99" "$per" >&2
    echo "$rps $p99"
}

cargo build --release --quiet
python=/usr/bin/python3
[ -x "$python" ] || python=$(command -v python3)
if [ ! -x bench/.venv/bin/gunicorn ] || [ ! -x bench/.venv/bin/uvicorn ]; then
    "$python" -m venv bench/.venv
    bench/.venv/bin/pip install --quiet --disable-pip-version-check gunicorn==23.0.0 uvicorn==0.54.0 uvloop==0.23.0 \
        httptools==0.9.0
fi

echo "machine: $(nproc) cores, $(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r); wrk -t1 -c$CONNS -d$DURATION; $ROUNDS rounds" >&2

# fnlb with the embedded example.
API_PORT=$(free_port); LB_PORT=$(free_port)
./target/release/fnlb serve --data-dir "$WORK/fnlb" --api-addr "127.0.0.1:$API_PORT" --example --example-port "$LB_PORT" \
    >"$WORK/fnlb.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$LB_PORT/"
run_wrk "fnlb (cold pass: instances start)" "http://127.0.0.1:$LB_PORT/" >/dev/null

# The peers: the same page from a WSGI app (gunicorn) and an ASGI app (uvicorn), each behind nginx.
GUNI_PORT=$(free_port); UVI_PORT=$(free_port); NGINX_PORT=$(free_port); NGINX_UVI_PORT=$(free_port)
cat >"$WORK/app.py" <<'PY'
BODY = b"<html><body><h1>Hello CLB</h1></body></html>"
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/html"), ("Content-Length", str(len(BODY)))])
    return [BODY]
async def asgi(scope, receive, send):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/html"), (b"content-length", str(len(BODY)).encode())]})
    await send({"type": "http.response.body", "body": BODY})
PY
(cd "$WORK" && exec "$OLDPWD/bench/.venv/bin/gunicorn" -w 2 -b "127.0.0.1:$GUNI_PORT" --log-level warning app:app) &
PIDS+=($!)
(cd "$WORK" && exec "$OLDPWD/bench/.venv/bin/uvicorn" --workers 2 --loop uvloop --http httptools --log-level warning \
    --no-access-log --host 127.0.0.1 --port "$UVI_PORT" app:asgi) &
PIDS+=($!)
nginx_proxy_conf 64 "$NGINX_PORT:$GUNI_PORT" "$NGINX_UVI_PORT:$UVI_PORT"
nginx -c "$WORK/nginx.conf" -g 'daemon off;' &
PIDS+=($!)
wait_http "http://127.0.0.1:$NGINX_PORT/"
wait_http "http://127.0.0.1:$NGINX_UVI_PORT/"
run_wrk "nginx -> uvicorn (warm-up)" "http://127.0.0.1:$NGINX_UVI_PORT/" >/dev/null
run_wrk "nginx -> gunicorn (warm-up)" "http://127.0.0.1:$NGINX_PORT/" >/dev/null

if [ "${BUSY:-0}" = 1 ]; then
    # Bounded: the rounds' length and a margin.
    busy_for=$(python3 -c "import re; d='$DURATION'; s=float(re.sub('[a-z]+$', '', d)) * {'s': 1, 'm': 60}.get(d[-1], 1); print(int(s * 3 * $ROUNDS + 60))")
    stress-ng --cpu 1 --timeout "${busy_for}s" --quiet & PIDS+=($!)
    echo "one core kept busy by stress-ng --cpu 1 (at most ${busy_for} s)" >&2
fi

FNLB=(); UVI=(); PEER=()
for round in $(seq 1 "$ROUNDS"); do
    FNLB+=("$(run_wrk "fnlb (warm), round $round" "http://127.0.0.1:$LB_PORT/")")
    UVI+=("$(run_wrk "nginx -> uvicorn 2 workers, round $round" "http://127.0.0.1:$NGINX_UVI_PORT/")")
    PEER+=("$(run_wrk "nginx -> gunicorn 2 sync, round $round" "http://127.0.0.1:$NGINX_PORT/")")
done

python3 - "${FNLB[*]}" "${UVI[*]}" "${PEER[*]}" >&2 <<'PY'
import statistics, sys

def ms(text):
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)

fnlb, uvi, peer = ([[float(x[0]), ms(x[1])] for x in zip(*[iter(arg.split())] * 2)] for arg in sys.argv[1:])
m = statistics.median
rps = lambda runs: m(r[0] for r in runs)
print('medians: fnlb %.0f, nginx+uvicorn %.0f, nginx+gunicorn %.0f req/s' % (rps(fnlb), rps(uvi), rps(peer)))
print('fnlb / nginx+uvicorn: %.2fx (rounds: %s); fnlb / nginx+gunicorn: %.2fx' % (
    rps(fnlb) / rps(uvi), ', '.join('%.2f' % (f[0] / u[0]) for f, u in zip(fnlb, uvi)), rps(fnlb) / rps(peer)))
print('p99 fnlb / nginx+uvicorn per round: %s (fnlb %s ms; nginx+uvicorn %s ms)' % (
    ', '.join('%.2f' % (f[1] / u[1]) for f, u in zip(fnlb, uvi)),
    ', '.join('%.2f' % f[1] for f in fnlb), ', '.join('%.2f' % u[1] for u in uvi)))
PY
