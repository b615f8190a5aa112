#!/usr/bin/env bash
# Deploys the flash-sale example to a running fnlb: a certificate for daily.fnlb.test and sale.fnlb.test under
# tls/ (once), the daily server on 127.0.0.1:8082 (its PID in server.pid) unless it runs, then fnlb.yaml. Extra
# arguments go to `fnlb apply`. Stop the server with: kill "$(cat server.pid)"
set -euo pipefail
cd "$(dirname "$0")"
../make-cert.sh tls daily.fnlb.test sale.fnlb.test

../start-server.sh server python3 server.py --port 8082

"${FNLB:-fnlb}" apply -f fnlb.yaml "$@"
