#!/usr/bin/env bash
# Deploys the general-access example to a running fnlb: makes a certificate authority and a certificate for
# hello.fnlb.test under tls/ (once), then applies fnlb.yaml. Extra arguments go to `fnlb apply`.
set -euo pipefail
cd "$(dirname "$0")"
../make-cert.sh tls hello.fnlb.test
"${FNLB:-fnlb}" apply -f fnlb.yaml "$@"
