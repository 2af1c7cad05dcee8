#!/usr/bin/env bash
# Installs what nativeroute's lab and tests need on a fresh Debian machine.
# Idempotent: installs only what is missing. Needs root.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/setup.sh: needs root (it installs packages and builds network namespaces); run it with sudo" >&2
  exit 1
fi

missing=()
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v ping >/dev/null 2>&1 || missing+=(iputils-ping)
command -v gcc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
command -v pkill >/dev/null 2>&1 || missing+=(procps)
# The SSH drivers' tests: real FRR (zebra, staticd, vtysh) behind a real sshd.
[ -x /usr/lib/frr/zebra ] && [ -x /usr/lib/frr/staticd ] && command -v vtysh >/dev/null 2>&1 || missing+=(frr)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
# The BGP driver's tests: FRR's bgpd (in the frr package), BIRD 2 and GoBGP.
[ -x /usr/lib/frr/bgpd ] || missing+=(frr)
command -v bird >/dev/null 2>&1 && command -v birdc >/dev/null 2>&1 || missing+=(bird2)
command -v gobgpd >/dev/null 2>&1 && command -v gobgp >/dev/null 2>&1 || missing+=(gobgpd)
command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)

if [ "${#missing[@]}" -gt 0 ]; then
  # Package installs must not start services on a build machine (the tests
  # start their own FRR and sshd in namespaces). A policy-rc.d of our own is
  # removed again afterwards, so later installs on this machine behave as
  # usual; one that was there before is left alone.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "scripts/setup.sh: cargo is missing; install Rust (https://rustup.rs) and run this again" >&2
  exit 1
fi

# The kernel features the lab and tests rely on.
if ! ip netns add nrsetup-probe 2>/dev/null; then
  echo "scripts/setup.sh: cannot create a network namespace here (ip netns add failed)" >&2
  exit 1
fi
ip netns del nrsetup-probe
