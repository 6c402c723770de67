#!/usr/bin/env bash
# Builds the example parsers' libFuzzer targets with clang (-fsanitize=fuzzer,address,undefined)
# in build/fuzz and runs each from its seed corpus in the repository for a bounded time. Fails
# when a fuzzer finds a crash, a sanitizer report or a disagreement between whole and split input.
# Environment: EVLOOP_FUZZ_SECONDS (per fuzzer, default 35), EVLOOP_FUZZ_BUILD_DIR (default
#              build/fuzz), CMAKE_BUILD_PARALLEL_LEVEL (default 2), CLANGXX (default clang++).
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir=${EVLOOP_FUZZ_BUILD_DIR:-build/fuzz}
seconds=${EVLOOP_FUZZ_SECONDS:-35}
jobs=${CMAKE_BUILD_PARALLEL_LEVEL:-2}
clangxx=${CLANGXX:-clang++}

if ! command -v "$clangxx" >/dev/null; then
  echo "fuzz: $clangxx not found; libFuzzer needs clang" >&2
  exit 1
fi

cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_CXX_COMPILER="$clangxx" -DEVLOOP_BUILD_FUZZERS=ON -DEVLOOP_WERROR=ON \
      -DEVLOOP_BUILD_TESTS=OFF -DEVLOOP_BUILD_BENCH=OFF >/dev/null
cmake --build "$build_dir" -j"$jobs" --target http_parser_fuzz resp_parser_fuzz

# name:corpus pairs. The seed corpus stays untouched; new inputs go to a scratch directory.
fuzzers=(http_parser_fuzz:examples/http-server/fuzz/corpus
         resp_parser_fuzz:examples/redis-server/fuzz/corpus)
status=0
for entry in "${fuzzers[@]}"; do
  name=${entry%%:*}
  seeds=${entry#*:}
  binary=$(find "$build_dir" -type f -name "$name" -perm -u+x | head -n 1)
  work="$build_dir/fuzz-work/$name"
  rm -rf "$work"
  mkdir -p "$work/corpus" "$work/artifacts"
  echo "fuzz: $name for ${seconds}s from $seeds"
  if ! "$binary" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
       -artifact_prefix="$work/artifacts/" "$work/corpus" "$seeds" >"$work/log" 2>&1; then
    tail -n 60 "$work/log" >&2
    echo "fuzz: $name FAILED; reproducer(s) in $work/artifacts/" >&2
    status=1
  else
    grep -E '^stat::number_of_executed_units|^Done' "$work/log" | sed "s/^/fuzz: $name: /"
  fi
done
exit $status
