#!/usr/bin/env bash
# The Debian tools the tests use, installed when missing: redis-cli and redis-benchmark
# (redis-tools) for the compatibility tests, redis-server for the differential test (it starts its
# own on a free port), unshare/nsenter (util-linux) and mkfs.ext4 (e2fsprogs) for the disk-fault
# tests. Run by `npm test` and .ci/run. Needs root and apt-get when something is missing.
set -euo pipefail

need=()
command -v redis-cli >/dev/null 2>&1 && command -v redis-benchmark >/dev/null 2>&1 || need+=(redis-tools)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v mkfs.ext4 >/dev/null 2>&1 || need+=(e2fsprogs)
{ command -v unshare && command -v nsenter; } >/dev/null 2>&1 || need+=(util-linux)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "the tests need these Debian packages: ${need[*]}; install them (apt-get install ${need[*]}) and run again" >&2
  exit 1
fi
echo "installing what the tests need: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# A policy-rc.d that refuses keeps the redis-server package from starting a daemon on 6379.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; own_policy=1; fi
apt-get install -y -qq "${need[@]}" >/dev/null
if [ "$own_policy" = 1 ]; then rm -f "$policy"; fi
if command -v systemctl >/dev/null 2>&1 && systemctl is-enabled --quiet redis-server 2>/dev/null; then
  systemctl disable --now redis-server >/dev/null 2>&1 || true
fi
