#!/usr/bin/env sh
# Build the C TLS-PSK load generator (../shared/tools/pskload.c) into bench/.build/pskload.
# The binary is never committed (bench/.build is ignored); rebuilt when the source is newer.
# Usage: sh bench/build-pskload.sh [SOURCE]; prints the binary's path.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=${1:-${PSKLOAD_SRC:-$here/../../shared/tools/pskload.c}}
[ -f "$src" ] || src=/work/shared/tools/pskload.c
out=$here/.build/pskload
mkdir -p "$here/.build"
if [ ! -x "$out" ] || [ "$src" -nt "$out" ]; then
  cc -O2 -o "$out" "$src" -lssl -lcrypto
fi
echo "$out"
