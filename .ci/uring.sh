#!/usr/bin/env bash
# Runs the whole test suite again on the io_uring backend (EVLOOP_BACKEND=io_uring), in the
# normal, ASan+UBSan and TSan builds that .ci/run has made. Where this kernel refuses io_uring
# (ENOSYS, kernel.io_uring_disabled, seccomp, a missing feature) evloop falls back to epoll, so
# the suite would only repeat the epoll run: then it says so and skips.
# Arguments: the presets to run (default: dev asan tsan).
set -euo pipefail
cd "$(dirname "$0")/.."
presets=("$@")
[ ${#presets[@]} -gt 0 ] || presets=(dev asan tsan)

# Ask evloop itself: the echo server prints a note at start when it falls back.
probe=build/dev/examples/echo-server/echo-server
out=$(mktemp) err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
"$probe" --backend io_uring --listen tcp://127.0.0.1:0 >"$out" 2>"$err" &
pid=$!
for _ in $(seq 100); do grep -q "listening on" "$out" && break; sleep 0.1; done
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
grep -q "listening on" "$out" || { echo "io_uring probe: the echo server did not start" >&2; cat "$err" >&2; exit 1; }
if grep -q "io_uring unavailable" "$err"; then
  echo "io_uring suite skipped: this kernel refuses io_uring ($(grep -o 'io_uring unavailable[^:]*' "$err"))"
  exit 0
fi
echo "io_uring available: running the suite on it (${presets[*]})"
for preset in "${presets[@]}"; do
  echo "--- EVLOOP_BACKEND=io_uring ctest --preset $preset"
  EVLOOP_BACKEND=io_uring ctest --preset "$preset"
done
