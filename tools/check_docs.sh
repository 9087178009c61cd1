#!/bin/sh
# Builds the API reference with LDoc (config.ld, into build/doc) and fails on
# any warning or error LDoc prints. Run from anywhere: `tools/check_docs.sh`.
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
