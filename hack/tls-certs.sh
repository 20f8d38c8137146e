#!/usr/bin/env bash
# Writes a throw-away CA and a kube-apiserver serving certificate signed by it
# into DIR: ca.crt (what kubeconfigs trust, as certificate-authority-data), ca.der
# (the same in DER), serving.crt and serving.key (--tls-cert-file,
# --tls-private-key-file). The serving certificate is for 127.0.0.1 (an IP SAN: rustls, as kube-rs uses it,
# matches an IP address only against IP SANs) and localhost. ECDSA P-256 keys,
# valid 30 days. Used by hack/local-up.sh and the test harness (tests/common).
#
#   hack/tls-certs.sh DIR
set -euo pipefail
dir=${1:?usage: hack/tls-certs.sh DIR}
mkdir -p "$dir"
cat >"$dir/openssl.cnf" <<'CNF'
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[serving]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
authorityKeyIdentifier = keyid
CNF
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
key "$dir/ca.key"
openssl req -x509 -new -config "$dir/openssl.cnf" -extensions ca -key "$dir/ca.key" \
  -subj "/CN=tracing-relation-operator test CA" -days 30 -out "$dir/ca.crt"
key "$dir/serving.key"
openssl req -new -config "$dir/openssl.cnf" -key "$dir/serving.key" -subj "/CN=127.0.0.1" \
  -out "$dir/serving.csr"
openssl x509 -req -in "$dir/serving.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
  -set_serial "0x$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')" -days 30 \
  -extfile "$dir/openssl.cnf" -extensions serving -out "$dir/serving.crt" 2>/dev/null
rm -f "$dir/serving.csr" "$dir/openssl.cnf"
# The CA once more in DER, for clients that take DER (kube::Config::root_cert).
openssl x509 -in "$dir/ca.crt" -outform DER -out "$dir/ca.der"
