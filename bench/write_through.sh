#!/usr/bin/env bash
# The write-through threshold swept (ConnOptions::write_through, issue 13): which default should
# a write have to reach to go to the kernel at once, uncopied?
#   echo:  examples/echo-server, one write per read (what a proxy or an echo does)
#   split: bench/split_echo, two writes per message: a 16-byte header, then the body (what a
#          protocol with framing does; the case gathering small writes into one send is for)
# Each at write_through 1 (every write goes at once), 32768 (the default) and never, against
# bench/loadgen at each message size. One loop on epoll (io_uring copies every write), server
# on CPU 0, loadgen on CPU 1 (taskset); rounds interleaved (the threshold order rotates); every
# cell the median over rounds (min-max). Server CPU per message is loadgen's --server-pid figure
# (utime+stime over the measured window); sends and bytes copied per message come from the
# server's --stats counters over its whole run, divided by every message loadgen completed.
# Loopback only, port 0. See bench/README.md ("Write-through threshold").
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bench/write_through.sh [options]
  --rounds N        interleaved rounds (default 3)
  --duration S      measured seconds per run, after 1 s of warm-up (default 3)
  --conns N         connections (default 16)
  --depth N         messages in flight per connection (default 4)
  --sizes LIST      message sizes in bytes (default 64,1024,4096,16384,65536)
  --handlers LIST   echo, split or both (default echo,split)
  --thresholds LIST write_through values: bytes or never (default 1,32768,never); never is
                    added when missing: the base of the "CPU × never" column
  --build-dir DIR   where echo-server, split_echo and loadgen are built (default build/release)
  --out FILE        also write the Markdown table here (default BUILD_DIR/write-through.md)
  --help
USAGE
}

rounds=3 duration=3 conns=16 depth=4 sizes=64,1024,4096,16384,65536 handlers=echo,split
threshold_list=1,32768,never
build_dir="" out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --conns) conns=$2; shift 2 ;;
    --depth) depth=$2; shift 2 ;;
    --sizes) sizes=$2; shift 2 ;;
    --handlers) handlers=$2; shift 2 ;;
    --thresholds) threshold_list=$2; shift 2 ;;
    --build-dir) build_dir=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --help|-h) usage; exit 0 ;;
    *) echo "write_through.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
for n in "$rounds" "$duration" "$conns" "$depth" ${sizes//,/ }; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "write_through.sh: '$n' is not a positive number" >&2; exit 2; }
done
for h in ${handlers//,/ }; do
  case "$h" in echo|split) ;; *) echo "write_through.sh: --handlers takes echo and split" >&2; exit 2 ;; esac
done
thresholds=()
for t in ${threshold_list//,/ }; do
  [[ "$t" =~ ^[1-9][0-9]*$ || "$t" == never ]] ||
    { echo "write_through.sh: --thresholds takes bytes or never, not '$t'" >&2; exit 2; }
  thresholds+=("$t")
done
[[ " ${thresholds[*]} " == *" never "* ]] || thresholds+=(never)

root=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${build_dir:-$root/build/release}
out=${out:-$build_dir/write-through.md}
echo_bin=$build_dir/examples/echo-server/echo-server
split_bin=$build_dir/bench/split_echo
loadgen=$build_dir/bench/loadgen
for b in "$echo_bin" "$split_bin" "$loadgen"; do
  [ -x "$b" ] || { echo "write_through.sh: $b not built (cmake --preset release && cmake --build build/release)" >&2; exit 1; }
done
command -v taskset >/dev/null || { echo "write_through.sh: taskset (util-linux) is needed" >&2; exit 1; }

tmp=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

json_field() { sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" <<<"$1" | head -n 1; }
record() { echo "$1 $2" >>"$tmp/results"; }

# Starts handler $1 at message size $2, write_through $3, pinned to CPU 0; its stdout is read
# through file descriptor server_out (the "listening on" line now, the stats line at the end),
# so each wait is a bounded read, not a poll. Sets server_pid and port.
start_server() {
  local cmd=("$echo_bin")
  [ "$1" = split ] && cmd=("$split_bin" --message-size "$2" --header 16)
  exec {server_out}< <(exec taskset -c 0 "${cmd[@]}" --listen tcp://127.0.0.1:0 --loops 1 \
                         --backend epoll --write-through "$3" --stats 2>>"$tmp/server.err")
  server_pid=$!
  local line=""
  read -r -t 10 -u "$server_out" line || true
  port=${line##*:}
  [[ "$line" == "listening on "* && "$port" =~ ^[0-9]+$ ]] ||
    { cat "$tmp/server.err" >&2; echo "write_through.sh: ${cmd[0]} did not start" >&2; exit 1; }
}

# Stops the server and returns its {"stats":...} line in `stats` (bounded read).
stop_server() {
  kill -TERM "$server_pid"
  stats=""
  local line
  while read -r -t 10 -u "$server_out" line; do
    [[ "$line" == '{"stats":'* ]] && stats=$line
  done
  exec {server_out}<&-
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}

# One run: handler $1, size $2, threshold $3; records msgs/s, server CPU µs/msg, sends/msg and
# bytes copied/msg under "$1.$2.$3".
run_one() {
  local key="$1.$2.$3" line total
  start_server "$1" "$2" "$3"
  line=$(taskset -c 1 "$loadgen" --connect "tcp://127.0.0.1:$port" -c "$conns" -s "$2" \
           -d "$depth" -t "$duration" -w 1 --server-pid "$server_pid" 2>/dev/null |
         grep '^{"loadgen"' || true)
  stop_server
  if [ "$(json_field "$line" ok)" != true ]; then
    echo "$line" >&2
    echo "write_through.sh: loadgen failed against $key: $(json_field "$line" error)" >&2
    exit 1
  fi
  total=$(json_field "$line" total_messages)
  record "$key.rps" "$(json_field "$line" msgs_per_s)"
  record "$key.cpu" "$(json_field "$line" server_cpu_us_per_msg)"
  record "$key.sends" "$(awk -v w="$(json_field "$stats" writes)" -v m="$total" 'BEGIN { printf "%.3f", w / m }')"
  record "$key.copied" "$(awk -v b="$(json_field "$stats" bytes_copied)" -v m="$total" 'BEGIN { printf "%.1f", b / m }')"
}

median() {
  awk -v k="$1" '$1 == k { print $2 }' "$tmp/results" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2];
                              else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
range() {  # min–max of key $1, format $2
  awk -v k="$1" '$1 == k { print $2 }' "$tmp/results" | sort -g |
    awk -v f="$2" 'NR == 1 { lo = $1 } { hi = $1 } END { if (NR) printf f "–" f, lo, hi }'
}
fmt() { awk -v a="$1" -v f="$2" 'BEGIN { if (a == "") print "–"; else printf f, a }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "–"; else printf "%.2f×", a / b }'; }
size_label() { if [ "$1" -ge 1024 ] && [ $(($1 % 1024)) -eq 0 ]; then echo "$(($1 / 1024)) KiB"; else echo "$1 B"; fi; }

: >"$tmp/results"
load_before=$(cut -d' ' -f1-3 /proc/loadavg) started=$(date -u '+%Y-%m-%d %H:%M UTC')
for ((r = 0; r < rounds; r++)); do
  for h in ${handlers//,/ }; do
    for s in ${sizes//,/ }; do
      for ((i = 0; i < ${#thresholds[@]}; i++)); do  # the order rotates every round
        t=${thresholds[$(((i + r) % ${#thresholds[@]}))]}
        echo "round $((r + 1))/$rounds: $h ${s} B write_through $t" >&2
        run_one "$h" "$s" "$t"
      done
    done
  done
done

{
  echo "# Write-through threshold sweep"
  echo
  echo "$started, commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')," \
       "$(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), load average before: $load_before."
  echo "$rounds interleaved rounds of ${duration} s (after 1 s of warm-up); $conns connections × depth $depth;"
  echo "server (1 loop, epoll) on CPU 0, loadgen on CPU 1. Cells: median (min–max) over rounds."
  echo "CPU × never: the row's median server CPU per message over that of never (every write copied and"
  echo "gathered), same handler and size."
  echo
  echo "| handler | message | write_through | msgs/s | server CPU µs/msg | CPU × never | sends/msg | B copied/msg |"
  echo "|---|---|---|---|---|---|---|---|"
  for h in ${handlers//,/ }; do
    for s in ${sizes//,/ }; do
      base=$(median "$h.$s.never.cpu")
      for t in "${thresholds[@]}"; do
        k=$h.$s.$t
        echo "| $h | $(size_label "$s") | $t | $(fmt "$(median "$k.rps")" %.0f) ($(range "$k.rps" %.0f)) |" \
             "$(fmt "$(median "$k.cpu")" %.2f) ($(range "$k.cpu" %.2f)) | $(ratio "$(median "$k.cpu")" "$base") |" \
             "$(fmt "$(median "$k.sends")" %.2f) | $(fmt "$(median "$k.copied")" %.0f) |"
      done
    done
  done
} | tee "$out"
echo "(written to $out)" >&2
