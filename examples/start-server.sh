#!/usr/bin/env bash
# Starts an example's server in the background unless it already runs, and waits until it listens:
#   start-server.sh NAME COMMAND [ARG...]
# keeps its PID in NAME.pid and its output in NAME.log (stop it with: kill "$(cat NAME.pid)").
set -euo pipefail
name=$1
shift
if [ -f "$name.pid" ] && kill -0 "$(cat "$name.pid")" 2>/dev/null; then
    exit 0
fi
"$@" > "$name.log" 2>&1 &
echo $! > "$name.pid"
# Up to 5 seconds for it to say it listens.
for _ in $(seq 50); do
    grep -q listening "$name.log" 2>/dev/null && break
    sleep 0.1
done
grep -q listening "$name.log" || { echo "$name did not start; see $name.log" >&2; exit 1; }
echo "Started $(head -1 "$name.log") (PID $(cat "$name.pid"))."
