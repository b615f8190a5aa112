#!/usr/bin/env bash
# Checks the Debian package on this machine: builds it, installs it with dpkg, starts the service (with systemd
# when it runs here, otherwise by running the unit's own ExecStart line), waits for /ready, sees the API, the
# metrics and the embedded console answer, stops fnlb with SIGTERM and removes the package. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

deb=$(packaging/build-deb.sh | tail -1)
dpkg -i "$deb" >/dev/null
trap 'dpkg -r fnlb >/dev/null 2>&1 || true' EXIT
test -x /usr/bin/fnlb
test -f /lib/systemd/system/fnlb.service
test -f /etc/fnlb/fnlb.toml

ready() {
    # Up to 60 seconds for /ready.
    for _ in $(seq 120); do
        if curl -fsS http://127.0.0.1:9001/ready >/dev/null 2>&1; then return 0; fi
        sleep 0.5
    done
    return 1
}

if [ -d /run/systemd/system ] && systemctl is-system-running >/dev/null 2>&1; then
    systemctl start fnlb.service
    ready || { journalctl -u fnlb --no-pager | tail -30; exit 1; }
    pid=$(systemctl show -p MainPID --value fnlb.service)
else
    # No service manager here: the unit's command line, as systemd would run it.
    exec_start=$(sed -n 's/^ExecStart=//p' /lib/systemd/system/fnlb.service)
    mkdir -p /var/lib/fnlb /var/log/fnlb
    $exec_start > /tmp/fnlb-deb.log 2>&1 &
    pid=$!
    ready || { cat /tmp/fnlb-deb.log; kill "$pid"; exit 1; }
fi

# Each answer is read whole before it is searched (grep -q stopping early would cut the writer off).
live=$(curl -fsS http://127.0.0.1:9001/live)
metrics=$(curl -fsS http://127.0.0.1:9001/metrics)
console=$(curl -fsS http://127.0.0.1:9000/console/)
status=$(/usr/bin/fnlb status --admin http://127.0.0.1:9001)
grep -q live <<<"$live"
grep -q '^fnlb_build_info' <<<"$metrics"
grep -q '/console/app.js' <<<"$console"
grep -q ready <<<"$status"

kill -TERM "$pid"
for _ in $(seq 120); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
done
if kill -0 "$pid" 2>/dev/null; then
    echo "fnlb did not stop within 60 s of SIGTERM" >&2
    exit 1
fi
echo "The package installs, starts, answers and stops: $deb"
