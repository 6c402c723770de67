#!/usr/bin/env bash
# Peer benchmark: evloop's example servers against the servers people know.
#   http:  wrk -t1 -c50 against examples/http-server (1 loop) and nginx (1 worker, return 200)
#   redis: redis-benchmark -c 50, -t ping_inline,ping_mbulk,set,get, -P 1 and -P 16, against
#          examples/redis-server (1 loop) and the real redis-server
#   files: wrk -t1 -c50 GET of a 4 KiB and a 1 MiB file against examples/http-server --root
#          (1 loop, bodies with send_file) and nginx (1 worker, sendfile on)
#   proxy: bench/loadgen's echo load through examples/tcp-proxy (1 loop), HAProxy (nbthread 1,
#          mode tcp) and bench/baseline_proxy (the hand-written epoll floor) to an echo upstream
#          (bench/baseline_epoll); 50x64 B depth 1 and 16, 4x64 KiB depth 4
# Each peer runs only when installed. Server (or proxy) on CPU 0, client (and the proxy's
# upstream) on CPU 1 (taskset); rounds are
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
  --proxy-duration S  measured seconds per proxy run, after 1 s of warm-up (default 5)
  --only http|redis|files|proxy
                      run one part only (default: all four)
  --http-server BIN   the example binaries (default: BUILD_DIR/examples/...; built there in
  --redis-server BIN  Release if missing, BUILD_DIR defaults to build/peers)
  --tcp-proxy BIN
  --nice N            nice value of every server, proxy and client (e.g. -10 on a machine busy
                      with other work; negative needs root; default 0)
  --bench-dir DIR     where loadgen, baseline_epoll and baseline_proxy are (default BUILD_DIR/bench)
  --build-dir DIR
  --out FILE          also write the Markdown report here (default BUILD_DIR/peers-results.md)
  --help
USAGE
}

rounds=3 duration=5 req_p1=200000 req_p16=2000000 only="" http_bin="" redis_bin=""
proxy_duration=5 proxy_bin="" bench_dir="" build_dir="" out="" nice=0
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --requests-p1) req_p1=$2; shift 2 ;;
    --requests-p16) req_p16=$2; shift 2 ;;
    --proxy-duration) proxy_duration=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --http-server) http_bin=$2; shift 2 ;;
    --redis-server) redis_bin=$2; shift 2 ;;
    --tcp-proxy) proxy_bin=$2; shift 2 ;;
    --bench-dir) bench_dir=$2; shift 2 ;;
    --nice) nice=$2; shift 2 ;;
    --build-dir) build_dir=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --help|-h) usage; exit 0 ;;
    *) echo "run.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
for n in "$rounds" "$duration" "$req_p1" "$req_p16" "$proxy_duration"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: '$n' is not a positive number" >&2; exit 2; }
done
[[ "$nice" =~ ^-?[0-9]+$ ]] || { echo "run.sh: --nice takes a number" >&2; exit 2; }
case "$only" in ""|http|redis|files|proxy) ;; *) echo "run.sh: --only takes http, redis, files or proxy" >&2; exit 2 ;; esac

root=$(cd "$(dirname "$0")/../.." && pwd)
build_dir=${build_dir:-$root/build/peers}
out=${out:-$build_dir/peers-results.md}
http_bin=${http_bin:-$build_dir/examples/http-server/http-server}
redis_bin=${redis_bin:-$build_dir/examples/redis-server/redis-server}
proxy_bin=${proxy_bin:-$build_dir/examples/tcp-proxy/tcp-proxy}
bench_dir=${bench_dir:-$build_dir/bench}
if [ ! -x "$http_bin" ] || [ ! -x "$redis_bin" ] || [ ! -x "$proxy_bin" ] ||
   [ ! -x "$bench_dir/loadgen" ] || [ ! -x "$bench_dir/baseline_proxy" ]; then
  echo "run.sh: building the examples and the load generator (Release) in $build_dir" >&2
  cmake -S "$root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DEVLOOP_BUILD_TESTS=OFF \
        >/dev/null
  cmake --build "$build_dir" -j2 --target http-server redis-server tcp-proxy loadgen \
        baseline_epoll baseline_proxy >/dev/null
fi

command -v taskset >/dev/null || { echo "run.sh: taskset (util-linux) is needed" >&2; exit 1; }
# Replaces the calling (sub)shell with a program pinned to CPU $1 at the chosen nice value:
# use it in the background (`pin 0 cmd &`, then $! is the program's pid) or in a subshell.
pin() { local cpu=$1; shift; exec taskset -c "$cpu" nice -n "$nice" "$@"; }
have() { command -v "$1" >/dev/null 2>&1; }
nginx_bin=$(command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true)
haproxy_bin=$(command -v haproxy || { [ -x /usr/sbin/haproxy ] && echo /usr/sbin/haproxy; } || true)
real_redis=$(command -v redis-server || true)

tmp=$(mktemp -d)
server_pid="" upstream_pid=""
cleanup() {
  for pid in "$server_pid" "$upstream_pid"; do
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
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

# Starts a program that prints "listening on ...:PORT" pinned to CPU $1, its output in file $2;
# sets launched_pid and launched_port.
launch() {
  local cpu=$1 log=$2
  shift 2
  : >"$log"
  pin "$cpu" "$@" >"$log" 2>&1 &
  launched_pid=$!
  for _ in $(seq 200); do
    grep -q "^listening on" "$log" && break
    sleep 0.05
  done
  launched_port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$log" | head -n 1)
  [ -n "$launched_port" ] || { cat "$log" >&2; echo "run.sh: $1 did not start" >&2; exit 1; }
}

# Starts an example binary (with any further flags) on CPU 0 with a kernel-chosen port; sets
# server_pid and port.
start_example() {
  local bin=$1
  shift
  launch 0 "$tmp/server.out" "$bin" --listen tcp://127.0.0.1:0 --loops 1 "$@"
  server_pid=$launched_pid port=$launched_port
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
  pin 0 "$nginx_bin" -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" -e "$tmp/nginx/error.log" &
  server_pid=$!
  for _ in $(seq 200); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null && return 0
    sleep 0.05
  done
  cat "$tmp/nginx/error.log" >&2; echo "run.sh: nginx did not start" >&2; exit 1
}

start_real_redis() {
  port=$(free_port)
  pin 0 "$real_redis" --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize no --loglevel warning --dir "$tmp" >"$tmp/redis.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 200); do
    [ "$(redis-cli -h 127.0.0.1 -p "$port" PING 2>/dev/null)" = PONG ] && return 0
    sleep 0.05
  done
  cat "$tmp/redis.log" >&2; echo "run.sh: redis-server did not start" >&2; exit 1
}

# The proxy half: an echo upstream (the libc-only epoll echo server) on CPU 1, beside the load
# generator, so that the proxy has CPU 0 to itself.
start_upstream() {
  launch 1 "$tmp/upstream.out" "$bench_dir/baseline_epoll" --listen tcp://127.0.0.1:0
  upstream_pid=$launched_pid upstream_port=$launched_port
}

stop_upstream() {
  kill -TERM "$upstream_pid"
  wait "$upstream_pid" 2>/dev/null || true
  upstream_pid=""
}

# Starts proxy $1 (evloop, floor or haproxy) on CPU 0 in front of the upstream; sets server_pid
# and port.
start_proxy() {
  local to="tcp://127.0.0.1:$upstream_port"
  case "$1" in
    evloop) launch 0 "$tmp/proxy.out" "$proxy_bin" --listen tcp://127.0.0.1:0 --upstream "$to" \
              --loops 1 --stats ;;
    floor) launch 0 "$tmp/proxy.out" "$bench_dir/baseline_proxy" --listen tcp://127.0.0.1:0 \
             --upstream "$to" --stats ;;
    haproxy) start_haproxy; return ;;
  esac
  server_pid=$launched_pid port=$launched_port
}

start_haproxy() {
  port=$(free_port)
  # One thread, plain TCP forwarding, no logging; maxconn well within the fd limit.
  cat >"$tmp/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 4000
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
listen proxy
  bind 127.0.0.1:$port
  server upstream 127.0.0.1:$upstream_port
CONF
  pin 0 "$haproxy_bin" -f "$tmp/haproxy.cfg" -db >"$tmp/proxy.out" 2>&1 &
  server_pid=$!
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.05
  done
  cat "$tmp/proxy.out" >&2; echo "run.sh: haproxy did not start" >&2; exit 1
}

# A field of a flat JSON line: json_field LINE KEY.
json_field() { sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" <<<"$1" | head -n 1; }

# One load-generator run through proxy $1 in scenario $2 (conns $3, size $4, depth $5): records
# msgs/s and the proxy's CPU µs per message over the measured window; sets messages (warm-up
# included, like the proxies' own counters).
run_proxy_load() {
  local name=$1 sc=$2 line
  line=$(pin 1 "$bench_dir/loadgen" --connect "tcp://127.0.0.1:$port" -c "$3" -s "$4" \
           -d "$5" -t "$proxy_duration" -w 1 --server-pid "$server_pid" 2>/dev/null |
         grep '^{"loadgen"' || true)
  messages=""
  if [ "$(json_field "$line" ok)" != true ]; then
    echo "$line" >&2
    notes+=("loadgen through $name ($sc) failed: $(json_field "$line" error)")
    return
  fi
  messages=$(json_field "$line" total_messages)
  record "proxy.$sc.$name.rps" "$(json_field "$line" msgs_per_s)"
  record "proxy.$sc.$name.cpu" "$(json_field "$line" server_cpu_us_per_msg)"
}

# After the proxy stopped: payload bytes it copied in user space per message, from its own
# counters: evloop's bytes_copied (written bytes copied into output chunks: small writes, and
# what the kernel refused of a large one), the floor's parked_bytes (what the kernel refused).
record_copies() {
  local name=$1 sc=$2 stats key
  stats=$(grep '^{"stats"' "$tmp/proxy.out" || true)
  [ -n "$stats" ] && [ -n "$messages" ] || return 0
  key=$([ "$name" = evloop ] && echo bytes_copied || echo parked_bytes)
  record "proxy.$sc.$name.copied" "$(awk -v b="$(json_field "$stats" "$key")" -v m="$messages" \
                                       'BEGIN { printf "%.3f", b / m }')"
  if [ "$name" = evloop ]; then
    record "proxy.$sc.$name.arms" "$(awk -v a="$(json_field "$stats" write_arms)" -v m="$messages" \
                                       'BEGIN { printf "%.4f", a / m }')"
    record "proxy.$sc.$name.pauses" "$(json_field "$stats" read_pauses)"
  fi
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
range() {  # min–max of the values recorded under key $1, printed with format $2 (default %.0f)
  awk -v k="$1" '$1 == k { print $2 }' "$tmp/results" | sort -g |
    awk -v f="${2:-%.0f}" 'NR == 1 { lo = $1 } { hi = $1 } END { if (NR) printf f "–" f, lo, hi }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "–"; else printf "%.2f×", a / b }'; }
fmt0() { awk -v a="$1" 'BEGIN { if (a == "") print "–"; else printf "%.0f", a }'; }
fmt2() { awk -v a="$1" 'BEGIN { if (a == "") print "–"; else printf "%.2f", a }'; }

# One wrk run against $port (path $2, default /); records req/s and server CPU µs per request
# under $1.
run_wrk() {
  local name=$1 path=${2:-/} before after
  before=$(cpu_ticks "$server_pid")
  (pin 1 wrk -t1 -c50 -d"${duration}s" "http://127.0.0.1:$port$path") >"$tmp/wrk.out" 2>&1
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
  (pin 1 redis-benchmark -h 127.0.0.1 -p "$port" -c 50 -n "$requests" -P "$depth" \
    -t "$test" --csv) >"$tmp/rb.out" 2>&1
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

proxies=(evloop floor)
proxy_scenarios=("d1 50 64 1" "d16 50 64 16" "64k 4 65536 4")
if [ -z "$only" ] || [ "$only" = proxy ]; then
  if [ -n "$haproxy_bin" ]; then proxies+=(haproxy);
  else notes+=("haproxy not installed: the proxy measured against the floor only"); fi
else proxies=(); fi

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
  n=${#proxies[@]}
  for sc in "${proxy_scenarios[@]+"${proxy_scenarios[@]}"}"; do
    [ "$n" -gt 0 ] || break
    read -r key conns size depth <<<"$sc"
    for ((i = 0; i < n; i++)); do
      s=${proxies[$(((i + r) % n))]}
      echo "round $((r + 1))/$rounds: proxy $key $s" >&2
      start_upstream
      start_proxy "$s"
      run_proxy_load "$s" "$key" "$conns" "$size" "$depth"
      stop_server
      record_copies "$s" "$key"
      stop_upstream
    done
  done
done

{
  echo "# Peer benchmark results"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')),"
  echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg). $rounds interleaved rounds; server on CPU 0, client on CPU 1$([ "$nice" != 0 ] && echo ", all at nice $nice")."
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
             "$(fmt2 "$(median "$k.$s.cpu")") ($(range "$k.$s.cpu" %.2f)) |" \
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
  if [ ${#proxies[@]} -gt 0 ]; then
    echo
    echo "## Proxy: loadgen (CPU 1) → proxy (CPU 0) → echo upstream (baseline_epoll, CPU 1)"
    echo
    echo "Every echoed byte is checked by the load generator. ${proxy_duration} s measured after 1 s of warm-up."
    echo
    echo "| scenario | proxy | msgs/s | × HAProxy | × floor | proxy CPU µs/msg | CPU × floor | payload B copied/msg |"
    echo "|---|---|---|---|---|---|---|---|"
    for sc in "${proxy_scenarios[@]}"; do
      read -r key conns size depth <<<"$sc"
      label_sc="${conns}x$([ "$size" -ge 1024 ] && echo "$((size / 1024))KiB" || echo "${size}B") d$depth"
      for s in "${proxies[@]}"; do
        case "$s" in
          evloop) label="examples/tcp-proxy, 1 loop" ;;
          floor) label="bench/baseline_proxy (floor)" ;;
          haproxy) label="HAProxy $("$haproxy_bin" -v 2>/dev/null | awk 'NR == 1 { print $3 }'), nbthread 1" ;;
        esac
        m=$(median "proxy.$key.$s.rps"); c=$(median "proxy.$key.$s.cpu")
        copied=$(median "proxy.$key.$s.copied")
        echo "| $label_sc | $label | $(fmt0 "$m") ($(range "proxy.$key.$s.rps")) |" \
             "$(ratio "$m" "$(median "proxy.$key.haproxy.rps")") | $(ratio "$m" "$(median "proxy.$key.floor.rps")") |" \
             "$(fmt2 "$c") ($(range "proxy.$key.$s.cpu" %.2f)) | $(ratio "$c" "$(median "proxy.$key.floor.cpu")") |" \
             "$([ -n "$copied" ] && fmt0 "$copied" || echo "–") |"
      done
    done
    echo
    echo "Payload B copied/msg: bytes the proxy copied in user space per echoed message, both"
    echo "directions, from its own counters over its whole run (warm-up included): evloop's"
    echo "bytes_copied (the proxy sets write_through 1: every write goes to the kernel from the read"
    echo "buffer and only what it refused is copied), the floor's parked_bytes (what"
    echo "the kernel refused). HAProxy's is not measured."
    arms=$(median "proxy.d1.evloop.arms")
    [ -n "$arms" ] && echo "evloop write-interest arms per message (a send the kernel cut short): d1 $arms," \
      "d16 $(median proxy.d16.evloop.arms), 64k $(median proxy.64k.evloop.arms); evloop's own read pauses:" \
      "$(awk '$1 ~ /^proxy\..*\.evloop\.pauses$/ { s += $2 } END { print s + 0 }' "$tmp/results") (must be 0)."
    echo
    echo "### Against the targets"
    echo
    target() {  # description, value, threshold, direction (ge|le)
      awk -v d="$1" -v v="$2" -v t="$3" -v dir="$4" 'BEGIN {
        if (v == "") { printf "- %s: not measured\n", d; exit }
        ok = (dir == "ge") ? v >= t : v <= t
        printf "- %s: %.2f× (target %s %.2f×): %s\n", d, v, dir == "ge" ? "≥" : "≤", t, ok ? "met" : "**missed**" }'
    }
    q() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b != "" && b > 0) printf "%.4f", a / b }'; }
    target "msgs/s vs HAProxy, 50x64B d1" "$(q "$(median proxy.d1.evloop.rps)" "$(median proxy.d1.haproxy.rps)")" 1.2 ge
    target "msgs/s vs HAProxy, 4x64KiB d4" "$(q "$(median proxy.64k.evloop.rps)" "$(median proxy.64k.haproxy.rps)")" 2 ge
    for k in d1 d16 64k; do
      target "msgs/s vs the floor, $k" "$(q "$(median "proxy.$k.evloop.rps")" "$(median "proxy.$k.floor.rps")")" 0.95 ge
      target "CPU/msg vs the floor, $k" "$(q "$(median "proxy.$k.evloop.cpu")" "$(median "proxy.$k.floor.cpu")")" 1.1 le
    done
  fi
  echo
  echo "CPU µs/req: the server's utime+stime (/proc/PID/stat, clock tick 1/${clk_tck} s) over the"
  echo "client run, divided by the requests of that run (wrk: requests completed, including its ramp)."
  for note in "${notes[@]+"${notes[@]}"}"; do echo "- note: $note"; done
} | tee "$out"
echo "(written to $out)" >&2
