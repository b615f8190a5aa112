#!/usr/bin/env bash
# Deploys the general-access example to a running fnlb: makes a certificate authority and a certificate for
# hello.fnlb.test under tls/ (once), then applies fnlb.yaml. Extra arguments go to `fnlb apply`.
set -euo pipefail
cd "$(dirname "$0")"
fnlb=${FNLB:-fnlb}

if [ ! -f tls/hello.fnlb.test.crt ]; then
    mkdir -p tls
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
        -subj "/CN=fnlb example CA" -keyout tls/ca.key -out tls/ca.crt 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -subj "/CN=hello.fnlb.test" -keyout tls/hello.fnlb.test.key -out tls/hello.fnlb.test.csr 2>/dev/null
    printf 'subjectAltName=DNS:hello.fnlb.test\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > tls/ext.cnf
    openssl x509 -req -in tls/hello.fnlb.test.csr -CA tls/ca.crt -CAkey tls/ca.key -CAcreateserial -days 825 \
        -extfile tls/ext.cnf -out tls/hello.fnlb.test.crt 2>/dev/null
    rm -f tls/hello.fnlb.test.csr tls/ext.cnf tls/ca.srl
    echo "Made tls/ca.crt (trust it to open the site) and the certificate for hello.fnlb.test."
fi

"$fnlb" apply -f fnlb.yaml "$@"
