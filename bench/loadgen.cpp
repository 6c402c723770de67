// loadgen: the echo load generator of the benchmark suite. One thread, epoll, non-blocking sockets.
//
// Echo mode: N connections each keep `depth` messages of `size` bytes in flight (depth 1 is strict
// ping-pong); after a warm-up it measures for a duration, then stops sending, waits for every
// in-flight message to come back and closes. Every echoed byte is compared with what was sent (see
// pattern.hpp); any mismatch, connection error or missing echo fails the run (exit status 1).
// Latency is per message, from the moment the message is queued for sending to the moment its last
// echoed byte is read. Prints a progress line each second when stderr is a terminal, and exactly
// one JSON line on stdout.
//
// Idle mode (--idle): opens N connections, echoes one message on each (so the server has really
// accepted and served every one), prints "ready N" on stdout, then holds them until SIGINT/SIGTERM
// or until stdin reaches end of file; then prints its JSON line.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "histogram.hpp"
#include "pattern.hpp"

namespace {

struct Config {
  std::string address = "tcp://127.0.0.1:5000";
  std::size_t conns = 50;
  std::size_t size = 64;
  std::size_t depth = 1;
  double duration = 5.0;
  double warmup = 1.0;
  bool idle = false;
  long server_pid = 0;  // when set, the server's CPU time over the measured window is reported
  std::string label;    // copied into the JSON line
  double drain_timeout = 10.0;
  double connect_timeout = 120.0;   // also bounds the idle mode's first echoes
  std::size_t connect_batch = 256;  // connects in progress at once
};

void usage(FILE* out) {
  std::fprintf(out,
               "usage: loadgen [--connect ADDR] [-c CONNS] [-s SIZE] [-d DEPTH] [-t SECONDS]\n"
               "               [-w WARMUP_SECONDS] [--idle] [--server-pid PID] [--label TEXT]\n"
               "  --connect ADDR     server address, tcp://127.0.0.1:PORT (default %s)\n"
               "  -c, --conns N      connections (default 50)\n"
               "  -s, --size BYTES   message size (default 64)\n"
               "  -d, --depth N      messages in flight per connection; 1 = ping-pong (default 1)\n"
               "  -t, --duration S   measured seconds (default 5)\n"
               "  -w, --warmup S     unmeasured seconds before that (default 1)\n"
               "  --idle             open the connections, echo one message on each, print\n"
               "                     'ready N', hold them until SIGINT/SIGTERM or stdin EOF\n"
               "  --server-pid PID   also report that process's CPU time (utime+stime) over the\n"
               "                     measured window, and per message\n"
               "  --label TEXT       copied into the JSON result\n"
               "Exit status: 0 on success, 1 on any error or echo mismatch, 2 on bad usage.\n",
               Config{}.address.c_str());
}

bool parse_args(int argc, char** argv, Config& cfg) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "loadgen: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      usage(stdout);
      std::exit(0);
    } else if (a == "--connect") {
      cfg.address = value();
    } else if (a == "-c" || a == "--conns") {
      cfg.conns = bench::flag_number("loadgen", a, value(), std::size_t{1});
    } else if (a == "-s" || a == "--size") {
      cfg.size = bench::flag_number("loadgen", a, value(), std::size_t{1});
    } else if (a == "-d" || a == "--depth") {
      cfg.depth = bench::flag_number("loadgen", a, value(), std::size_t{1});
    } else if (a == "-t" || a == "--duration") {
      cfg.duration = bench::flag_number("loadgen", a, value(), 0.001);
    } else if (a == "-w" || a == "--warmup") {
      cfg.warmup = bench::flag_number("loadgen", a, value(), 0.0);
    } else if (a == "--idle") {
      cfg.idle = true;
    } else if (a == "--server-pid") {
      cfg.server_pid = bench::flag_number("loadgen", a, value(), 1L);
    } else if (a == "--label") {
      cfg.label = value();
    } else {
      std::fprintf(stderr, "loadgen: unknown argument %s\n", a.c_str());
      return false;
    }
  }
  return true;
}

/// utime + stime of another process, in seconds, from /proc/PID/stat; negative if unreadable.
double process_cpu_seconds(long pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  FILE* f = std::fopen(path, "r");
  if (!f) return -1;
  char buf[1024];
  const std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  const char* p = std::strrchr(buf, ')');  // the command name may hold spaces
  if (!p) return -1;
  unsigned long long utime = 0, stime = 0;
  // After ")": state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime
  // stime
  if (std::sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
                  &stime) != 2)
    return -1;
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

enum class Phase { connecting, warmup, measure, drain, done };

struct Conn {
  int fd = -1;
  std::uint32_t id = 0;
  bool connected = false;
  bool want_out = false;               // EPOLLOUT armed
  std::uint64_t queued = 0;            // stream bytes queued for sending (whole messages)
  std::uint64_t written = 0;           // stream bytes the kernel took
  std::uint64_t received = 0;          // stream bytes echoed back and verified
  std::vector<std::uint64_t> sent_at;  // queue time of message seq, at [seq % depth]
};

class LoadGen {
 public:
  explicit LoadGen(const Config& cfg)
      : cfg_(cfg), pattern_(cfg.size), scratch_(256 * 1024), expect_(256 * 1024) {}

  int run();

 private:
  bool open_connections();
  bool start_connect(Conn& c);
  void on_connected(Conn& c);
  void on_event(Conn& c, std::uint32_t events);
  void queue_messages(Conn& c, std::size_t count);
  void flush(Conn& c);
  void on_readable(Conn& c);
  void fail(Conn& c, const char* what, int err);
  void set_interest(Conn& c, bool out);
  void advance_phase(std::uint64_t now);
  void progress(std::uint64_t now, bool final);
  bool all_drained() const;
  int hold_idle();
  void print_result();

  std::uint64_t in_flight(const Conn& c) const { return (c.queued - c.received) / cfg_.size; }

  const Config& cfg_;
  bench::Pattern pattern_;
  std::vector<unsigned char> scratch_;  // bytes being sent
  std::vector<unsigned char> expect_;   // bytes expected back
  std::vector<unsigned char> inbuf_ = std::vector<unsigned char>(256 * 1024);
  std::vector<Conn> conns_;
  sockaddr_in addr_{};
  int ep_ = -1;
  Phase phase_ = Phase::connecting;
  std::size_t connected_ = 0;
  std::size_t next_connect_ = 0;
  std::size_t connecting_ = 0;
  std::size_t idle_pinged_ = 0;

  // Measurement.
  bench::Histogram hist_;         // measured window
  bench::Histogram second_hist_;  // last progress second
  std::uint64_t measured_msgs_ = 0;
  std::uint64_t total_msgs_ = 0;
  std::uint64_t second_msgs_ = 0;
  std::uint64_t errors_ = 0;
  std::uint64_t verify_errors_ = 0;
  std::string first_error_;
  std::uint64_t t_start_ = 0, t_measure_ = 0, t_end_ = 0, t_drain_deadline_ = 0;
  std::uint64_t next_progress_ = 0;
  double cpu_measure_ = 0, cpu_end_ = 0;
  double server_cpu_measure_ = -1, server_cpu_end_ = -1;
  bool tty_ = false;
  std::size_t idle_drops_ = 0;
};

void LoadGen::fail(Conn& c, const char* what, int err) {
  ++errors_;
  if (first_error_.empty()) {
    first_error_ = std::string(what) + " on connection " + std::to_string(c.id);
    if (err != 0) first_error_ += std::string(": ") + std::strerror(err);
  }
  if (c.fd >= 0) {
    epoll_ctl(ep_, EPOLL_CTL_DEL, c.fd, nullptr);
    close(c.fd);
    c.fd = -1;
  }
  if (!c.connected && connecting_ > 0) --connecting_;
}

void LoadGen::set_interest(Conn& c, bool out) {
  if (c.want_out == out) return;
  c.want_out = out;
  epoll_event ev{};
  ev.events = EPOLLIN | (out ? EPOLLOUT : 0u);
  ev.data.u32 = c.id;
  epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
}

bool LoadGen::start_connect(Conn& c) {
  c.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c.fd < 0) {
    fail(c, "socket", errno);
    return false;
  }
  const int one = 1;
  setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (cfg_.idle) {
    // Close with RST: 10,000 connections per run would otherwise leave 10,000 ports in TIME_WAIT.
    const linger lg{1, 0};
    setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  }
  ++connecting_;
  const int rc = connect(c.fd, reinterpret_cast<const sockaddr*>(&addr_), sizeof addr_);
  if (rc != 0 && errno != EINPROGRESS) {
    fail(c, "connect", errno);
    return false;
  }
  epoll_event ev{};
  ev.events = EPOLLOUT;
  ev.data.u32 = c.id;
  c.want_out = true;
  epoll_ctl(ep_, EPOLL_CTL_ADD, c.fd, &ev);
  return true;
}

void LoadGen::on_connected(Conn& c) {
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) {
    fail(c, "connect", err);
    return;
  }
  c.connected = true;
  --connecting_;
  ++connected_;
  set_interest(c, false);
  if (cfg_.idle) queue_messages(c, 1);  // one echo proves the server accepted it
}

void LoadGen::queue_messages(Conn& c, std::size_t count) {
  const std::uint64_t now = bench::now_ns();
  for (std::size_t i = 0; i < count; ++i) {
    c.sent_at[(c.queued / cfg_.size) % cfg_.depth] = now;
    c.queued += cfg_.size;
  }
  flush(c);
}

void LoadGen::flush(Conn& c) {
  while (c.fd >= 0 && c.written < c.queued) {
    const std::size_t n =
        static_cast<std::size_t>(std::min<std::uint64_t>(c.queued - c.written, scratch_.size()));
    pattern_.fill(c.id, c.written, n, scratch_.data());
    const ssize_t w = send(c.fd, scratch_.data(), n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == EINTR) continue;
      fail(c, "send", errno);
      return;
    }
    c.written += static_cast<std::uint64_t>(w);
    if (static_cast<std::size_t>(w) < n) break;
  }
  if (c.fd >= 0) set_interest(c, c.written < c.queued);
}

void LoadGen::on_readable(Conn& c) {
  const ssize_t r = read(c.fd, inbuf_.data(), inbuf_.size());
  if (r < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
    fail(c, "read", errno);
    return;
  }
  if (r == 0) {
    if (cfg_.idle && phase_ != Phase::connecting) ++idle_drops_;
    fail(c, "unexpected end of stream", 0);
    return;
  }
  const auto n = static_cast<std::size_t>(r);
  if (c.received + n > c.written) {
    ++verify_errors_;
    fail(c, "received more bytes than were sent", 0);
    return;
  }
  pattern_.fill(c.id, c.received, n, expect_.data());
  if (std::memcmp(expect_.data(), inbuf_.data(), n) != 0) {
    ++verify_errors_;
    std::size_t at = 0;
    while (at < n && expect_[at] == inbuf_[at]) ++at;
    fail(c, ("echo mismatch at stream byte " + std::to_string(c.received + at)).c_str(), 0);
    return;
  }
  const std::uint64_t now = bench::now_ns();
  const std::uint64_t before = c.received / cfg_.size;
  c.received += n;
  const std::uint64_t after = c.received / cfg_.size;
  const std::uint64_t done = after - before;
  if (done == 0) return;
  total_msgs_ += done;
  if (phase_ == Phase::measure) {
    for (std::uint64_t seq = before; seq < after; ++seq) {
      const std::uint64_t lat = now - c.sent_at[seq % cfg_.depth];
      hist_.record(lat);
      second_hist_.record(lat);
    }
    measured_msgs_ += done;
  } else if (phase_ == Phase::warmup) {
    for (std::uint64_t seq = before; seq < after; ++seq)
      second_hist_.record(now - c.sent_at[seq % cfg_.depth]);
  }
  second_msgs_ += done;
  if (cfg_.idle) {
    ++idle_pinged_;
    return;
  }
  if (phase_ == Phase::warmup || phase_ == Phase::measure)
    queue_messages(c, static_cast<std::size_t>(done));
}

void LoadGen::on_event(Conn& c, std::uint32_t events) {
  if (c.fd < 0) return;
  if (!c.connected) {
    if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_connected(c);
    return;
  }
  if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(c);
  if (c.fd >= 0 && (events & EPOLLOUT)) flush(c);
}

bool LoadGen::all_drained() const {
  for (const Conn& c : conns_)
    if (c.fd >= 0 && c.received < c.queued) return false;
  return true;
}

void LoadGen::advance_phase(std::uint64_t now) {
  if (phase_ == Phase::connecting && connecting_ == 0 && next_connect_ >= cfg_.conns) {
    if (cfg_.idle) return;  // hold_idle() takes over
    phase_ = Phase::warmup;
    t_start_ = now;
    t_measure_ = now + static_cast<std::uint64_t>(cfg_.warmup * 1e9);
    next_progress_ = now + 1'000'000'000u;
    for (Conn& c : conns_)
      if (c.fd >= 0) queue_messages(c, cfg_.depth);
  }
  if (phase_ == Phase::warmup && now >= t_measure_) {
    phase_ = Phase::measure;
    t_measure_ = now;
    t_end_ = now + static_cast<std::uint64_t>(cfg_.duration * 1e9);
    cpu_measure_ = bench::self_cpu_seconds();
    if (cfg_.server_pid > 0) server_cpu_measure_ = process_cpu_seconds(cfg_.server_pid);
  }
  if (phase_ == Phase::measure && now >= t_end_) {
    t_end_ = now;
    cpu_end_ = bench::self_cpu_seconds();
    if (cfg_.server_pid > 0) server_cpu_end_ = process_cpu_seconds(cfg_.server_pid);
    phase_ = Phase::drain;
    t_drain_deadline_ = now + static_cast<std::uint64_t>(cfg_.drain_timeout * 1e9);
  }
  if (phase_ == Phase::drain) {
    if (all_drained()) {
      phase_ = Phase::done;
    } else if (now >= t_drain_deadline_) {
      ++errors_;
      if (first_error_.empty()) first_error_ = "echoes still missing after the drain timeout";
      phase_ = Phase::done;
    }
  }
}

void LoadGen::progress(std::uint64_t now, bool final) {
  if (!tty_ || phase_ == Phase::connecting) return;
  if (!final && now < next_progress_) return;
  const double t = static_cast<double>(now - t_start_) / 1e9;
  std::fprintf(stderr,
               "\r%6.1fs %-7s %10.0f msg/s %8.1f MB/s  p50 %7.1f us  p99 %8.1f us  errors %" PRIu64
               "  ",
               t, phase_ == Phase::warmup ? "warmup" : "measure", static_cast<double>(second_msgs_),
               static_cast<double>(second_msgs_ * cfg_.size) / 1e6,
               static_cast<double>(second_hist_.quantile(0.5)) / 1e3,
               static_cast<double>(second_hist_.quantile(0.99)) / 1e3, errors_);
  if (final) std::fputc('\n', stderr);
  std::fflush(stderr);
  second_msgs_ = 0;
  second_hist_.clear();
  next_progress_ += 1'000'000'000u;
  if (next_progress_ < now) next_progress_ = now + 1'000'000'000u;
}

bool LoadGen::open_connections() {
  const std::uint64_t deadline =
      bench::now_ns() + static_cast<std::uint64_t>(cfg_.connect_timeout * 1e9);
  std::vector<epoll_event> events(1024);
  while (true) {
    while (connecting_ < cfg_.connect_batch && next_connect_ < cfg_.conns)
      start_connect(conns_[next_connect_++]);
    if (connecting_ == 0 && next_connect_ >= cfg_.conns) break;
    if (errors_ > 0) return false;
    if (bench::now_ns() > deadline) {
      first_error_ = "connect timeout";
      ++errors_;
      return false;
    }
    const int n = epoll_wait(ep_, events.data(), static_cast<int>(events.size()), 100);
    for (int i = 0; i < n; ++i) on_event(conns_[events[i].data.u32], events[i].events);
  }
  return errors_ == 0;
}

int LoadGen::hold_idle() {
  // Wait for the one echo on every connection.
  std::vector<epoll_event> events(1024);
  const std::uint64_t deadline =
      bench::now_ns() + static_cast<std::uint64_t>(cfg_.connect_timeout * 1e9);
  while (idle_pinged_ < cfg_.conns && errors_ == 0) {
    if (bench::now_ns() > deadline) {
      first_error_ = "idle: echoes missing after the connect timeout";
      ++errors_;
      break;
    }
    const int n = epoll_wait(ep_, events.data(), static_cast<int>(events.size()), 100);
    for (int i = 0; i < n; ++i) on_event(conns_[events[i].data.u32], events[i].events);
  }
  if (errors_ > 0) return 1;
  phase_ = Phase::measure;
  std::printf("ready %zu\n", cfg_.conns);
  std::fflush(stdout);

  // Hold until a signal or stdin EOF; count connections the server drops meanwhile.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  const int sfd = signalfd(-1, &set, SFD_CLOEXEC);
  constexpr std::uint32_t kSignal = 0xFFFFFFFFu, kStdin = 0xFFFFFFFEu;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u32 = kSignal;
  epoll_ctl(ep_, EPOLL_CTL_ADD, sfd, &ev);
  ev.data.u32 = kStdin;
  const bool watch_stdin = epoll_ctl(ep_, EPOLL_CTL_ADD, STDIN_FILENO, &ev) == 0;  // not for files
  (void)watch_stdin;
  bool stop = false;
  while (!stop) {
    const int n = epoll_wait(ep_, events.data(), static_cast<int>(events.size()), -1);
    for (int i = 0; i < n; ++i) {
      const std::uint32_t id = events[i].data.u32;
      if (id == kSignal) {
        stop = true;
      } else if (id == kStdin) {
        char buf[256];
        const ssize_t r = read(STDIN_FILENO, buf, sizeof buf);
        if (r <= 0 && !(r < 0 && errno == EINTR)) stop = true;
      } else {
        on_event(conns_[id], events[i].events);
      }
    }
  }
  close(sfd);
  return errors_ == 0 ? 0 : 1;
}

void LoadGen::print_result() {
  const double window = t_end_ > t_measure_ ? static_cast<double>(t_end_ - t_measure_) / 1e9 : 0.0;
  const double msgs = static_cast<double>(measured_msgs_);
  const double rate = window > 0 ? msgs / window : 0.0;
  const double cpu = cpu_end_ - cpu_measure_;
  const double server_cpu =
      server_cpu_measure_ >= 0 && server_cpu_end_ >= 0 ? server_cpu_end_ - server_cpu_measure_ : -1;
  std::string err;
  for (char ch : first_error_) err += (ch == '"' || ch == '\\') ? '\'' : ch;
  const bool ok = errors_ == 0 && verify_errors_ == 0;
  auto us = [](std::uint64_t ns) { return static_cast<double>(ns) / 1e3; };
  if (cfg_.idle) {
    std::printf(
        "{\"loadgen\":{\"label\":\"%s\",\"mode\":\"idle\",\"conns\":%zu,\"size\":%zu,"
        "\"drops\":%zu,\"errors\":%" PRIu64 ",\"ok\":%s,\"error\":\"%s\"}}\n",
        cfg_.label.c_str(), cfg_.conns, cfg_.size, idle_drops_, errors_, ok ? "true" : "false",
        err.c_str());
  } else {
    std::printf(
        "{\"loadgen\":{\"label\":\"%s\",\"mode\":\"echo\",\"conns\":%zu,\"size\":%zu,\"depth\":%zu,"
        "\"warmup_s\":%.3f,\"duration_s\":%.4f,\"messages\":%" PRIu64 ",\"total_messages\":%" PRIu64
        ",\"msgs_per_s\":%.1f,\"mb_per_s\":%.3f,\"latency_us\":{\"p50\":%.2f,\"p90\":%.2f,"
        "\"p99\":%.2f,\"p999\":%.2f,\"max\":%.2f,\"mean\":%.2f},\"errors\":%" PRIu64
        ",\"verify_errors\":%" PRIu64
        ",\"cpu_s\":%.4f,\"cpu_pct\":%.1f,\"cpu_us_per_msg\":%.4f,"
        "\"server_cpu_s\":%.4f,\"server_cpu_us_per_msg\":%.4f,\"ok\":%s,\"error\":\"%s\"}}\n",
        cfg_.label.c_str(), cfg_.conns, cfg_.size, cfg_.depth, cfg_.warmup, window, measured_msgs_,
        total_msgs_, rate, rate * static_cast<double>(cfg_.size) / 1e6, us(hist_.quantile(0.5)),
        us(hist_.quantile(0.9)), us(hist_.quantile(0.99)), us(hist_.quantile(0.999)),
        us(hist_.max()), hist_.mean() / 1e3, errors_, verify_errors_, cpu,
        window > 0 ? 100.0 * cpu / window : 0.0, msgs > 0 ? cpu * 1e6 / msgs : 0.0, server_cpu,
        msgs > 0 && server_cpu >= 0 ? server_cpu * 1e6 / msgs : -1.0, ok ? "true" : "false",
        err.c_str());
  }
  std::fflush(stdout);
}

int LoadGen::run() {
  const auto addr = bench::parse_tcp4(cfg_.address);
  if (!addr) {
    std::fprintf(stderr, "loadgen: bad address %s (want tcp://A.B.C.D:PORT)\n",
                 cfg_.address.c_str());
    return 2;
  }
  addr_ = *addr;
  tty_ = isatty(STDERR_FILENO) && !cfg_.idle;
  ep_ = epoll_create1(EPOLL_CLOEXEC);
  conns_.resize(cfg_.conns);
  for (std::size_t i = 0; i < cfg_.conns; ++i) {
    conns_[i].id = static_cast<std::uint32_t>(i);
    conns_[i].sent_at.assign(cfg_.depth, 0);
  }
  int status = 0;
  if (!open_connections()) {
    status = 1;
  } else if (cfg_.idle) {
    status = hold_idle();
  } else {
    std::vector<epoll_event> events(1024);
    advance_phase(bench::now_ns());
    while (phase_ != Phase::done) {
      const int n = epoll_wait(ep_, events.data(), static_cast<int>(events.size()), 50);
      for (int i = 0; i < n; ++i) on_event(conns_[events[i].data.u32], events[i].events);
      const std::uint64_t now = bench::now_ns();
      progress(now, false);
      advance_phase(now);
    }
    progress(bench::now_ns(), true);
    status = errors_ == 0 && verify_errors_ == 0 ? 0 : 1;
  }
  if (status != 0 && !first_error_.empty())
    std::fprintf(stderr, "loadgen: %s\n", first_error_.c_str());
  if (phase_ != Phase::done && !cfg_.idle) t_end_ = t_measure_;
  print_result();
  for (Conn& c : conns_)
    if (c.fd >= 0) close(c.fd);
  close(ep_);
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  if (!parse_args(argc, argv, cfg)) {
    usage(stderr);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  LoadGen gen(cfg);
  return gen.run();
}
