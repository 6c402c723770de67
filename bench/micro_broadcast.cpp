// A broadcast of 1 KiB to 1,000 loopback connections of a one-loop Server (issue 13): a task
// posted to the loop writes the same bytes to every connection, either as one SharedBuffer
// (a reference per connection) or with a plain write (under ConnOptions::write_through, so
// copied into each connection's output). An iteration ends when every client has read its
// 1 KiB. Counters per broadcast: bytes copied (LoopStats::bytes_copied), heap allocations on the
// loop thread (this binary replaces operator new: counting_new.hpp, hence its own binary), sends,
// and the time the loop spent in the writing task itself.
#include "counting_new.hpp"

#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <evloop/evloop.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "micro_support.hpp"
#include "pattern.hpp"

namespace {

using Clock = std::chrono::steady_clock;
constexpr int kClients = 1000;
constexpr std::size_t kMessage = 1024;

[[noreturn]] void die(const std::string& message) {
  std::fprintf(stderr, "bench_broadcast: %s\n", message.c_str());
  std::exit(1);
}

// Each connection is two fds here (the client's and the server's).
void raise_fd_limit() {
  constexpr rlim_t kNeeded = 2 * kClients + 64;
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) die("getrlimit failed");
  if (limit.rlim_cur >= kNeeded) return;
  if (limit.rlim_max < kNeeded) {
    die("needs " + std::to_string(kNeeded) + " file descriptors; the hard limit is " +
        std::to_string(limit.rlim_max) + " (raise it: ulimit -Hn)");
  }
  limit.rlim_cur = kNeeded;
  if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) die("setrlimit(RLIMIT_NOFILE) failed");
}

/// The server (its loop on the first CPU), its connections as the loop sees them, and the
/// clients (on the second CPU, non-blocking, in one epoll set). Built on first use, for both
/// benchmarks; torn down at exit.
struct Rig {
  std::unique_ptr<evloop::Server> server;
  std::vector<evloop::ConnRef> conns;  // the loop thread's only
  std::atomic<int> opened{0};
  std::vector<int> clients;
  int epoll_fd = -1;

  Rig() {
    raise_fd_limit();
    evloop::Options options;
    options.listen = {"tcp://127.0.0.1:0"};
    evloop::Callbacks callbacks;
    callbacks.opened = [this](evloop::Conn& c) {
      conns.push_back(c.ref());
      opened.fetch_add(1, std::memory_order_release);
    };
    server = std::make_unique<evloop::Server>(options, std::move(callbacks));
    if (const evloop::Status st = server->start(); !st) die("cannot start: " + st.message());
    if (!bench::run_in_loop(server->loop(0), [] { bench::pin_to_nth_cpu(0); })) {
      die("the loop did not run a posted task within 5 s");
    }
    bench::pin_to_nth_cpu(1);
    connect_clients();
  }

  ~Rig() {
    for (int fd : clients) ::close(fd);
    if (epoll_fd >= 0) ::close(epoll_fd);
    server->stop();
    server->wait();
  }

  // Blocking connects in batches of 100, each batch accepted before the next: the listen queue
  // never fills (a full one drops the SYN, and the retry comes a second later).
  void connect_clients() {
    epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons(server->addresses().at(0).port());
    for (int i = 0; i < kClients; ++i) {
      const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd < 0 || ::connect(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0) {
        die("connect #" + std::to_string(i) + ": " + std::strerror(errno));
      }
      clients.push_back(fd);
      if ((i + 1) % 100 == 0 && !wait_opened(i + 1)) die("the server did not accept in 5 s");
    }
    for (int i = 0; i < kClients; ++i) {
      ::fcntl(clients[i], F_SETFL, O_NONBLOCK);
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u32 = static_cast<std::uint32_t>(i);
      if (::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, clients[i], &ev) != 0) die("epoll_ctl failed");
    }
  }

  bool wait_opened(int n) const {
    const auto deadline = Clock::now() + std::chrono::seconds(5);
    while (opened.load(std::memory_order_acquire) < n) {
      if (Clock::now() > deadline) return false;
    }
    return true;
  }

  /// Reads until every client has `expected` (whole, byte-exact), 5 s at most; an error message
  /// or "".
  std::string read_all(std::string_view expected) {
    std::vector<std::size_t> got(clients.size(), 0);
    std::size_t complete = 0;
    const auto deadline = Clock::now() + std::chrono::seconds(5);
    epoll_event events[256];
    char buffer[4096];
    while (complete < clients.size()) {
      if (Clock::now() > deadline) return std::to_string(complete) + " clients done after 5 s";
      const int n = ::epoll_wait(epoll_fd, events, 256, 100);
      for (int e = 0; e < n; ++e) {
        const std::uint32_t i = events[e].data.u32;
        const ssize_t r = ::read(clients[i], buffer, sizeof buffer);
        if (r <= 0) continue;  // EAGAIN; an EOF or error shows as a timeout
        const auto size = static_cast<std::size_t>(r);
        if (got[i] + size > expected.size() ||
            std::memcmp(buffer, expected.data() + got[i], size) != 0) {
          return "client " + std::to_string(i) + " read bytes it was not sent";
        }
        got[i] += size;
        if (got[i] == expected.size()) ++complete;
      }
    }
    return "";
  }
};

/// The bytes broadcast: 1 KiB of the load generator's pattern.
std::string message() {
  std::string bytes(kMessage, '\0');
  bench::Pattern(kMessage).fill(13, 0, kMessage, reinterpret_cast<unsigned char*>(bytes.data()));
  return bytes;
}

Rig& rig() {
  static Rig* r = [] {
    auto* made = new Rig();
    std::atexit([] { delete &rig(); });
    return made;
  }();
  return *r;
}

// One broadcast: posts the writes to the loop, waits until every client has read them. Adds the
// time the loop spent in the task to `task_ns`.
template <bool kShared>
bool broadcast(benchmark::State& state, const evloop::SharedBuffer& bytes, double& task_ns) {
  Rig& r = rig();
  auto spent = std::make_shared<std::atomic<double>>(0.0);
  r.server->loop(0).post([&r, bytes, spent] {
    const auto start = Clock::now();
    for (const evloop::ConnRef& ref : r.conns) {
      evloop::Conn* conn = ref.get();
      if (conn == nullptr) continue;
      if constexpr (kShared) {
        conn->write(bytes);
      } else {
        conn->write(bytes.view());
      }
    }
    spent->store(std::chrono::duration<double, std::nano>(Clock::now() - start).count());
  });
  if (const std::string error = r.read_all(bytes.view()); !error.empty()) {
    state.SkipWithError(error.c_str());
    return false;
  }
  task_ns += spent->load();  // set before the first byte was sent
  return true;
}

void set_counting(bool on) {
  if (!bench::run_in_loop(rig().server->loop(0), [on] { evloop::test::t_counting = on; })) {
    die("the loop did not run a posted task within 5 s");
  }
}

template <bool kShared>
void BM_Broadcast1KiBTo1000(benchmark::State& state) {
  Rig& r = rig();
  if (r.opened.load() != kClients) {
    state.SkipWithError("not every client is connected");
    return;
  }
  const evloop::SharedBuffer bytes(message());
  double task_ns = 0;
  if (!broadcast<kShared>(state, bytes, task_ns)) return;  // warm-up: fills the loop's pools
  task_ns = 0;
  const evloop::LoopStats before = r.server->stats().at(0);
  const long allocations_before = evloop::test::g_counted_allocations.load();
  set_counting(true);
  for (auto _ : state) {
    if (!broadcast<kShared>(state, bytes, task_ns)) break;
  }
  set_counting(false);
  const evloop::LoopStats after = r.server->stats().at(0);
  const auto per = [&](double total) { return total / static_cast<double>(state.iterations()); };
  state.counters["B_copied"] = per(static_cast<double>(after.bytes_copied - before.bytes_copied));
  state.counters["allocs"] =
      per(static_cast<double>(evloop::test::g_counted_allocations.load() - allocations_before));
  state.counters["sends"] = per(static_cast<double>(after.writes - before.writes));
  state.counters["task_us"] = per(task_ns / 1000.0);
}

void BM_BroadcastShared(benchmark::State& state) { BM_Broadcast1KiBTo1000<true>(state); }
void BM_BroadcastWrite(benchmark::State& state) { BM_Broadcast1KiBTo1000<false>(state); }
BENCHMARK(BM_BroadcastShared)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_BroadcastWrite)->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace
