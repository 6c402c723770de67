#!/usr/bin/env bash
# Installs what is missing for a set-up: `deps.sh GROUP...`, groups below. The one place that
# installs anything, used by ./demo, ./test, .ci/run and .ci/examples-deps.sh.
# Silent and a no-op when everything is there. Otherwise it installs the missing Debian packages
# with apt-get, as root or through passwordless sudo; when it cannot, it prints the exact command
# to run and exits 1. Uses bash builtins only until it installs.
set -euo pipefail

# Each group: "package:check" pairs. A check is a program on PATH, or a path pattern (it starts
# with /) that must match a file. To need something more, add a pair to its group.
build=(cmake:cmake ninja-build:ninja g++:g++ pkg-config:pkg-config
       libgtest-dev:/usr/include/gtest/gtest.h libbenchmark-dev:/usr/include/benchmark/benchmark.h)
# The clients and servers that the example servers' tests drive.
examples=(curl:curl redis-tools:redis-cli redis-tools:redis-benchmark redis-server:redis-server
          wrk:wrk systemd:systemd-socket-activate nginx-light:/usr/sbin/nginx
          haproxy:/usr/sbin/haproxy iproute2:ss)
# CI's sanitizer and fuzzer builds: clang and its runtime libraries.
ci=(clang:clang++ libclang-rt-dev:'/usr/lib/llvm-*/lib/clang/*/lib/*/libclang_rt.fuzzer*.a')

present() {
  if [[ $1 == /* ]]; then compgen -G "$1" >/dev/null; else command -v "$1" >/dev/null; fi
}

[ $# -gt 0 ] || { echo "usage: deps.sh build|examples|ci..." >&2; exit 2; }
declare -A seen=()
missing=()
for group in "$@"; do
  case $group in
    build) pairs=("${build[@]}") ;;
    examples) pairs=("${examples[@]}") ;;
    ci) pairs=("${ci[@]}") ;;
    *) echo "deps: unknown group '$group' (build, examples, ci)" >&2; exit 2 ;;
  esac
  for pair in "${pairs[@]}"; do
    package=${pair%%:*}
    if ! present "${pair#*:}" && [ -z "${seen[$package]:-}" ]; then
      seen[$package]=1
      missing+=("$package")
    fi
  done
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=()
if [ "$EUID" -ne 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
  else
    echo "deps: missing ${missing[*]}; install them (Debian/Ubuntu) with:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
fi
if ! command -v apt-get >/dev/null; then
  echo "deps: missing ${missing[*]} (Debian package names) and there is no apt-get here:" \
       "install them with this system's package manager" >&2
  exit 1
fi

echo "deps: installing ${missing[*]}"
apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -qq)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { "${apt[@]}" update && "${apt[@]}" install -y --no-install-recommends "${missing[@]}"; } \
     >"$log" 2>&1; then
  cat "$log" >&2
  echo "deps: apt-get failed" >&2
  exit 1
fi
