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
exec bash "$(dirname "$0")/apt-install.sh" "the tests" redis-server "${need[@]}"
