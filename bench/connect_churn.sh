#!/usr/bin/env bash
# The accept path's cost: connect_churn against echo-server on epoll and on io_uring (multishot
# accept) and the hand-written epoll floor (baseline_epoll), rounds interleaved; the server on CPU
# 0, the load on CPU 1. Prints each round, then medians (min-max) of connections/s and server CPU
# per connection, and the ratios to the floor.
#   bench/connect_churn.sh [--build-dir DIR] [--rounds N] [--duration S] [--conns N]
set -euo pipefail

build=build/release rounds=5 duration=3 conns=50
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir) build=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --conns) conns=$2; shift 2 ;;
    -h|--help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "connect_churn.sh: unknown flag '$1'" >&2; exit 2 ;;
  esac
done
churn=$build/bench/connect_churn
echo_server=$build/examples/echo-server/echo-server
floor=$build/bench/baseline_epoll
for bin in "$churn" "$echo_server" "$floor"; do
  [[ -x $bin ]] || { echo "connect_churn.sh: $bin missing: build $build first" >&2; exit 1; }
done

out=$(mktemp -d)
pid=
trap 'rm -rf "$out"; [[ -n $pid ]] && kill "$pid" 2>/dev/null; true' EXIT

servers=(floor epoll io_uring)
for ((r = 1; r <= rounds; r++)); do
  for s in "${servers[@]}"; do
    # The server on CPU 0, started here so that this shell can stop it and wait for it.
    log=$out/server.log
    case "$s" in
      floor) taskset -c 0 "$floor" --listen tcp://127.0.0.1:0 >"$log" 2>&1 & ;;
      *) taskset -c 0 "$echo_server" --listen tcp://127.0.0.1:0 --backend "$s" >"$log" 2>&1 & ;;
    esac
    pid=$!
    for _ in $(seq 100); do
      grep -qE 'tcp4?://127.0.0.1:[0-9]+' "$log" && break
      sleep 0.05
    done
    addr=$(grep -oE 'tcp4?://127.0.0.1:[0-9]+' "$log" | head -1) ||
      { echo "connect_churn.sh: $s did not start:" >&2; cat "$log" >&2; exit 1; }
    line=$(taskset -c 1 "$churn" --connect "$addr" -c "$conns" -t "$duration" -w 1 --server-pid "$pid")
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    pid=
    echo "round $r $s: $line"
    rate=$(sed -E 's/.*connections\/s ([0-9.]+).*/\1/' <<<"$line")
    cpu=$(sed -E 's/.*CPU\/connection ([0-9.]+) us.*/\1/' <<<"$line")
    echo "$rate $cpu" >>"$out/$s"
  done
done

median() { sort -n | awk '{v[NR]=$1} END {m=(NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2; printf "%g (%g-%g)", m, v[1], v[NR]}'; }
med() { sort -n | awk '{v[NR]=$1} END {print (NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2}'; }
floor_rate=$(cut -d' ' -f1 "$out/floor" | med)
floor_cpu=$(cut -d' ' -f2 "$out/floor" | med)
printf '\n%-9s %-28s %-28s %s\n' server "connections/s" "server CPU us/connection" "x floor (conn/s, CPU)"
for s in "${servers[@]}"; do
  rate=$(cut -d' ' -f1 "$out/$s" | med) cpu=$(cut -d' ' -f2 "$out/$s" | med)
  printf '%-9s %-28s %-28s %.2fx, %.2fx\n' "$s" "$(cut -d' ' -f1 "$out/$s" | median)" \
    "$(cut -d' ' -f2 "$out/$s" | median)" "$(bc -l <<<"$rate / $floor_rate")" \
    "$(bc -l <<<"$cpu / $floor_cpu")"
done
