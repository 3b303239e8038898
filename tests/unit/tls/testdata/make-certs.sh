#!/bin/sh
# Regenerates the TLS test fixtures for tests/unit/tls_test.c. They are
# checked in: run this only if they must change (they are valid 2020-2120),
# never from a test. Needs the openssl CLI (made with OpenSSL 3.0).
#
#   ca.pem/.key             test CA "smtp-tls-proxy test CA" (RSA 2048)
#   server-rsa.pem/.key     RSA 2048 leaf from the CA, SAN localhost, mx.test, 127.0.0.1
#   server-ecdsa.pem/.key   ECDSA P-256 leaf from the CA, same names
#   expired.pem/.key        ECDSA P-256 leaf from the CA for mx.test, valid 2000-2001 only
#   selfsigned.pem/.key     self-signed ECDSA P-256 for mx.test (issued by nobody we trust)
#   broken.pem              a PEM block that is not a certificate
#   cn-only.pem/.key        ECDSA P-256 leaf from the CA with CN mx.test and no subjectAltName
#   sni-a-rsa.pem/.key      RSA 2048 leaf from the CA for a.test (certificate choice by SNI)
#   sni-a-ecdsa.pem/.key    ECDSA P-256 leaf from the CA for a.test
#   sni-b-ecdsa.pem/.key    ECDSA P-256 leaf from the CA for b.w.test (exact beats wildcard)
#   sni-wild-ecdsa.pem/.key ECDSA P-256 leaf from the CA for *.w.test
#
# Everything is signed with "openssl ca" because "openssl x509" (3.0) cannot
# back-date: a notBefore of "now" would make the fixtures fail on a machine
# whose clock is behind the one that made them.
set -eu
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

from=20200101000000Z
until=21200101000000Z

# san_ext takes its subjectAltName from $SAN (set per sni certificate);
# openssl req parses the same file and needs it to have a value too.
SAN=DNS:unused
export SAN

mkdir "$tmp/db"
: >"$tmp/db/index.txt"
echo 1000 >"$tmp/db/serial"
cat >"$tmp/ca.cnf" <<CNF
[ca]
default_ca = test
[test]
database = $tmp/db/index.txt
serial = $tmp/db/serial
new_certs_dir = $tmp/db
default_md = sha256
policy = any
unique_subject = no
copy_extensions = none
[any]
commonName = supplied
[req]
distinguished_name = dn
[dn]
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[leaf_ext]
basicConstraints = CA:FALSE
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,DNS:mx.test,IP:127.0.0.1
authorityKeyIdentifier = keyid
[mx_ext]
basicConstraints = CA:FALSE
extendedKeyUsage = serverAuth
subjectAltName = DNS:mx.test
[cn_ext]
basicConstraints = CA:FALSE
extendedKeyUsage = serverAuth
[san_ext]
basicConstraints = CA:FALSE
extendedKeyUsage = serverAuth
subjectAltName = \$ENV::SAN
CNF
openssl ecparam -name prime256v1 -out "$tmp/p256"

csr() { # name keyalg
    openssl req -config "$tmp/ca.cnf" -new -newkey "$2" -nodes -subj "/CN=${3:-mx.test}" \
        -keyout "$1.key" -out "$tmp/$1.csr"
}
sign() { # name extensions start end [ca options...]
    name=$1 ext=$2 start=$3 end=$4
    shift 4
    openssl ca -batch -notext -config "$tmp/ca.cnf" -extensions "$ext" \
        -startdate "$start" -enddate "$end" -in "$tmp/$name.csr" -out "$name.pem" "$@"
}

csr ca rsa:2048 "smtp-tls-proxy test CA"
sign ca ca_ext $from $until -selfsign -keyfile ca.key

csr server-rsa rsa:2048
sign server-rsa leaf_ext $from $until -cert ca.pem -keyfile ca.key
csr server-ecdsa "ec:$tmp/p256"
sign server-ecdsa leaf_ext $from $until -cert ca.pem -keyfile ca.key
csr expired "ec:$tmp/p256"
sign expired mx_ext 20000101000000Z 20010101000000Z -cert ca.pem -keyfile ca.key
csr selfsigned "ec:$tmp/p256"
sign selfsigned mx_ext $from $until -selfsign -keyfile selfsigned.key
csr cn-only "ec:$tmp/p256"
sign cn-only cn_ext $from $until -cert ca.pem -keyfile ca.key
sni() { # name keyalg dnsname
    csr "$1" "$2" "$3"
    SAN="DNS:$3" sign "$1" san_ext $from $until -cert ca.pem -keyfile ca.key
}
sni sni-a-rsa rsa:2048 a.test
sni sni-a-ecdsa "ec:$tmp/p256" a.test
sni sni-b-ecdsa "ec:$tmp/p256" b.w.test
sni sni-wild-ecdsa "ec:$tmp/p256" "*.w.test"

printf -- '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n' >broken.pem
