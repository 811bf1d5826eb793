#!/usr/bin/env bash
# Installs Debian packages for scripts/test-tools.sh and scripts/bench-tools.sh, never starting the
# daemon a package brings: `apt-install.sh WHO SERVICE PACKAGE...` (WHO names the user in messages,
# SERVICE is the systemd unit to keep off). Needs root and apt-get; otherwise says what to install.
set -euo pipefail
who=$1
service=$2
shift 2
[ $# -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "Debian packages missing for $who: $*; install them (apt-get install $*) and run again" >&2
  exit 1
fi
echo "installing for $who: $*" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# A policy-rc.d that refuses keeps a package from starting its daemon (redis-server on 6379, etcd on 2379).
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; own_policy=1; fi
apt-get install -y -qq "$@" >/dev/null
if [ "$own_policy" = 1 ]; then rm -f "$policy"; fi
if command -v systemctl >/dev/null 2>&1 && systemctl is-enabled --quiet "$service" 2>/dev/null; then
  systemctl disable --now "$service" >/dev/null 2>&1 || true
fi
