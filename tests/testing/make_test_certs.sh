#!/bin/sh
# Makes throwaway certificates for the TLS tests in DIR (nothing secret is committed):
#   ca.pem                      a test CA ("emfit test CA")
#   server.pem, server.key      signed by ca.pem, for localhost and 127.0.0.1
#   client.pem, client.key      signed by ca.pem, CN=alice (mTLS)
#   other-ca.pem                another CA
#   other-client.pem/.key       signed by other-ca.pem, CN=mallory
# Usage: make_test_certs.sh DIR   (needs openssl)
set -eu
dir=$1
mkdir -p "$dir"
cd "$dir"
days=2
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ca() {  # ca NAME CN
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -subj "/CN=$2" -days $days -out "$1.pem" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
}
leaf() {  # leaf NAME CN CA EXTENSIONS
  key "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
  printf '%s\n' "$4" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -CAcreateserial -days $days \
    -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
ca ca "emfit test CA"
ca other-ca "another test CA"
leaf server localhost ca "subjectAltName=DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth"
leaf client alice ca "extendedKeyUsage=clientAuth"
leaf other-client mallory other-ca "extendedKeyUsage=clientAuth"
