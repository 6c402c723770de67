// Cross-thread: 8 threads post writes, tasks and closes to random connections while clients
// close and reset theirs and the poster threads close some too; at the end the server stops
// while they still post. A post never runs for a connection that has closed (or for the wrong
// one), each thread's messages reach a connection in the order posted, `closed` fires once per
// `opened`. The point of this test is also to be clean under ASan and TSan.
//
// Scale: 200 connections and 2 s of posting in the normal build; 60 and 1 s under a sanitizer.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <unordered_map>

#include "fault_support.hpp"

namespace evloop::fault {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kPosters = 8;

struct Registry {
  std::mutex mutex;
  std::vector<ConnRef> refs;  // every connection ever opened
  std::set<std::uint64_t> closed_ids;
  std::unordered_map<std::uint64_t, int> opened_count, closed_count;
  std::atomic<long> stale_ran{0}, wrong_conn{0}, ran{0};
};

// Client side: one connection's line parser and per-thread order check.
struct Reader {
  int fd = -1;
  std::string partial;
  std::uint64_t last[kPosters] = {};
};

class CrossThreadTest : public AccountedTest {};

TEST_F(CrossThreadTest, EightThreadsPostToRandomConnectionsWhileTheyClose) {
  const int kConns = scaled(200, 60);
  const auto kPostFor = kSanitized ? 1s : 2s;
  ASSERT_TRUE(raise_fd_limit(static_cast<rlim_t>(4 * kConns + 256)));
  Registry reg;
  Options o = test::loopback_options(2);
  o.reuseport = true;
  Callbacks cb;
  cb.opened = [&](Conn& c) {
    std::lock_guard lock(reg.mutex);
    reg.refs.push_back(c.ref());
    ++reg.opened_count[c.id()];
  };
  cb.closed = [&](Conn& c, std::error_code) {
    std::lock_guard lock(reg.mutex);
    reg.closed_ids.insert(c.id());
    ++reg.closed_count[c.id()];
  };
  RunningServer s(o, cb);  // `data` unset: input is discarded
  ASSERT_TRUE(s.status);

  // Posters run until the server has stopped; then each makes one more post, which must be
  // refused, and ends.
  std::atomic<bool> stopped{false};
  std::atomic<long> refused{0}, refused_after_stop{0}, closes_posted{0};
  std::vector<std::thread> posters;
  for (int t = 0; t < kPosters; ++t) {
    posters.emplace_back([&, t] {
      std::mt19937_64 rng(static_cast<std::uint64_t>(t) * 7919 + 1);
      std::uint64_t seq = 0;
      for (bool last = false; !last;) {
        last = stopped.load();
        ConnRef ref;
        {
          std::lock_guard lock(reg.mutex);
          if (reg.refs.empty()) continue;
          ref = reg.refs[rng() % reg.refs.size()];  // often one that has closed
        }
        const std::string msg = std::to_string(t) + ":" + std::to_string(++seq) + "\n";
        const int op = static_cast<int>(rng() % 100);
        bool accepted = true;
        if (op < 60) {
          accepted = ref.write(msg);
        } else if (op < 99) {
          accepted = ref.post([&reg, msg, id = ref.id()](Conn& c) {
            ++reg.ran;
            if (c.id() != id) ++reg.wrong_conn;
            {
              std::lock_guard lock(reg.mutex);
              if (reg.closed_ids.count(id) != 0) ++reg.stale_ran;
            }
            c.write(msg);
          });
        } else {
          accepted = ref.close();
          ++closes_posted;
        }
        if (!accepted) ++refused;
        if (last && !accepted) ++refused_after_stop;
      }
    });
  }

  // This thread reads every client, checks each line, and churns: clients close or reset at
  // random, and every connection that ends is replaced by a new one.
  PollSet sockets;
  std::vector<Reader> readers(static_cast<std::size_t>(kConns));
  std::mt19937 rng(12345);
  long lines = 0, malformed = 0, out_of_order = 0, client_closes = 0, replaced = 0;
  auto open_reader = [&](std::size_t i) {
    readers[i] = Reader{};
    readers[i].fd = start_connect(s.address());
    ASSERT_GE(readers[i].fd, 0) << std::strerror(errno);
    sockets.add(readers[i].fd, POLLIN, i);
  };
  auto end_reader = [&](std::size_t i, bool reset) {
    sockets.remove(readers[i].fd);
    if (reset) {
      reset_close(readers[i].fd);
    } else {
      ::close(readers[i].fd);
    }
    readers[i].fd = -1;
  };
  for (std::size_t i = 0; i < readers.size(); ++i) open_reader(i);
  char buf[65536];
  // At least kPostFor, and on until the floors checked below are reached (a sanitizer build on a
  // loaded host may need longer), within a bound.
  const auto until = Clock::now() + kPostFor;
  const auto give_up = Clock::now() + 30s;
  auto enough = [&] {
    return reg.ran.load() > 1000 && lines > 1000 && client_closes > 100 && replaced > 0;
  };
  auto next_churn = Clock::now();
  while ((Clock::now() < until || !enough()) && Clock::now() < give_up && !HasFatalFailure()) {
    for (const PollSet::Ready& ev : sockets.wait(1)) {
      const std::size_t i = ev.token;
      Reader& r = readers[i];
      const ssize_t n = ::recv(r.fd, buf, sizeof buf, 0);
      if (n < 0 && errno == EAGAIN) continue;
      if (n <= 0) {  // closed by a posted close (EOF), or an error: replace it
        end_reader(i, false);
        open_reader(i);
        ++replaced;
        continue;
      }
      r.partial.append(buf, static_cast<std::size_t>(n));
      std::size_t pos = 0;
      for (std::size_t nl; (nl = r.partial.find('\n', pos)) != std::string::npos; pos = nl + 1) {
        const std::string line = r.partial.substr(pos, nl - pos);
        const std::size_t colon = line.find(':');
        if (colon == std::string::npos || colon == 0) {
          ++malformed;
          continue;
        }
        const int t = std::stoi(line.substr(0, colon));
        const std::uint64_t seq = std::stoull(line.substr(colon + 1));
        if (t < 0 || t >= kPosters) {
          ++malformed;
          continue;
        }
        if (seq <= r.last[t]) ++out_of_order;
        r.last[t] = seq;
        ++lines;
      }
      r.partial.erase(0, pos);
    }
    if (Clock::now() >= next_churn) {  // a client leaves every millisecond or so
      const std::size_t i = rng() % readers.size();
      end_reader(i, rng() % 2 == 0);
      open_reader(i);
      ++client_closes;
      next_churn = Clock::now() + 1ms;
    }
  }
  // Stop the server while the posters are still at it: later posts are refused, none crash.
  s.server.stop();
  s.server.wait();
  stopped = true;
  for (auto& t : posters) t.join();
  for (std::size_t i = 0; i < readers.size(); ++i) {
    if (readers[i].fd >= 0) end_reader(i, false);
  }

  EXPECT_EQ(reg.stale_ran.load(), 0) << "a post ran for a connection that had closed";
  EXPECT_EQ(reg.wrong_conn.load(), 0) << "a post ran for another connection";
  EXPECT_EQ(malformed, 0) << "interleaved or corrupted messages";
  EXPECT_EQ(out_of_order, 0) << "one thread's messages reordered";
  EXPECT_GT(reg.ran.load(), 1000);
  EXPECT_GT(lines, 1000);
  EXPECT_EQ(refused_after_stop.load(), kPosters) << "a post after the stop was accepted";
  EXPECT_GT(client_closes, 100);
  EXPECT_GT(replaced, 0) << "no posted close took effect";
  std::lock_guard lock(reg.mutex);
  EXPECT_EQ(reg.opened_count.size(), reg.closed_count.size());
  for (const auto& [id, n] : reg.opened_count) {
    EXPECT_EQ(n, 1);
    EXPECT_EQ(reg.closed_count[id], 1) << "connection " << id;
  }
  std::printf(
      "cross-thread: %zu connections, %ld posted tasks ran, %ld lines checked, %ld client "
      "closes, %ld server closes, %ld posts refused after stop\n",
      reg.opened_count.size(), reg.ran.load(), lines, client_closes, replaced, refused.load());
}

}  // namespace
}  // namespace evloop::fault
