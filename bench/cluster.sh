#!/usr/bin/env bash
# Benchmark: cluster mode on a throwaway PostgreSQL (bench/cluster.py says what it measures): change propagation
# between nodes under load, API write latency on PostgreSQL against SQLite, asynchronous jobs per second with 1 and
# 3 nodes, and a node's Hello CLB and reverse proxy throughput on PostgreSQL against SQLite.
#
# Needs: Debian's postgresql and wrk packages, python3. Everything runs on 127.0.0.0/8 and is stopped at the end.
# Usage: [CHANGES=100] [JOBS=1000] [DURATION=8s] [ROUNDS=3] [PHASES=propagation,writes,throughput,proxy,jobs] bench/cluster.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin fnlb --example upstream
exec python3 bench/cluster.py
