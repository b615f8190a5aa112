#!/usr/bin/env bash
# Soak test: DURATION (e.g. 30m; default 60s) of constant HTTP and HTTPS load on a function rule and a server rule
# while the configuration changes, function instances and a backend are killed, and fnlb is killed with SIGKILL and
# started again (bench/soak.py says what it counts). Loopback only; every process is stopped at the end. Exits 1
# when a request failed outside the windows those events open, or an acknowledged API change was lost.
# Needs: openssl. Usage: bench/soak.sh [DURATION]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin fnlb --example upstream
grep -m1 "model name" /proc/cpuinfo
exec python3 bench/soak.py "${1:-60s}"
