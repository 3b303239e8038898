#!/bin/sh
# Installs, from Debian's archive, whatever the build and the tests need and
# this machine lacks. Idempotent and quiet when everything is present.
#
# It never starts, stops or restarts a service. apt-get runs with a temporary
# /usr/sbin/policy-rc.d that answers 101 ("action forbidden") to every init
# script action; invoke-rc.d (sysvinit, containers, no init at all) and
# deb-systemd-invoke (systemd) both obey it. So a daemon that comes with a new
# package (Postfix: the tests use its binaries, smtp-sink and instances of
# their own in temporary directories) is not started, and one already running on
# this host (say the production Postfix of a legacy mail server) is left
# exactly as it was. An existing policy-rc.d is moved aside for the duration
# and put back afterwards, also when apt-get fails or the script is
# interrupted; one left behind by a run that was killed outright (SIGKILL) is
# put back by the next run.
#
# Hooks for tests/e2e/test_deps.py: DEPS_PACKAGES replaces the package list,
# DEPS_APT_GET the apt-get command, DEPS_POLICY_RC_D the policy-rc.d path.
set -eu
pkgs="${DEPS_PACKAGES:-bazel-bootstrap bazel-rules-java gcc clang libc6-dev python3 openssl
libuv1-dev android-libboringssl-dev libconfig-dev libcmocka-dev
swaks libnet-ssleay-perl libio-socket-inet6-perl postfix iproute2 iptables procps ca-certificates
testssl.sh bsdmainutils dnsutils
libunbound-dev dns-root-data ldnsutils nsd unbound zlib1g-dev libhiredis-dev redis-server
buildah debootstrap debian-archive-keyring python3-yaml msmtp curl}"
apt_get="${DEPS_APT_GET:-apt-get}"
policy="${DEPS_POLICY_RC_D:-/usr/sbin/policy-rc.d}"
saved="$policy.smtp-tls-proxy-saved"
marker="# temporary, from smtp-tls-proxy bazel/deps.sh"

missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing="$missing $p"
done
[ -n "$missing" ] || exit 0

echo "installing:$missing" >&2
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; else sudo=""; fi

exists() { [ -e "$1" ] || [ -L "$1" ]; }
ours() { [ -f "$1" ] && [ ! -L "$1" ] && grep -qxF "$marker" "$1"; }

# A previous run killed before it could clean up: ours is still in place and
# the original, if there was one, is in $saved.
if ours "$policy"; then $sudo rm -f "$policy"; fi
if exists "$saved"; then
    if exists "$policy"; then
        echo "deps.sh: both $policy and $saved exist; resolve by hand" >&2
        exit 1
    fi
    $sudo mv "$saved" "$policy"
fi

held=0
release() {
    [ "$held" = 1 ] || return 0
    if ours "$policy"; then $sudo rm -f "$policy"; fi
    if exists "$saved"; then $sudo mv "$saved" "$policy"; fi
    held=0
}
trap release EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

hold() {
    held=1
    # mv keeps the original as it was: mode, owner, or a symbolic link.
    if exists "$policy"; then $sudo mv "$policy" "$saved"; fi
    printf '#!/bin/sh\n%s\n# No service starts, stops or restarts while it installs packages.\nexit 101\n' \
        "$marker" | $sudo sh -c 'cat > "$1.tmp" && chmod 755 "$1.tmp" && mv -f "$1.tmp" "$1"' sh "$policy"
}

case " $missing " in
*" postfix "*)
    # Answer its question up front, only when this run installs it (never
    # touch the debconf answers of a Postfix that is already there).
    echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections ;;
esac
$sudo $apt_get update -q
hold
# sudo resets the environment: DEBIAN_FRONTEND goes through env.
$sudo env DEBIAN_FRONTEND=noninteractive $apt_get install -y -q --no-install-recommends $missing >&2
release
