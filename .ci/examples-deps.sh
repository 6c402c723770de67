#!/usr/bin/env bash
# Installs the clients the example tests drive: curl, redis-cli and redis-benchmark (package
# redis-tools) and wrk. Quiet and idempotent: does nothing when all are there. Without apt-get
# (or without root) it says what is missing and exits 0; those tests then skip themselves.
set -euo pipefail

declare -A package_of=([curl]=curl [redis-cli]=redis-tools [redis-benchmark]=redis-tools [wrk]=wrk
                       [systemd-socket-activate]=systemd)
missing=()
for program in curl redis-cli redis-benchmark wrk systemd-socket-activate; do
  command -v "$program" >/dev/null 2>&1 || missing+=("${package_of[$program]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
mapfile -t packages < <(printf '%s\n' "${missing[@]}" | sort -u)

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
  else
    echo "examples-deps: not root; missing ${packages[*]} (their tests will be skipped)"
    exit 0
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "examples-deps: no apt-get; missing ${packages[*]} (their tests will be skipped)"
  exit 0
fi

echo "examples-deps: installing ${packages[*]}"
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { "${sudo[@]}" apt-get update -qq && \
       "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}"; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "examples-deps: apt-get failed" >&2
  exit 1
fi
