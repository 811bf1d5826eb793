#!/usr/bin/env bash
# The Debian packages scripts/bench-cluster.ts uses for its etcd comparison, installed when missing:
# etcd-server (3 members), golang-go and golang-etcd-server-dev (to build scripts/etcdbench offline
# in GOPATH mode against the clientv3 sources Debian ships). Not part of the tests; the benchmark
# runs without them and says that it left etcd out. Needs root and apt-get when something is missing.
set -euo pipefail

need=()
command -v redis-benchmark >/dev/null 2>&1 || need+=(redis-tools)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v go >/dev/null 2>&1 || need+=(golang-go)
[ -d /usr/share/gocode/src/go.etcd.io/etcd/clientv3 ] || need+=(golang-etcd-server-dev)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "the benchmark needs these Debian packages: ${need[*]}; install them (apt-get install ${need[*]}) and run again" >&2
  exit 1
fi
echo "installing what the benchmark needs: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# A policy-rc.d that refuses keeps the etcd-server package from starting a daemon on 2379.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; own_policy=1; fi
apt-get install -y -qq "${need[@]}" >/dev/null
if [ "$own_policy" = 1 ]; then rm -f "$policy"; fi
if command -v systemctl >/dev/null 2>&1 && systemctl is-enabled --quiet etcd 2>/dev/null; then
  systemctl disable --now etcd >/dev/null 2>&1 || true
fi
