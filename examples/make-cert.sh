#!/usr/bin/env bash
# Makes a certificate authority and one server certificate for the names given, as the examples use them:
#   make-cert.sh DIR NAME [NAME...]
# writes DIR/ca.crt (trust it in the browser or with curl --cacert), DIR/ca.key, DIR/site.crt and DIR/site.key.
# Does nothing when DIR/site.crt exists.
set -euo pipefail
dir=$1
shift
[ -f "$dir/site.crt" ] && exit 0
mkdir -p "$dir"
sans=$(printf 'DNS:%s,' "$@")
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
    -subj "/CN=fnlb example CA" -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=$1" -keyout "$dir/site.key" -out "$dir/site.csr" 2>/dev/null
printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "${sans%,}" > "$dir/ext.cnf"
openssl x509 -req -in "$dir/site.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial -days 825 \
    -extfile "$dir/ext.cnf" -out "$dir/site.crt" 2>/dev/null
rm -f "$dir/site.csr" "$dir/ext.cnf" "$dir/ca.srl"
chmod 600 "$dir/ca.key" "$dir/site.key"
echo "Made $dir/ca.crt (trust it to open the site) and a certificate for $*."
