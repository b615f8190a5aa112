#!/usr/bin/env bash
# Deploys the cvm-scf-switch example to a running fnlb: starts the shop server on 127.0.0.1:8081 (its PID in
# server.pid, its output in server.log) unless it already runs, then applies fnlb.yaml. Extra arguments go to
# `fnlb apply`. Stop the server with: kill "$(cat server.pid)"
set -euo pipefail
cd "$(dirname "$0")"

../start-server.sh server python3 server.py --port 8081 --name cvm

"${FNLB:-fnlb}" apply -f fnlb.yaml "$@"
