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
exec bash "$(dirname "$0")/apt-install.sh" "the benchmark" etcd "${need[@]}"
