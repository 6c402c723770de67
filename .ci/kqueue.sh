#!/usr/bin/env bash
# Builds evloop with the kqueue backend and runs its test suite (all tests but the demo).
# On Linux that needs libkqueue: it is looked up with pkg-config under EVLOOP_LIBKQUEUE_PREFIX
# (default /opt/libkqueue) and PKG_CONFIG_PATH; when it is not installed this script says so and
# exits 0, so the epoll CI stays green on machines without it. On the BSDs and macOS kqueue is
# native and the suite always runs.
# Environment: EVLOOP_LIBKQUEUE_PREFIX, EVLOOP_KQUEUE_BUILD_DIR (default build/kqueue),
#              CMAKE_BUILD_PARALLEL_LEVEL (default 2), CXX (compiler).
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir=${EVLOOP_KQUEUE_BUILD_DIR:-build/kqueue}
jobs=${CMAKE_BUILD_PARALLEL_LEVEL:-2}
configure_args=(-DEVLOOP_BACKEND=kqueue)

if [ "$(uname -s)" = Linux ]; then
  prefix=${EVLOOP_LIBKQUEUE_PREFIX:-/opt/libkqueue}
  export PKG_CONFIG_PATH="$prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  if ! command -v pkg-config >/dev/null || ! pkg-config --exists libkqueue; then
    echo "kqueue suite skipped: libkqueue not found (looked in $prefix and PKG_CONFIG_PATH;" \
         "set EVLOOP_LIBKQUEUE_PREFIX to its install prefix)"
    exit 0
  fi
  configure_args+=("-DEVLOOP_LIBKQUEUE_PREFIX=$(pkg-config --variable=prefix libkqueue)")
  echo "kqueue suite: libkqueue $(pkg-config --modversion libkqueue) from $(pkg-config --variable=prefix libkqueue)"
fi

cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS=-UNDEBUG \
      -DEVLOOP_WERROR=ON "${configure_args[@]}"
cmake --build "$build_dir" -j"$jobs"
ctest --test-dir "$build_dir" -LE demo -j"$jobs" --timeout 120 --output-on-failure --no-tests=error
