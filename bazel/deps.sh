#!/bin/sh
# Installs, from Debian's archive, whatever the build and the tests need and
# this machine lacks. Idempotent and quiet when everything is present.
set -eu
pkgs="bazel-bootstrap bazel-rules-java gcc clang libc6-dev python3 openssl
libuv1-dev android-libboringssl-dev libconfig-dev libcmocka-dev
swaks libnet-ssleay-perl libio-socket-inet6-perl postfix iproute2 iptables procps ca-certificates"
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "installing:$missing" >&2
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; else sudo=""; fi
    # Postfix is wanted only for smtp-sink; answer its questions up front
    # and keep its daemon stopped.
    echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends $missing >&2
    $sudo sh -c 'postfix stop >/dev/null 2>&1 || true'
fi
