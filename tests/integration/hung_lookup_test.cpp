// Host-name lookups while others hang (Linux). A lookup can be stuck for as long as a DNS server
// does not answer. Another name must not wait for it (the resolver starts another thread, up to
// detail::Resolver::kMaxThreads); what gives up meanwhile (a dial that times out, a UDP socket
// closed while opening) must leave the queue, or every retry would wait its turn behind the hang
// and the queue would grow without bound; and UdpRef sends held for a socket that is still
// resolving obey the send queue's bounds. A stop does not wait for a lookup that hangs for longer
// than the shutdown grace.
//
// The test runs in a child process with network and mount namespaces of its own (root only; it
// skips elsewhere): /etc/resolv.conf there names a DNS server on the namespace's loopback that the
// test runs itself. It reads every query, holds those for held<N>.evloop-test until told to
// answer them (NXDOMAIN), and never answers any other: a lookup that reaches it is seen, and one
// that was cancelled never is.
#include <gtest/gtest.h>

#if defined(__linux__)

#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "resolver.hpp"
#include "test_support.hpp"

namespace evloop::test {
namespace {

using namespace std::chrono_literals;

constexpr int kNoNamespaces = 77;  // the child's exit code when it may not unshare

// A DNS server that holds the queries for held<N>.evloop-test until released and records every
// other name it is asked.
class FakeDns {
 public:
  // Binds 127.0.0.1:53 in the current (new) network namespace; false on failure.
  bool start() {
    fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(53);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return false;
    thread_ = std::thread([this] { serve(); });
    return true;
  }
  ~FakeDns() {
    done_ = true;
    if (thread_.joinable()) thread_.join();
    if (fd_ >= 0) ::close(fd_);
  }
  // From now on, held queries get NXDOMAIN (those held so far too).
  void release() { released_ = true; }
  // How many different held<N> names were asked.
  std::size_t held_names() const {
    std::lock_guard lock(mutex_);
    return held_.size();
  }
  std::vector<std::string> other_queries() const {
    std::lock_guard lock(mutex_);
    return others_;
  }

 private:
  struct Query {
    std::string packet;
    sockaddr_in from;
  };

  void serve() {
    std::vector<Query> held;
    while (!done_) {
      if (released_) {
        for (const Query& q : held) answer_nxdomain(q);
        held.clear();
      }
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      char buf[512];
      Query q{};
      socklen_t len = sizeof q.from;
      const ssize_t n =
          ::recvfrom(fd_, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&q.from), &len);
      if (n < 12) continue;
      q.packet.assign(buf, static_cast<std::size_t>(n));
      const std::string name = question_name(q.packet);
      std::lock_guard lock(mutex_);
      if (name.starts_with("held")) {
        held_.insert(name);
        held.push_back(q);
      } else {
        others_.push_back(name);
      }
    }
  }

  // The question's name, labels joined with dots.
  static std::string question_name(const std::string& packet) {
    std::string name;
    for (std::size_t at = 12; at < packet.size() && packet[at] != 0;) {
      const std::size_t len = static_cast<unsigned char>(packet[at]);
      if (!name.empty()) name += '.';
      name += packet.substr(at + 1, len);
      at += len + 1;
    }
    return name;
  }

  // The query itself, turned into a response (QR) with RCODE 3: the name does not exist.
  void answer_nxdomain(const Query& q) const {
    std::string r = q.packet;
    r[2] = static_cast<char>(r[2] | 0x80);
    r[3] = static_cast<char>((r[3] & 0xf0) | 3);
    ::sendto(fd_, r.data(), r.size(), 0, reinterpret_cast<const sockaddr*>(&q.from), sizeof q.from);
  }

  int fd_ = -1;
  std::thread thread_;
  std::atomic<bool> done_{false};
  std::atomic<bool> released_{false};
  mutable std::mutex mutex_;
  std::set<std::string> held_;
  std::vector<std::string> others_;
};

// New network and mount namespaces for this process, loopback up, and a resolv.conf that sends
// every query to 127.0.0.1 and waits 30 s for an answer. An error message, or "" when done.
std::string enter_namespaces(bool& not_permitted) {
  if (::unshare(CLONE_NEWNS | CLONE_NEWNET) != 0) {
    not_permitted = errno == EPERM;
    return std::string("unshare: ") + std::strerror(errno);
  }
  // Private first, so the bind mount below stays in this namespace.
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return "mount private";
  const int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  ifr.ifr_flags = IFF_UP | IFF_LOOPBACK | IFF_RUNNING;
  const bool up = s >= 0 && ::ioctl(s, SIOCSIFFLAGS, &ifr) == 0;
  if (s >= 0) ::close(s);
  if (!up) return "loopback up";
  char path[] = "/tmp/evloop-resolv-XXXXXX";
  const int fd = ::mkstemp(path);
  if (fd < 0) return "mkstemp";
  const std::string conf = "nameserver 127.0.0.1\noptions timeout:30 attempts:1\n";
  const bool written = ::write(fd, conf.data(), conf.size()) == static_cast<ssize_t>(conf.size());
  ::close(fd);
  const bool mounted = written && ::mount(path, "/etc/resolv.conf", nullptr, MS_BIND, nullptr) == 0;
  ::unlink(path);  // the mount keeps the file
  return mounted ? "" : "bind-mount resolv.conf";
}

// Sums the group's counters.
LoopStats total(const LoopGroup& group) {
  LoopStats t;
  for (const LoopStats& s : group.stats()) t += s;
  return t;
}

// The test proper, in the child: "" when every check held, else what failed.
std::string run_in_namespaces(bool& not_permitted) {
  if (std::string e = enter_namespaces(not_permitted); !e.empty()) return e;
  FakeDns dns;
  if (!dns.start()) return "fake DNS server: bind 127.0.0.1:53";
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(listener, 16) != 0 ||
      ::getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    return "listener";
  }
  LoopOptions lo;
  lo.loops = 1;
  LoopGroup group(lo);
  if (!group.start()) return "group start";
  const Loop& loop = group.loop(0);

  // Dials a name from /etc/hosts: true if it opened within `patience` (its dial's timeout).
  auto localhost_opens = [&](std::chrono::milliseconds patience) {
    EventCounter opened, failed;
    Handlers local;
    local.opened = [&](Conn& c) {
      opened.add();
      c.close();
    };
    local.connect_failed = [&](Conn&, std::error_code) { failed.add(); };
    ConnectOptions o;
    o.connect_timeout = patience;
    loop.connect("tcp4://localhost:" + std::to_string(ntohs(a.sin_port)), local, o);
    (void)eventually([&] { return opened.value() + failed.value() > 0; });
    return opened.value() == 1;
  };
  // A lookup that hangs until released.
  EventCounter held_failed;
  DatagramHandlers held;
  held.open_failed = [&](Udp&, std::error_code) { held_failed.add(); };
  auto hang = [&](std::size_t n) {
    loop.connect_udp("udp://held" + std::to_string(n) + ".evloop-test:9", held);
    return eventually([&] { return dns.held_names() == n + 1; });
  };

  // 1. Another name does not wait for a lookup that hangs.
  if (!hang(0)) return "the first lookup never came";
  std::string errors;
  if (!localhost_opens(5s)) errors += "a dial to localhost waited behind a hung lookup; ";

  // Every resolver thread stuck in a lookup that hangs.
  for (std::size_t n = 1; n < detail::Resolver::kMaxThreads; ++n) {
    if (!hang(n)) return "lookup " + std::to_string(n) + " never came";
  }

  // 2. Twenty dials that time out and twenty UDP sockets closed while their names wait.
  EventCounter dials_failed, udp_failed;
  Handlers dial;
  dial.connect_failed = [&](Conn&, std::error_code) { dials_failed.add(); };
  ConnectOptions quick;
  quick.connect_timeout = 20ms;
  DatagramHandlers udp;
  udp.open_failed = [&](Udp&, std::error_code) { udp_failed.add(); };
  for (int i = 0; i < 20; ++i) {
    loop.connect("tcp://dial" + std::to_string(i) + ".evloop-test:9", dial, quick);
    loop.connect_udp("udp://udp" + std::to_string(i) + ".evloop-test:9", udp).close();
  }
  if (!dials_failed.wait_for(20) || !udp_failed.wait_for(20)) return "the cancels did not end";

  // 3. Sends for a socket still resolving: 10 asked, 4 fit the queue's bound, 6 dropped at once.
  EventCounter sends_failed;
  DatagramHandlers sends_handlers;
  sends_handlers.open_failed = [&](Udp&, std::error_code) { sends_failed.add(); };
  UdpConnectOptions bounded;
  bounded.send_queue_datagrams = 4;
  const UdpRef sends = loop.connect_udp("udp://sends.evloop-test:9", sends_handlers, bounded);
  for (int i = 0; i < 10; ++i) sends.send("x");
  std::atomic<std::uint64_t> drops_while_held{0};
  EventCounter sampled;
  loop.post([&] {
    drops_while_held = loop.stats().datagram_drops;
    sampled.add();
  });
  if (!sampled.wait_for(1)) return "the sample never ran";
  sends.close();
  if (!sends_failed.wait_for(1)) return "the socket with sends held did not fail";
  const std::uint64_t drops_after_close = total(group).datagram_drops;

  // 4. Released, the hung lookups fail; a dial to a name from /etc/hosts is next in line.
  dns.release();
  if (!held_failed.wait_for(static_cast<long>(detail::Resolver::kMaxThreads))) {
    return "the hung lookups were never answered";
  }
  if (!localhost_opens(5s)) errors += "the dial to localhost after the release did not open; ";
  group.stop();
  (void)group.wait();
  ::close(listener);

  const std::vector<std::string> others = dns.other_queries();
  if (!others.empty()) {
    errors += std::to_string(others.size()) +
              " cancelled lookups reached DNS (first: " + others.front() + "); ";
  }
  if (drops_while_held != 6) {
    errors += "drops while resolving: " + std::to_string(drops_while_held) + ", not 6; ";
  }
  if (drops_after_close != 10) {
    errors += "drops after the close: " + std::to_string(drops_after_close) + ", not 10; ";
  }
  return errors;
}

// A stop while a lookup hangs: wait() returns within the shutdown grace (plus as much again for
// the resolver), not when the DNS server answers (30 s here); the thread left in the lookup ends
// by itself once it is answered, and its answer goes nowhere (the group is gone by then).
std::string stop_while_a_lookup_hangs(bool& not_permitted) {
  if (std::string e = enter_namespaces(not_permitted); !e.empty()) return e;
  FakeDns dns;
  if (!dns.start()) return "fake DNS server: bind 127.0.0.1:53";
  LoopOptions lo;
  lo.loops = 1;
  lo.shutdown_grace = 200ms;
  {  // warm up: whatever a process keeps once a first loop has run (libkqueue's thread, say)
    LoopGroup warm(lo);
    if (!warm.start()) return "warm-up group start";
    warm.stop();
    (void)warm.wait();
  }
  const FdAndThreadCounts baseline;
  auto group = std::make_unique<LoopGroup>(lo);
  if (!group->start()) return "group start";
  EventCounter open_failed;
  DatagramHandlers held;
  held.open_failed = [&](Udp&, std::error_code) { open_failed.add(); };
  group->loop(0).connect_udp("udp://held0.evloop-test:9", held);
  if (!eventually([&] { return dns.held_names() == 1; })) return "the lookup never came";
  group->stop();
  EventCounter returned;
  std::thread waiter([&] {
    (void)group->wait();
    returned.add();
  });
  std::string errors;
  if (!returned.wait_for(1, 5s)) errors += "wait() waited for the hung lookup; ";
  waiter.join();  // (after 30 s at most: the DNS server's timeout)
  group.reset();
  dns.release();  // the lookup left running is answered now
  if (!eventually([&] { return threads_since(baseline) == 0 && count_open_fds() <= baseline.fds; },
                  10s)) {
    errors += "the resolver thread left in the lookup did not end; ";
  }
  if (open_failed.value() != 1) {
    errors += "open_failed ran " + std::to_string(open_failed.value()) + " times, not once; ";
  }
  return errors;
}

// Runs `scenario` in a child process (namespaces of its own) and checks what it reports.
void run_in_child(std::string (*scenario)(bool&)) {
  int report[2];
  ASSERT_EQ(::pipe2(report, O_CLOEXEC), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(report[0]);
    bool not_permitted = false;
    const std::string result = scenario(not_permitted);
    (void)!::write(report[1], result.data(), result.size());
    ::_exit(not_permitted ? kNoNamespaces : result.empty() ? 0 : 1);
  }
  ::close(report[1]);
  std::string result;
  pollfd p{report[0], POLLIN, 0};
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
      ::kill(pid, SIGKILL);
      result += " (timed out)";
      break;
    }
    char buf[512];
    const ssize_t n = ::read(report[0], buf, sizeof buf);
    if (n <= 0) break;
    result.append(buf, static_cast<std::size_t>(n));
  }
  ::close(report[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "the child died: " << result;
  if (WEXITSTATUS(status) == kNoNamespaces) {
    GTEST_SKIP() << "needs network and mount namespaces (root): " << result;
  }
  EXPECT_EQ(WEXITSTATUS(status), 0) << result;
  EXPECT_EQ(result, "");
}

TEST(HungLookupTest, OtherNamesPassItWhatGivesUpLeavesTheQueueHeldSendsAreBounded) {
  run_in_child(run_in_namespaces);
}

TEST(HungLookupTest, AStopDoesNotWaitForALookupThatHangs) {
  run_in_child(stop_while_a_lookup_hangs);
}

}  // namespace
}  // namespace evloop::test

#endif  // __linux__
