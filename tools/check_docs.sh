#!/bin/sh
# Builds the API reference with LDoc (config.ld, into build/doc) and fails on
# any warning or error LDoc prints, then on any public function (C or Lua) or
# client option without an entry, or a private one with an entry
# (tools/check_api_docs.lua, which loads ucwa.core from $UCWA_BUILD, default
# build/). Run from anywhere: `tools/check_docs.sh` (`make doc` builds first).
set -eu
cd "$(dirname "$0")/.."
command -v ldoc >/dev/null 2>&1 || { echo "check_docs: ldoc not found (Debian: lua-ldoc)" >&2; exit 2; }
rm -rf build/doc
mkdir -p build/doc
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
ldoc -c config.ld . >"$log" 2>&1 || status=$?
# What LDoc prints when all is well; everything else is a warning.
problems=$(grep -v -E '^(reading configuration from config\.ld|output written to .*)$' "$log" || true)
if [ "$status" -ne 0 ] || [ -n "$problems" ]; then
  cat "$log" >&2
  echo "check_docs: ldoc printed warnings (exit $status)" >&2
  exit 1
fi
[ -f build/doc/index.html ] || { echo "check_docs: build/doc/index.html missing" >&2; exit 1; }
echo "check_docs: API reference in build/doc, no warnings"
build=${UCWA_BUILD:-build}
[ -f "$build/ucwa/core.so" ] || { echo "check_docs: $build/ucwa/core.so missing (run make first)" >&2; exit 1; }
${LUA:-lua5.4} tools/check_api_docs.lua "$build" || {
  echo "check_docs: the reference misses public functions (or documents private ones)" >&2
  exit 1
}
