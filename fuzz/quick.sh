#!/bin/sh
# Runs every fuzz target for a few seconds (default 3) when clang and
# libFuzzer are installed: the parsers' (fuzz_parse_*, fuzz_events_*) and
# the simulator's request handling (fuzz_sim), the multipart/batching reader
# (fuzz_multipart); skips (exit 0) otherwise.
# For CI:
#   sh fuzz/quick.sh [seconds]
cd "$(dirname "$0")" || exit 1
if ! command -v clang >/dev/null 2>&1; then
  echo "fuzz: clang not found, skipped"
  exit 0
fi
if ! echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n){(void)d;(void)n;return 0;}' |
    clang -x c -fsanitize=fuzzer -o /dev/null - >/dev/null 2>&1; then
  echo "fuzz: libFuzzer not available (libclang-rt-dev), skipped"
  exit 0
fi
exec make run FUZZ_TIME="${1:-3}"
