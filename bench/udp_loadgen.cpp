// udp_loadgen: the UDP load generator of the benchmark suite. One thread, epoll, one connected
// non-blocking UDP socket per flow (so the server sees one 4-tuple per flow, and reuse-port keeps
// a flow on one socket).
//
// Each flow keeps `window` datagrams in flight (window 1 is strict ping-pong): every slot of the
// window holds one datagram, and an echo that comes back frees its slot for the next one. Every
// echo is verified: its size, its flow and slot, its sequence number (the slot's current one) and
// every byte of its body. A datagram not echoed within --loss-timeout is counted lost and its slot
// sends a new one, so a loss costs one timeout of one slot, never the run. After a warm-up it
// measures for a duration, then stops sending and waits for what is in flight (or its timeout).
//
// A datagram: [seq u64][flow u32][slot u32] little-endian, then the body: bytes
// [seq * body, (seq + 1) * body) of the flow's pattern stream (pattern.hpp). A corrupted, cut,
// cross-flow or unknown datagram fails the run (exit 1); a late one (after its timeout, or a
// duplicate) is counted. Prints exactly one JSON line on stdout.
//
// --gso sends the datagrams a flow has ready as one segmented send (UDP_SEGMENT, Linux), --gro
// receives with UDP_GRO and splits what the kernel coalesced: the load of a QUIC-like stream.
#include <netinet/in.h>
#include <netinet/udp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
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

constexpr std::size_t kHeader = 16;
constexpr unsigned kBatch = 64;        // datagrams per recvmmsg / sendmmsg
constexpr std::size_t kSlot = 65536;   // receive room per datagram (a GRO one is up to 64 KiB)
constexpr unsigned kMaxSegments = 64;  // UDP_MAX_SEGMENTS
constexpr std::size_t kMaxSegmented = 65507;  // payload of one segmented send

struct Config {
  std::string address = "udp://127.0.0.1:5555";
  std::size_t flows = 50;
  std::size_t size = 64;
  std::size_t window = 1;
  double duration = 5.0;
  double warmup = 1.0;
  double loss_timeout_ms = 200;
  long server_pid = 0;
  std::string label;
  bool gso = false;
  bool gro = false;
  int socket_buffer = 0;
};

void usage(FILE* out) {
  std::fprintf(
      out,
      "usage: udp_loadgen [--connect ADDR] [-f FLOWS] [-s SIZE] [-w WINDOW] [-t SECONDS]\n"
      "                   [--warmup S] [--loss-timeout MS] [--gso] [--gro] [--buffer BYTES]\n"
      "                   [--server-pid PID] [--label TEXT]\n"
      "  --connect ADDR      server, udp://127.0.0.1:PORT (default %s)\n"
      "  -f, --flows N       flows, each its own connected socket (default 50)\n"
      "  -s, --size BYTES    datagram size, 16..65507 (default 64)\n"
      "  -w, --window N      datagrams in flight per flow; 1 = ping-pong (default 1)\n"
      "  -t, --duration S    measured seconds (default 5)\n"
      "  --warmup S          unmeasured seconds before that (default 1)\n"
      "  --loss-timeout MS   a datagram not echoed within this is lost (default 200)\n"
      "  --gso, --gro        send the datagrams a flow has ready as one segmented send;\n"
      "                      receive with UDP_GRO (Linux)\n"
      "  --buffer BYTES      SO_SNDBUF and SO_RCVBUF of each flow's socket (default: kernel's)\n"
      "  --server-pid PID    report that process's CPU time over the measured window\n"
      "  --label TEXT        copied into the JSON result\n"
      "Exit status: 0 on success, 1 on a corrupt echo, a socket error or no echo at all, 2 on\n"
      "bad usage. Losses are counted, not failures.\n",
      Config{}.address.c_str());
}

bool parse_args(int argc, char** argv, Config& cfg) {
  bench::ArgReader args("udp_loadgen", argc, argv);
  while (args.next()) {
    const std::string& a = args.flag();
    if (a == "--help" || a == "-h") {
      usage(stdout);
      std::exit(0);
    } else if (a == "--connect") {
      cfg.address = args.value();
    } else if (a == "-f" || a == "--flows") {
      cfg.flows = bench::flag_number("udp_loadgen", a, args.value(), std::size_t{1});
    } else if (a == "-s" || a == "--size") {
      cfg.size = bench::flag_number("udp_loadgen", a, args.value(), kHeader, kMaxSegmented);
    } else if (a == "-w" || a == "--window") {
      cfg.window = bench::flag_number("udp_loadgen", a, args.value(), std::size_t{1});
    } else if (a == "-t" || a == "--duration") {
      cfg.duration = bench::flag_number("udp_loadgen", a, args.value(), 0.001);
    } else if (a == "--warmup") {
      cfg.warmup = bench::flag_number("udp_loadgen", a, args.value(), 0.0);
    } else if (a == "--loss-timeout") {
      cfg.loss_timeout_ms = bench::flag_number("udp_loadgen", a, args.value(), 1.0);
    } else if (a == "--gso") {
      cfg.gso = true;
    } else if (a == "--gro") {
      cfg.gro = true;
    } else if (a == "--buffer") {
      cfg.socket_buffer = bench::flag_number("udp_loadgen", a, args.value(), 0, 1 << 30);
    } else if (a == "--server-pid") {
      cfg.server_pid = bench::flag_number("udp_loadgen", a, args.value(), 1L);
    } else if (a == "--label") {
      cfg.label = args.value();
    } else {
      return args.unknown();
    }
  }
  return true;  // flag_number checked every value
}

std::uint64_t swap_if_big(std::uint64_t v) {
  return std::endian::native == std::endian::big ? __builtin_bswap64(v) : v;
}
std::uint32_t swap_if_big(std::uint32_t v) {
  return std::endian::native == std::endian::big ? __builtin_bswap32(v) : v;
}

template <typename T>
T load_le(const unsigned char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return swap_if_big(v);
}

template <typename T>
void store_le(unsigned char* p, T v) {
  v = swap_if_big(v);
  std::memcpy(p, &v, sizeof v);
}

enum class Phase { warmup, measure, drain, done };

struct Slot {
  std::uint64_t seq = 0;
  std::uint64_t sent_at = 0;
  bool busy = false;
};

struct Flow {
  int fd = -1;
  std::uint32_t id = 0;
  std::vector<Slot> slots;
  std::vector<std::uint32_t> idle;  // slots with nothing in flight
  std::uint64_t next_seq = 0;
};

class UdpLoadGen {
 public:
  explicit UdpLoadGen(const Config& cfg)
      : cfg_(cfg),
        body_(cfg.size - kHeader),
        pattern_(body_ > 0 ? body_ : 1),
        out_(kMaxSegments * std::max<std::size_t>(cfg.size, 1)),
        in_(std::size_t{kBatch} * kSlot),
        expect_(cfg.size) {}
  int run();

 private:
  bool open_flows(const sockaddr_in& server);
  void fill(Flow& f, std::uint64_t now);
  int send_datagrams(Flow& f, const std::uint32_t* slots, std::size_t count, std::uint64_t now);
  void on_readable(Flow& f);
  void check(Flow& f, const unsigned char* p, std::size_t n, std::uint64_t now);
  void expire(std::uint64_t now);
  void advance_phase(std::uint64_t now);
  bool in_flight() const;
  void fail(const std::string& what);
  void print_result() const;

  const Config& cfg_;
  const std::size_t body_;
  const bench::Pattern pattern_;
  std::vector<unsigned char> out_;     // datagrams being sent, back to back
  std::vector<unsigned char> in_;      // received datagrams, kSlot apart
  std::vector<unsigned char> expect_;  // the body an echo must have
  std::vector<Flow> flows_;
  int ep_ = -1;
  Phase phase_ = Phase::warmup;
  std::uint64_t t_measure_ = 0, t_end_ = 0, t_drain_deadline_ = 0, next_expire_ = 0;
  bench::MeasuredWindow window_;

  bench::Histogram hist_;
  std::uint64_t measured_ = 0, total_ = 0, sent_ = 0, lost_ = 0, measured_lost_ = 0, late_ = 0;
  std::uint64_t errors_ = 0, gro_receives_ = 0, gso_sends_ = 0;
  std::string first_error_;
};

void UdpLoadGen::fail(const std::string& what) {
  if (errors_++ == 0) first_error_ = what;
}

bool UdpLoadGen::open_flows(const sockaddr_in& server) {
  flows_.resize(cfg_.flows);
  for (std::size_t i = 0; i < cfg_.flows; ++i) {
    Flow& f = flows_[i];
    f.id = static_cast<std::uint32_t>(i);
    f.slots.resize(cfg_.window);
    for (std::size_t s = cfg_.window; s-- > 0;) f.idle.push_back(static_cast<std::uint32_t>(s));
    f.fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (f.fd < 0) return fail(std::string("socket: ") + std::strerror(errno)), false;
    if (cfg_.socket_buffer > 0) {
      setsockopt(f.fd, SOL_SOCKET, SO_SNDBUF, &cfg_.socket_buffer, sizeof cfg_.socket_buffer);
      setsockopt(f.fd, SOL_SOCKET, SO_RCVBUF, &cfg_.socket_buffer, sizeof cfg_.socket_buffer);
    }
    const int one = 1;
    if (cfg_.gro && setsockopt(f.fd, IPPROTO_UDP, UDP_GRO, &one, sizeof one) != 0) {
      return fail(std::string("UDP_GRO: ") + std::strerror(errno)), false;
    }
    if (connect(f.fd, reinterpret_cast<const sockaddr*>(&server), sizeof server) != 0) {
      return fail(std::string("connect: ") + std::strerror(errno)), false;
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = f.id;
    epoll_ctl(ep_, EPOLL_CTL_ADD, f.fd, &ev);
  }
  return true;
}

void UdpLoadGen::fill(Flow& f, std::uint64_t now) {
  if (phase_ == Phase::drain || phase_ == Phase::done || f.idle.empty()) return;
  // Up to 64 at a time (one segmented send, or one sendmmsg), from the end of the idle list.
  while (!f.idle.empty()) {
    std::size_t count = std::min<std::size_t>(f.idle.size(), kMaxSegments);
    if (cfg_.gso) count = std::min(count, kMaxSegmented / cfg_.size);
    const auto first = f.idle.end() - static_cast<std::ptrdiff_t>(count);
    const int sent = send_datagrams(f, &*first, count, now);
    if (sent <= 0) return;  // full (the slots stay idle for later), or an error
    f.idle.erase(first, first + sent);
    if (static_cast<std::size_t>(sent) < count) return;
  }
}

// Sends datagrams for `slots`: how many went (0 when the socket is full), or -1 on an error.
int UdpLoadGen::send_datagrams(Flow& f, const std::uint32_t* slots, std::size_t count,
                               std::uint64_t now) {
  for (std::size_t i = 0; i < count; ++i) {
    unsigned char* p = out_.data() + i * cfg_.size;
    const std::uint64_t seq = f.next_seq + i;
    store_le<std::uint64_t>(p, seq);
    store_le<std::uint32_t>(p + 8, f.id);
    store_le<std::uint32_t>(p + 12, slots[i]);
    if (body_ > 0) pattern_.fill(f.id, seq * body_, body_, p + kHeader);
  }
  int sent = 0;
  if (cfg_.gso && count > 1) {
    iovec iov{out_.data(), count * cfg_.size};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(std::uint16_t))] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = IPPROTO_UDP;
    c->cmsg_type = UDP_SEGMENT;
    c->cmsg_len = CMSG_LEN(sizeof(std::uint16_t));
    const auto segment = static_cast<std::uint16_t>(cfg_.size);
    std::memcpy(CMSG_DATA(c), &segment, sizeof segment);
    sent = sendmsg(f.fd, &msg, 0) < 0 ? -1 : static_cast<int>(count);
    if (sent > 0) ++gso_sends_;
  } else {
    iovec iov[kMaxSegments];
    mmsghdr msgs[kMaxSegments] = {};
    for (std::size_t i = 0; i < count; ++i) {
      iov[i] = {out_.data() + i * cfg_.size, cfg_.size};
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    sent = sendmmsg(f.fd, msgs, static_cast<unsigned>(count), 0);
  }
  if (sent < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return 0;
    fail(std::string("send: ") + std::strerror(errno));
    return -1;
  }
  // A partial sendmmsg: the rest go with a later fill (their slots stay idle).
  for (int i = 0; i < sent; ++i) f.slots[slots[i]] = {f.next_seq++, now, true};
  sent_ += static_cast<std::uint64_t>(sent);
  return sent;
}

void UdpLoadGen::on_readable(Flow& f) {
  iovec iov[kBatch];
  mmsghdr msgs[kBatch] = {};
  alignas(cmsghdr) char control[kBatch][CMSG_SPACE(sizeof(int))];
  for (unsigned i = 0; i < kBatch; ++i) {
    iov[i] = {in_.data() + std::size_t{i} * kSlot, kSlot};
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
    if (cfg_.gro) {
      msgs[i].msg_hdr.msg_control = control[i];
      msgs[i].msg_hdr.msg_controllen = sizeof control[i];
    }
  }
  const int n = recvmmsg(f.fd, msgs, kBatch, 0, nullptr);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
    fail(std::string("receive: ") + std::strerror(errno));  // ECONNREFUSED: the server is gone
    return;
  }
  const std::uint64_t now = bench::now_ns();
  for (int i = 0; i < n; ++i) {
    const unsigned char* p = static_cast<const unsigned char*>(iov[i].iov_base);
    const std::size_t len = msgs[i].msg_len;
    std::size_t segment = 0;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msgs[i].msg_hdr); cfg_.gro && c != nullptr;
         c = CMSG_NXTHDR(&msgs[i].msg_hdr, c)) {
      if (c->cmsg_level == IPPROTO_UDP && c->cmsg_type == UDP_GRO) {
        int size = 0;
        std::memcpy(&size, CMSG_DATA(c), sizeof size);
        segment = static_cast<std::size_t>(size);
      }
    }
    if (segment == 0 || segment >= len) {
      check(f, p, len, now);
      continue;
    }
    ++gro_receives_;
    for (std::size_t at = 0; at < len; at += segment)
      check(f, p + at, std::min(segment, len - at), now);
  }
  fill(f, now);
}

void UdpLoadGen::check(Flow& f, const unsigned char* p, std::size_t n, std::uint64_t now) {
  if (n != cfg_.size)
    return fail("an echo of " + std::to_string(n) + " bytes on flow " + std::to_string(f.id));
  const auto seq = load_le<std::uint64_t>(p);
  const auto flow = load_le<std::uint32_t>(p + 8);
  const auto slot = load_le<std::uint32_t>(p + 12);
  if (flow != f.id || slot >= cfg_.window || seq >= f.next_seq) {
    return fail("an echo that was never sent on flow " + std::to_string(f.id));
  }
  if (body_ > 0) {
    pattern_.fill(f.id, seq * body_, body_, expect_.data());
    if (std::memcmp(expect_.data(), p + kHeader, body_) != 0) {
      return fail("a corrupt echo: flow " + std::to_string(f.id) + " datagram " +
                  std::to_string(seq));
    }
  }
  Slot& s = f.slots[slot];
  if (!s.busy || s.seq != seq) {
    ++late_;  // after its timeout (already counted lost), or a duplicate
    return;
  }
  s.busy = false;
  f.idle.push_back(slot);
  ++total_;
  if (phase_ == Phase::measure) {
    ++measured_;
    hist_.record(now - s.sent_at);
  }
}

void UdpLoadGen::expire(std::uint64_t now) {
  if (now < next_expire_) return;
  next_expire_ = now + 5'000'000;
  const auto timeout = static_cast<std::uint64_t>(cfg_.loss_timeout_ms * 1e6);
  for (Flow& f : flows_) {
    for (std::uint32_t i = 0; i < f.slots.size(); ++i) {
      Slot& s = f.slots[i];
      if (!s.busy || now - s.sent_at < timeout) continue;
      s.busy = false;
      f.idle.push_back(i);
      ++lost_;
      if (phase_ == Phase::measure) ++measured_lost_;
    }
    fill(f, now);
  }
}

bool UdpLoadGen::in_flight() const {
  for (const Flow& f : flows_)
    for (const Slot& s : f.slots)
      if (s.busy) return true;
  return false;
}

void UdpLoadGen::advance_phase(std::uint64_t now) {
  if (phase_ == Phase::warmup && now >= t_measure_) {
    phase_ = Phase::measure;
    window_.begin(now, cfg_.server_pid);
    t_end_ = now + static_cast<std::uint64_t>(cfg_.duration * 1e9);
  }
  if (phase_ == Phase::measure && now >= t_end_) {
    window_.end(now, cfg_.server_pid);
    phase_ = Phase::drain;
    t_drain_deadline_ =
        now + static_cast<std::uint64_t>(cfg_.loss_timeout_ms * 1e6) + 1'000'000'000;
  }
  if (phase_ == Phase::drain && (!in_flight() || now >= t_drain_deadline_)) phase_ = Phase::done;
}

void UdpLoadGen::print_result() const {
  const double window = window_.seconds();
  const double dgrams = static_cast<double>(measured_);
  const double rate = window > 0 ? dgrams / window : 0.0;
  const double cpu = window_.cpu();
  const double server_cpu = window_.server_cpu();
  std::string err;
  for (char ch : first_error_) err += (ch == '"' || ch == '\\') ? '\'' : ch;
  auto us = [](std::uint64_t ns) { return static_cast<double>(ns) / 1e3; };
  std::printf(
      "{\"udp_loadgen\":{\"label\":\"%s\",\"flows\":%zu,\"size\":%zu,\"window\":%zu,\"gso\":%s,"
      "\"gro\":%s,\"warmup_s\":%.3f,\"duration_s\":%.4f,\"datagrams\":%" PRIu64
      ",\"total_datagrams\":%" PRIu64 ",\"sent\":%" PRIu64
      ",\"datagrams_per_s\":%.1f,"
      "\"mb_per_s\":%.3f,\"latency_us\":{\"p50\":%.2f,\"p99\":%.2f,\"max\":%.2f},"
      "\"lost\":%" PRIu64 ",\"lost_measured\":%" PRIu64 ",\"late\":%" PRIu64
      ",\"gso_sends\":%" PRIu64 ",\"gro_receives\":%" PRIu64 ",\"errors\":%" PRIu64
      ",\"cpu_s\":%.4f,\"cpu_pct\":%.1f,\"server_cpu_s\":%.4f,"
      "\"server_cpu_pct\":%.1f,\"server_cpu_us_per_dgram\":%.4f,\"ok\":%s,\"error\":\"%s\"}}\n",
      cfg_.label.c_str(), cfg_.flows, cfg_.size, cfg_.window, cfg_.gso ? "true" : "false",
      cfg_.gro ? "true" : "false", cfg_.warmup, window, measured_, total_, sent_, rate,
      rate * static_cast<double>(cfg_.size) / 1e6, us(hist_.quantile(0.5)),
      us(hist_.quantile(0.99)), us(hist_.max()), lost_, measured_lost_, late_, gso_sends_,
      gro_receives_, errors_, cpu, window > 0 ? 100.0 * cpu / window : 0.0, server_cpu,
      window > 0 && server_cpu >= 0 ? 100.0 * server_cpu / window : -1.0,
      dgrams > 0 && server_cpu >= 0 ? server_cpu * 1e6 / dgrams : -1.0,
      errors_ == 0 && measured_ > 0 ? "true" : "false", err.c_str());
  std::fflush(stdout);
}

int UdpLoadGen::run() {
  const auto server = bench::parse_udp4(cfg_.address);
  if (!server) {
    std::fprintf(stderr, "udp_loadgen: bad address %s (want udp://A.B.C.D:PORT)\n",
                 cfg_.address.c_str());
    return 2;
  }
  ep_ = epoll_create1(EPOLL_CLOEXEC);
  if (open_flows(*server)) {
    const std::uint64_t start = bench::now_ns();
    t_measure_ = start + static_cast<std::uint64_t>(cfg_.warmup * 1e9);
    for (Flow& f : flows_) fill(f, start);
    std::vector<epoll_event> events(1024);
    while (phase_ != Phase::done && errors_ == 0) {
      const int n = epoll_wait(ep_, events.data(), static_cast<int>(events.size()), 2);
      for (int i = 0; i < n; ++i) on_readable(flows_[events[i].data.u32]);
      const std::uint64_t now = bench::now_ns();
      expire(now);
      advance_phase(now);
    }
    // An error: still report the window so far.
    if (phase_ == Phase::measure) window_.end(bench::now_ns(), cfg_.server_pid);
  }
  if (measured_ == 0 && errors_ == 0) fail("no datagram was echoed");
  print_result();
  for (Flow& f : flows_)
    if (f.fd >= 0) close(f.fd);
  close(ep_);
  return errors_ == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  if (!parse_args(argc, argv, cfg)) {
    usage(stderr);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  return UdpLoadGen(cfg).run();
}
