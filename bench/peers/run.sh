#!/usr/bin/env bash
# Peer benchmark: evloop's example servers against the servers people know.
#   http:  wrk -t1 -c50 against examples/http-server (1 loop) and nginx (1 worker, return 200)
#   redis: redis-benchmark -c 50, -t ping_inline,ping_mbulk,set,get, -P 1 and -P 16, against
#          examples/redis-server (1 loop) and the real redis-server
#   files: wrk -t1 -c50 GET of a 4 KiB and a 1 MiB file against examples/http-server --root
#          (1 loop, bodies with send_file) and nginx (1 worker, sendfile on)
# Each peer runs only when installed. Server on CPU 0, client on CPU 1 (taskset); rounds are
# interleaved (the server order rotates); every cell is the median over rounds (min-max); ratios
# divide the example's median by the peer's median from the same invocation. Server CPU per
# request comes from /proc/PID/stat (utime+stime, all threads) around each client run.
# Only loopback (127.0.0.1) is used. See bench/peers/README.md.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bench/peers/run.sh [options]
  --rounds N          interleaved rounds (default 3)
  --duration S        seconds per wrk run (default 5)
  --requests-p1 N     redis-benchmark requests per test at -P 1 (default 200000)
  --requests-p16 N    redis-benchmark requests per test at -P 16 (default 2000000)
  --only http|redis|files
                      run one part only (default: all three)
  --http-server BIN   the example binaries (default: BUILD_DIR/examples/...; built there in
  --redis-server BIN  Release if missing, BUILD_DIR defaults to build/peers)
  --build-dir DIR
  --out FILE          also write the Markdown report here (default BUILD_DIR/peers-results.md)
  --help
USAGE
}

rounds=3 duration=5 req_p1=200000 req_p16=2000000 only="" http_bin="" redis_bin=""
build_dir="" out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --requests-p1) req_p1=$2; shift 2 ;;
    --requests-p16) req_p16=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --http-server) http_bin=$2; shift 2 ;;
    --redis-server) redis_bin=$2; shift 2 ;;
    --build-dir) build_dir=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --help|-h) usage; exit 0 ;;
    *) echo "run.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
for n in "$rounds" "$duration" "$req_p1" "$req_p16"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: '$n' is not a positive number" >&2; exit 2; }
done
case "$only" in ""|http|redis|files) ;; *) echo "run.sh: --only takes http, redis or files" >&2; exit 2 ;; esac

root=$(cd "$(dirname "$0")/../.." && pwd)
build_dir=${build_dir:-$root/build/peers}
out=${out:-$build_dir/peers-results.md}
http_bin=${http_bin:-$build_dir/examples/http-server/http-server}
redis_bin=${redis_bin:-$build_dir/examples/redis-server/redis-server}
if [ ! -x "$http_bin" ] || [ ! -x "$redis_bin" ]; then
  echo "run.sh: building the examples (Release) in $build_dir" >&2
  cmake -S "$root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DEVLOOP_BUILD_TESTS=OFF \
        -DEVLOOP_BUILD_BENCH=OFF >/dev/null
  cmake --build "$build_dir" -j2 --target http-server redis-server >/dev/null
fi

command -v taskset >/dev/null || { echo "run.sh: taskset (util-linux) is needed" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }
nginx_bin=$(command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true)
real_redis=$(command -v redis-server || true)

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

clk_tck=$(getconf CLK_TCK)
notes=()

# utime+stime of a process (all its threads), in clock ticks; a server that died is reported.
cpu_ticks() {
  [ -r "/proc/$1/stat" ] || {
    cat "$tmp/server.out" >&2 2>/dev/null
    echo "run.sh: the server (pid $1) is gone" >&2
    exit 1
  }
  awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# A free loopback port, from the kernel (bind port 0, read it back, close).
free_port() {
  if have python3; then
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
  else  # the example server binds port 0 and prints what it got
    "$http_bin" --listen tcp://127.0.0.1:0 >"$tmp/port.out" 2>/dev/null &
    local pid=$!
    for _ in $(seq 200); do grep -q "listening on" "$tmp/port.out" && break; sleep 0.05; done
    kill -TERM $pid; wait $pid 2>/dev/null || true
    sed -n 's/.*:\([0-9]*\)$/\1/p' "$tmp/port.out" | head -n 1
  fi
}

# Starts an example binary (with any further flags) on CPU 0 with a kernel-chosen port; sets
# server_pid and port.
start_example() {
  local bin=$1
  shift
  : >"$tmp/server.out"
  taskset -c 0 "$bin" --listen tcp://127.0.0.1:0 --loops 1 "$@" >"$tmp/server.out" 2>&1 &
  server_pid=$!
  for _ in $(seq 200); do
    grep -q "^listening on" "$tmp/server.out" && break
    sleep 0.05
  done
  port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$tmp/server.out" | head -n 1)
  [ -n "$port" ] || { cat "$tmp/server.out" >&2; echo "run.sh: $bin did not start" >&2; exit 1; }
}

# Starts nginx on CPU 0 with the given server-level directives (default: GET / answers 200
# "Hello, World!").
start_nginx() {
  local site=${1:-'location / { default_type text/plain; return 200 "Hello, World!"; }'}
  port=$(free_port)
  mkdir -p "$tmp/nginx"
  # master_process off: one process that is the single worker, so its CPU is easy to read.
  # keepalive_requests raised so that nginx does not close wrk's connections every 1000
  # requests (the example never does).
  cat >"$tmp/nginx/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 100000000;
  client_body_temp_path $tmp/nginx/body;
  proxy_temp_path $tmp/nginx/proxy;
  fastcgi_temp_path $tmp/nginx/fastcgi;
  uwsgi_temp_path $tmp/nginx/uwsgi;
  scgi_temp_path $tmp/nginx/scgi;
  server {
    listen 127.0.0.1:$port;
    $site
  }
}
CONF
  taskset -c 0 "$nginx_bin" -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" -e "$tmp/nginx/error.log" &
  server_pid=$!
  for _ in $(seq 200); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null && return 0
    sleep 0.05
  done
  cat "$tmp/nginx/error.log" >&2; echo "run.sh: nginx did not start" >&2; exit 1
}

start_real_redis() {
  port=$(free_port)
  taskset -c 0 "$real_redis" --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize no --loglevel warning --dir "$tmp" >"$tmp/redis.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 200); do
    [ "$(redis-cli -h 127.0.0.1 -p "$port" PING 2>/dev/null)" = PONG ] && return 0
    sleep 0.05
  done
  cat "$tmp/redis.log" >&2; echo "run.sh: redis-server did not start" >&2; exit 1
}

stop_server() {
  kill -TERM "$server_pid"
  local rc=0
  wait "$server_pid" || rc=$?
  # nginx exits 0 on TERM only as master; here it may report a signal status: not an error.
  server_pid=""
}

# Records "<key> <value>" lines into $tmp/results; medians are taken at the end.
record() { echo "$1 $2" >>"$tmp/results"; }

median() {  # median of the values recorded under key $1
  awk -v k="$1" '$1 == k { print $2 }' "$tmp/results" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) { print "" } else if (NR % 2) { print v[(NR + 1) / 2] }
                              else { print (v[NR / 2] + v[NR / 2 + 1]) / 2 } }'
}
range() {
  awk -v k="$1" '$1 == k { print $2 }' "$tmp/results" | sort -g |
    awk 'NR == 1 { lo = $1 } { hi = $1 } END { if (NR) printf "%.0f–%.0f", lo, hi }'
}
range2() {
  awk -v k="$1" '$1 == k { print $2 }' "$tmp/results" | sort -g |
    awk 'NR == 1 { lo = $1 } { hi = $1 } END { if (NR) printf "%.2f–%.2f", lo, hi }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "–"; else printf "%.2f×", a / b }'; }
fmt0() { awk -v a="$1" 'BEGIN { if (a == "") print "–"; else printf "%.0f", a }'; }
fmt2() { awk -v a="$1" 'BEGIN { if (a == "") print "–"; else printf "%.2f", a }'; }

# One wrk run against $port (path $2, default /); records req/s and server CPU µs per request
# under $1.
run_wrk() {
  local name=$1 path=${2:-/} before after
  before=$(cpu_ticks "$server_pid")
  taskset -c 1 wrk -t1 -c50 -d"${duration}s" "http://127.0.0.1:$port$path" >"$tmp/wrk.out" 2>&1
  after=$(cpu_ticks "$server_pid")
  local rps reqs
  rps=$(awk '/^Requests\/sec:/ { print $2 }' "$tmp/wrk.out")
  reqs=$(awk '/requests in/ { print $1 }' "$tmp/wrk.out")
  if [ -z "$rps" ] || grep -q "Non-2xx\|Socket errors" "$tmp/wrk.out"; then
    cat "$tmp/wrk.out" >&2
    notes+=("wrk against $name reported errors in a run (see above)")
  fi
  record "$name.rps" "$rps"
  record "$name.cpu" "$(awk -v d=$((after - before)) -v t="$clk_tck" -v n="$reqs" \
                               'BEGIN { printf "%.3f", d / t * 1e6 / n }')"
}

# One redis-benchmark run (one test, one pipeline depth); records rps and CPU µs/request.
run_redis_benchmark() {
  local name=$1 test=$2 depth=$3 requests=$4 before after rps
  before=$(cpu_ticks "$server_pid")
  taskset -c 1 redis-benchmark -h 127.0.0.1 -p "$port" -c 50 -n "$requests" -P "$depth" \
    -t "$test" --csv >"$tmp/rb.out" 2>&1
  after=$(cpu_ticks "$server_pid")
  rps=$(awk -F'","' 'NR > 1 { print $2; exit }' "$tmp/rb.out")
  if [ -z "$rps" ] || grep -qi "error\|warn" "$tmp/rb.out"; then
    cat "$tmp/rb.out" >&2
    notes+=("redis-benchmark against $name: unexpected output for $test -P $depth")
  fi
  record "redis.$test.P$depth.$name.rps" "$rps"
  record "redis.$test.P$depth.$name.cpu" "$(awk -v d=$((after - before)) -v t="$clk_tck" \
      -v n="$requests" 'BEGIN { printf "%.3f", d / t * 1e6 / n }')"
}

: >"$tmp/results"
redis_tests=(ping_inline ping_mbulk set get)

http_servers=(evloop)
if [ -z "$only" ] || [ "$only" = http ]; then
  if ! have wrk; then notes+=("wrk not installed: http half skipped"); http_servers=();
  elif [ -n "$nginx_bin" ] && have curl; then http_servers+=(nginx);
  else notes+=("nginx (or curl) not installed: http-server measured alone"); fi
else http_servers=(); fi

redis_servers=(evloop)
if [ -z "$only" ] || [ "$only" = redis ]; then
  if ! have redis-benchmark; then notes+=("redis-benchmark not installed: redis half skipped"); redis_servers=();
  elif [ -n "$real_redis" ] && have redis-cli; then redis_servers+=(redis);
  else notes+=("redis-server not installed: the example measured alone"); fi
else redis_servers=(); fi

file_servers=(evloop)
file_sizes=(4k 1m)
if [ -z "$only" ] || [ "$only" = files ]; then
  if ! have wrk; then notes+=("wrk not installed: files part skipped"); file_servers=();
  elif [ -n "$nginx_bin" ] && have curl; then file_servers+=(nginx);
  else notes+=("nginx (or curl) not installed: http-server --root measured alone"); fi
else file_servers=(); fi
if [ ${#file_servers[@]} -gt 0 ]; then
  mkdir -p "$tmp/www"
  head -c 4096 /dev/urandom >"$tmp/www/4k.bin"
  head -c 1048576 /dev/urandom >"$tmp/www/1m.bin"
fi
# nginx serving $tmp/www as the example does: sendfile, no access log (set for all of http{}).
nginx_files_site="sendfile on; location / { root $tmp/www; }"

# Both servers must send the file itself: checked once per server start, before measuring.
check_file() {
  curl -s "http://127.0.0.1:$port/$1.bin" | cmp -s - "$tmp/www/$1.bin" ||
    { echo "run.sh: $2 did not serve $1.bin byte-exact" >&2; exit 1; }
}

for ((r = 0; r < rounds; r++)); do
  # Rotate the order every round so that neither server always runs first.
  n=${#http_servers[@]}
  for ((i = 0; i < n; i++)); do
    s=${http_servers[$(((i + r) % n))]}
    echo "round $((r + 1))/$rounds: http $s" >&2
    if [ "$s" = evloop ]; then start_example "$http_bin"; else start_nginx; fi
    run_wrk "http.$s"
    stop_server
  done
  n=${#redis_servers[@]}
  for ((i = 0; i < n; i++)); do
    s=${redis_servers[$(((i + r) % n))]}
    echo "round $((r + 1))/$rounds: redis $s" >&2
    if [ "$s" = evloop ]; then start_example "$redis_bin"; else start_real_redis; fi
    for t in "${redis_tests[@]}"; do
      run_redis_benchmark "$s" "$t" 1 "$req_p1"
      run_redis_benchmark "$s" "$t" 16 "$req_p16"
    done
    stop_server
  done
  n=${#file_servers[@]}
  for ((i = 0; i < n; i++)); do
    s=${file_servers[$(((i + r) % n))]}
    echo "round $((r + 1))/$rounds: files $s" >&2
    if [ "$s" = evloop ]; then start_example "$http_bin" --root "$tmp/www";
    else start_nginx "$nginx_files_site"; fi
    for size in "${file_sizes[@]}"; do
      check_file "$size" "$s"
      run_wrk "files.$size.$s" "/$size.bin"
    done
    stop_server
  done
done

{
  echo "# Peer benchmark results"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')),"
  echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg). $rounds interleaved rounds; server on CPU 0, client on CPU 1."
  echo "Cells: median (min–max) over rounds. Ratios: example median / peer median, same invocation."
  if [ ${#http_servers[@]} -gt 0 ]; then
    echo
    echo "## HTTP: wrk -t1 -c50 -d${duration}s, GET / → 200 \"Hello, World!\""
    echo
    echo "| server | req/s | × nginx | server CPU µs/req |"
    echo "|---|---|---|---|"
    for s in "${http_servers[@]}"; do
      label=$([ "$s" = evloop ] && echo "examples/http-server, 1 loop" || echo "nginx $("$nginx_bin" -v 2>&1 | sed 's|.*/||'), 1 worker")
      echo "| $label | $(fmt0 "$(median "http.$s.rps")") ($(range "http.$s.rps")) |" \
           "$(ratio "$(median "http.$s.rps")" "$(median http.nginx.rps)") |" \
           "$(fmt2 "$(median "http.$s.cpu")") |"
    done
  fi
  if [ ${#file_servers[@]} -gt 0 ]; then
    echo
    echo "## Static files: wrk -t1 -c50 -d${duration}s, GET of one file (random bytes)"
    echo
    echo "| file | server | req/s | × nginx | server CPU µs/req | CPU × nginx |"
    echo "|---|---|---|---|---|---|"
    for size in "${file_sizes[@]}"; do
      for s in "${file_servers[@]}"; do
        label=$([ "$s" = evloop ] && echo "examples/http-server --root, 1 loop" || echo "nginx $("$nginx_bin" -v 2>&1 | sed 's|.*/||'), 1 worker, sendfile on")
        k=files.$size
        echo "| $size | $label | $(fmt0 "$(median "$k.$s.rps")") ($(range "$k.$s.rps")) |" \
             "$(ratio "$(median "$k.$s.rps")" "$(median "$k.nginx.rps")") |" \
             "$(fmt2 "$(median "$k.$s.cpu")") ($(range2 "$k.$s.cpu")) |" \
             "$(ratio "$(median "$k.$s.cpu")" "$(median "$k.nginx.cpu")") |"
      done
    done
  fi
  if [ ${#redis_servers[@]} -gt 0 ]; then
    echo
    echo "## Redis: redis-benchmark -c 50 (requests per test: $req_p1 at -P 1, $req_p16 at -P 16)"
    echo
    echo "| test | -P | example req/s | redis req/s | × redis | example CPU µs/req | redis CPU µs/req | CPU × redis |"
    echo "|---|---|---|---|---|---|---|---|"
    for t in "${redis_tests[@]}"; do
      for p in 1 16; do
        e=$(median "redis.$t.P$p.evloop.rps"); q=$(median "redis.$t.P$p.redis.rps")
        ec=$(median "redis.$t.P$p.evloop.cpu"); qc=$(median "redis.$t.P$p.redis.cpu")
        echo "| $t | $p | $(fmt0 "$e") ($(range "redis.$t.P$p.evloop.rps")) |" \
             "$(fmt0 "$q") ($(range "redis.$t.P$p.redis.rps")) | $(ratio "$e" "$q") |" \
             "$(fmt2 "$ec") | $(fmt2 "$qc") | $(ratio "$ec" "$qc") |"
      done
    done
    [ -n "$real_redis" ] && echo && echo "Real server: $("$real_redis" --version | cut -d' ' -f1-3)."
  fi
  echo
  echo "CPU µs/req: the server's utime+stime (/proc/PID/stat, clock tick 1/${clk_tck} s) over the"
  echo "client run, divided by the requests of that run (wrk: requests completed, including its ramp)."
  for note in "${notes[@]+"${notes[@]}"}"; do echo "- note: $note"; done
} | tee "$out"
echo "(written to $out)" >&2
