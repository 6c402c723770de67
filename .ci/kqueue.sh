#!/usr/bin/env bash
# Builds evloop with the kqueue backend and runs its whole test suite (all tests but the demo).
# On Linux the kqueue API comes from libkqueue, built here from the source snapshot in
# ../shared/tools/ into the build tree (build/libkqueue-src, installed to build/libkqueue-prefix;
# never system-wide, never committed) and reused by later runs. A missing snapshot is an error:
# the kqueue suite never skips. On the BSDs and macOS kqueue is native.
# Environment: EVLOOP_LIBKQUEUE_TARBALL (default ../shared/tools/libkqueue-f966089.tar.gz),
#              EVLOOP_KQUEUE_BUILD_DIR (default build/kqueue), CMAKE_BUILD_PARALLEL_LEVEL
#              (default 2), CXX (compiler).
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir=${EVLOOP_KQUEUE_BUILD_DIR:-build/kqueue}
jobs=${CMAKE_BUILD_PARALLEL_LEVEL:-2}
configure_args=(-DEVLOOP_BACKEND=kqueue)

# Builds libkqueue from `tarball` into build/ once; prints the install prefix.
build_libkqueue() {
  local tarball=$1 src=$PWD/build/libkqueue-src prefix=$PWD/build/libkqueue-prefix
  local stamp=$prefix/.built-from
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(basename "$tarball")" ] &&
     [ -f "$prefix/lib/pkgconfig/libkqueue.pc" ]; then
    echo "$prefix"
    return
  fi
  echo "kqueue suite: building libkqueue from $tarball into $prefix" >&2
  rm -rf "$src" "$prefix"
  mkdir -p "$src"
  tar -xzf "$tarball" -C "$src" --strip-components=1
  # libkqueue's own build is not evloop's: its warnings are not ours to fix, so no -Werror, and
  # its output goes to a log shown only on failure. The library directory is pinned to lib/ (the
  # pkg-config file under lib/pkgconfig). Its version comes from `git describe` in its source
  # folder: the ceiling keeps git from finding evloop's repository around it.
  local log=$src/build.log
  if ! { GIT_CEILING_DIRECTORIES=$PWD/build cmake -S "$src" -B "$src/build" -G Ninja \
           -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$prefix" -DCMAKE_INSTALL_LIBDIR=lib &&
         cmake --build "$src/build" -j"$jobs" && cmake --install "$src/build"; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "kqueue suite: building libkqueue failed" >&2
    exit 1
  fi
  basename "$tarball" >"$stamp"
  echo "$prefix"
}

if [ "$(uname -s)" = Linux ]; then
  tarball=${EVLOOP_LIBKQUEUE_TARBALL:-../shared/tools/libkqueue-f966089.tar.gz}
  if [ ! -f "$tarball" ]; then
    echo "kqueue suite: libkqueue source snapshot not found at $tarball (CI clones the repository" \
         "with shared/ beside it; set EVLOOP_LIBKQUEUE_TARBALL to its path)" >&2
    exit 1
  fi
  prefix=$(build_libkqueue "$(realpath "$tarball")")
  configure_args+=("-DEVLOOP_LIBKQUEUE_PREFIX=$prefix")
  echo "kqueue suite: libkqueue $(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --modversion libkqueue) from $prefix"
fi

cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS=-UNDEBUG \
      -DEVLOOP_WERROR=ON "${configure_args[@]}"
cmake --build "$build_dir" -j"$jobs"
ctest --test-dir "$build_dir" -LE demo -j"$jobs" --timeout 120 --output-on-failure --no-tests=error
