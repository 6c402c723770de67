// A pub/sub chat server (pubsub_server.hpp, public API only) under the load a push server sees:
// hundreds of long-lived subscribers on two loops, a subscriber that never reads, heartbeats,
// idle clients, and a stop from another thread that says goodbye to everyone.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "pubsub_server.hpp"
#include "pubsub_swarm.hpp"
#include "test_support.hpp"

namespace evloop::test {
namespace {

// Two connections made one after the other land on different loops (round-robin hand-off from
// the one listener): the publishers below are made so, and the subscribers alternate.
constexpr unsigned kLoops = 2;

// Raises the soft fd limit to what `clients` connections need (both ends live in this process);
// returns how many clients fit under the hard limit.
std::size_t clients_that_fit(std::size_t clients) {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0) return 0;
  const rlim_t want = 2 * clients + 128;
  if (r.rlim_cur < want) {
    r.rlim_cur = std::min(want, r.rlim_max);
    ::setrlimit(RLIMIT_NOFILE, &r);
    ::getrlimit(RLIMIT_NOFILE, &r);
  }
  return std::min<std::size_t>(clients, r.rlim_cur > 128 ? (r.rlim_cur - 128) / 2 : 0);
}

// Printable text of `n` letters, different per (publisher, seq).
std::string text_of(std::size_t publisher, std::size_t seq, std::size_t n) {
  std::string t = "p" + std::to_string(publisher) + " " + std::to_string(seq) + " ";
  for (std::size_t i = 0; i < n; ++i) t.push_back(static_cast<char>('a' + (seq * 7 + i) % 26));
  return t;
}

// The publisher tag of a `MSG <room> p<N> ...` line.
std::string publisher_of(std::string_view line) {
  const std::size_t a = line.find(' ', 4);
  const std::size_t b = line.find(' ', a + 1);
  return std::string(line.substr(a + 1, b - a - 1));
}

::testing::AssertionResult subscribe(Swarm& swarm, std::size_t i, std::vector<std::string> rooms,
                                     std::string* acks) {
  for (const auto& room : rooms) {
    if (!swarm.send(i, "SUB " + room + "\n")) {
      return ::testing::AssertionFailure() << "client " << i << ": send failed";
    }
    acks->append("OK " + room + "\n");
  }
  return ::testing::AssertionSuccess();
}

// Reads until every client from `first` on has had its subscriptions' acks (`acks[i]`).
bool acks_arrive(Swarm& swarm, const std::vector<std::string>& acks, std::size_t first) {
  return swarm.pump_until([&] {
    for (std::size_t i = first; i < swarm.size(); ++i) {
      if (swarm[i].lines.size() < acks[i].size()) return false;
    }
    return true;
  });
}

TEST(PubSubTest, EveryMessageReachesEverySubscriberOnBothLoopsByteExactInPublisherOrder) {
  const std::size_t wanted = kSanitized ? 300 : 1000;
  const std::size_t subscribers = clients_that_fit(wanted + 2) - 2;
  ASSERT_GE(subscribers, 100u) << "the fd limit allows too few clients";
  const std::size_t per_publisher = kSanitized ? 60 : 120;
  const std::vector<std::string> rooms = {"r0", "r1", "r2", "all"};

  PubSubConfig config;
  config.loops = kLoops;
  config.heartbeat = 50ms;  // heartbeats interleave with the messages; clients skip them
  PubSubServer server(config);
  ASSERT_TRUE(server.start());

  Swarm swarm;
  ASSERT_TRUE(swarm.connect(server.address(), 2));  // publishers 0 and 1: one per loop
  ASSERT_TRUE(swarm.connect(server.address(), subscribers));
  std::vector<std::string> acks(swarm.size());
  std::vector<std::vector<std::string>> rooms_of(swarm.size());
  for (std::size_t i = 2; i < swarm.size(); ++i) {
    rooms_of[i] = {rooms[i % 3]};
    if (i % 2 == 0) rooms_of[i].push_back("all");
    ASSERT_TRUE(subscribe(swarm, i, rooms_of[i], &acks[i]));
  }
  ASSERT_TRUE(acks_arrive(swarm, acks, 2));
  for (std::size_t i = 2; i < swarm.size(); ++i) ASSERT_EQ(swarm[i].lines, acks[i]) << i;

  std::vector<std::string> streams(2);
  for (std::size_t p = 0; p < 2; ++p) {
    for (std::size_t k = 0; k < per_publisher; ++k) {
      const std::string& room = rooms[k % rooms.size()];
      const std::string text = text_of(p, k, (k * 37) % 300);
      streams[p] += "PUB " + room + " " + text + "\n";
    }
  }
  // The two publishers' streams go in alternating slices, so both loops publish at once.
  for (std::size_t at = 0; at < streams[0].size() || at < streams[1].size(); at += 4096) {
    for (std::size_t p = 0; p < 2; ++p) {
      if (at < streams[p].size()) {
        ASSERT_TRUE(swarm.send(p, streams[p].substr(at, 4096)));
      }
    }
  }

  // Per subscriber: each publisher's messages, interleaved in any way between publishers.
  std::vector<std::map<std::string, std::string>> want(swarm.size());
  std::vector<std::size_t> total(swarm.size());
  for (std::size_t i = 2; i < swarm.size(); ++i) {
    total[i] = acks[i].size();
    for (std::size_t p = 0; p < 2; ++p) {
      // A publisher's messages to this subscriber's rooms, in the order published.
      std::string mine;
      for (std::size_t k = 0; k < per_publisher; ++k) {
        const std::string& room = rooms[k % rooms.size()];
        if (std::find(rooms_of[i].begin(), rooms_of[i].end(), room) == rooms_of[i].end()) continue;
        mine += "MSG " + room + " " + text_of(p, k, (k * 37) % 300) + "\n";
      }
      total[i] += mine.size();
      want[i]["p" + std::to_string(p)] = std::move(mine);
    }
  }
  const bool all_arrived = swarm.pump_until([&] {
    for (std::size_t i = 2; i < swarm.size(); ++i) {
      if (swarm[i].lines.size() < total[i] && !swarm[i].ended) return false;
    }
    return true;
  });
  EXPECT_TRUE(all_arrived);
  for (std::size_t i = 2; i < swarm.size(); ++i) {
    Swarm::Peer& peer = swarm[i];
    ASSERT_FALSE(peer.ended) << "subscriber " << i << " was disconnected (errno " << peer.error
                             << ")";
    ASSERT_EQ(peer.lines.size(), total[i]) << "subscriber " << i;
    std::map<std::string, std::string> got;
    std::string_view rest = std::string_view(peer.lines).substr(acks[i].size());
    while (!rest.empty()) {
      const std::size_t end = rest.find('\n');
      const std::string_view line = rest.substr(0, end + 1);
      got[publisher_of(line)].append(line);
      rest.remove_prefix(end + 1);
    }
    ASSERT_EQ(got, want[i]) << "subscriber " << i;
  }
  EXPECT_GT(server.remote_posts.load(), 0);  // both loops published to the other
  EXPECT_EQ(server.cut_off.load(), 0);
  EXPECT_EQ(server.errors.load(), 0);
}

TEST(PubSubTest, ASubscriberThatNeverReadsIsCutOffWhileTheOthersGetEveryMessage) {
  PubSubConfig config;
  config.loops = kLoops;
  config.slow_bound = 64 * 1024;
  config.socket_send_buffer = 16 * 1024;  // the kernel holds little for a peer that never reads
  PubSubServer server(config);
  ASSERT_TRUE(server.start());

  // The publisher, then one silent subscriber on each loop (the publisher's and the other).
  const std::size_t readers = kSanitized ? 10 : 30;
  Swarm swarm;
  ASSERT_TRUE(swarm.connect(server.address(), 1));
  ASSERT_TRUE(swarm.connect(server.address(), 2, /*rcvbuf=*/4096));
  ASSERT_TRUE(swarm.connect(server.address(), readers));
  std::vector<std::string> acks(swarm.size());
  for (std::size_t i = 1; i < swarm.size(); ++i) {
    ASSERT_TRUE(subscribe(swarm, i, {"room"}, &acks[i]));
  }
  ASSERT_TRUE(acks_arrive(swarm, acks, 1));
  swarm[1].reading = false;
  swarm[2].reading = false;

  // Rounds of 16 messages of 1 KiB; each round is read by every reader before the next goes, so
  // a reader's backlog never passes one round while the silent ones' grows.
  std::string expected = acks[3];
  std::size_t round = 0;
  std::size_t rounds_after_cut = 0;
  for (; round < 200 && rounds_after_cut < 3; ++round) {
    std::string burst;
    std::string delivered;
    for (std::size_t k = 0; k < 16; ++k) {
      const std::string text = text_of(0, round * 16 + k, 1000);
      burst += "PUB room " + text + "\n";
      delivered += "MSG room " + text + "\n";
    }
    ASSERT_TRUE(swarm.send(0, burst));
    expected += delivered;
    ASSERT_TRUE(swarm.pump_until([&] {
      for (std::size_t i = 3; i < swarm.size(); ++i) {
        if (swarm[i].lines.size() < expected.size() && !swarm[i].ended) return false;
      }
      return true;
    })) << "round "
        << round;
    if (server.cut_off.load() == 2) ++rounds_after_cut;
  }
  ASSERT_EQ(server.cut_off.load(), 2) << "after " << round << " rounds";
  for (std::size_t i = 3; i < swarm.size(); ++i) {
    ASSERT_FALSE(swarm[i].ended) << "reader " << i << " (errno " << swarm[i].error << ")";
    ASSERT_EQ(swarm[i].lines, expected) << "reader " << i;
  }
  // The backlog of a silent subscriber never passed the bound, and went with it.
  EXPECT_LE(server.max_pending.load(), config.slow_bound);
  ASSERT_TRUE(eventually(
      [&] { return total_stats(server.server()).output_buffered < readers * 16 * 1024; }));
  // The silent ones see a reset once they read what the kernel had taken for them.
  swarm[1].reading = true;
  swarm[2].reading = true;
  ASSERT_TRUE(swarm.pump_until([&] { return swarm[1].ended && swarm[2].ended; }));
  EXPECT_EQ(swarm[1].error, ECONNRESET);
  EXPECT_EQ(swarm[2].error, ECONNRESET);
  EXPECT_EQ(server.errors.load(), 0);
}

TEST(PubSubTest, HeartbeatsReachEveryClientOnBothLoops) {
  PubSubConfig config;
  config.loops = kLoops;
  config.heartbeat = 20ms;
  PubSubServer server(config);
  ASSERT_TRUE(server.start());
  Swarm swarm;
  ASSERT_TRUE(swarm.connect(server.address(), 4));
  ASSERT_TRUE(swarm.pump_until([&] {
    for (std::size_t i = 0; i < swarm.size(); ++i) {
      if (swarm[i].heartbeats < 3) return false;
    }
    return true;
  }));
  for (std::size_t i = 0; i < swarm.size(); ++i) EXPECT_EQ(swarm[i].lines, "") << i;
}

TEST(PubSubTest, AClientThatSendsNothingIsClosedAsIdleOneThatPingsStays) {
  PubSubConfig config;
  config.loops = kLoops;
  // Not a multiple of the heartbeat: the idle close comes between two heartbeats. (One that
  // finds a heartbeat just written, in the same timer run, resets instead of a FIN: see below.)
  config.heartbeat = 25ms;
  config.idle_timeout = 410ms;
  PubSubServer server(config);
  ASSERT_TRUE(server.start());
  Swarm swarm;
  // One of each on each loop: 0 and 1 answer every heartbeat with PING, 2 and 3 stay silent.
  ASSERT_TRUE(swarm.connect(server.address(), 4));
  for (std::size_t i = 0; i < 2; ++i) {
    swarm[i].on_heartbeat = [&swarm, i](Swarm::Peer&) { swarm.send(i, "PING\n"); };
  }
  for (std::size_t i = 0; i < swarm.size(); ++i) {
    std::string acks;
    ASSERT_TRUE(subscribe(swarm, i, {"room"}, &acks));
  }
  ASSERT_TRUE(swarm.pump_until([&] { return swarm[2].ended && swarm[3].ended; }));
  // A FIN, or a reset if output was pending at that moment (a heartbeat written in the same
  // loop iteration: a loaded machine can run both timers late, together).
  for (std::size_t i = 2; i < 4; ++i) {
    EXPECT_TRUE(swarm[i].error == 0 || swarm[i].error == ECONNRESET) << swarm[i].error;
  }
  EXPECT_EQ(server.idle_closed.load(), 2);
  // The pinging ones outlive them by several heartbeats, still open.
  const long seen = swarm[0].heartbeats;
  ASSERT_TRUE(swarm.pump_until(
      [&] { return swarm[0].ended || swarm[1].ended || swarm[0].heartbeats >= seen + 10; }));
  EXPECT_FALSE(swarm[0].ended);
  EXPECT_FALSE(swarm[1].ended);
  EXPECT_EQ(server.idle_closed.load(), 2);
  EXPECT_EQ(server.errors.load(), 0);
}

TEST(PubSubTest, StopFromAnotherThreadSaysGoodbyeToEveryClientAndLeavesNoFd) {
  const std::size_t clients = clients_that_fit(kSanitized ? 100 : 300);
  ASSERT_GE(clients, 50u);
  {  // the first server and thread start what the process keeps (TSan's background thread)
    PubSubServer warm(PubSubConfig{});
    ASSERT_TRUE(warm.start());
    Client c(warm.address());
    ASSERT_TRUE(c.connected());
  }
  const FdAndThreadCounts before;
  {
    PubSubConfig config;
    config.loops = kLoops;
    config.heartbeat = 10ms;
    PubSubServer server(config);
    ASSERT_TRUE(server.start());
    Swarm swarm;
    ASSERT_TRUE(swarm.connect(server.address(), clients));
    std::vector<std::string> acks(swarm.size());
    for (std::size_t i = 1; i < swarm.size(); ++i) {
      ASSERT_TRUE(subscribe(swarm, i, {"room"}, &acks[i]));
    }
    ASSERT_TRUE(acks_arrive(swarm, acks, 1));
    // Messages still on their way when the stop comes: each subscriber gets a prefix of them,
    // in order, then BYE, then the end of the stream.
    std::string published;
    std::string burst;
    for (std::size_t k = 0; k < 200; ++k) {
      const std::string text = text_of(0, k, 50);
      burst += "PUB room " + text + "\n";
      published += "MSG room " + text + "\n";
    }
    ASSERT_TRUE(swarm.send(0, burst));
    std::thread stopper([&] { server.stop_with_goodbye(); });
    const bool all_ended = swarm.pump_until([&] {
      for (std::size_t i = 0; i < swarm.size(); ++i) {
        if (!swarm[i].ended) return false;
      }
      return true;
    });
    stopper.join();
    ASSERT_TRUE(all_ended);
    ASSERT_TRUE(server.wait());
    for (std::size_t i = 0; i < swarm.size(); ++i) {
      const Swarm::Peer& peer = swarm[i];
      EXPECT_EQ(peer.error, 0) << "client " << i << ": the stream ends with a FIN";
      std::string_view got = peer.lines;
      ASSERT_TRUE(got.starts_with(acks[i])) << i;
      got.remove_prefix(acks[i].size());
      ASSERT_TRUE(got.ends_with("BYE\n")) << "client " << i << " got: " << got.substr(0, 200);
      got.remove_suffix(4);
      EXPECT_TRUE(std::string_view(published).starts_with(got)) << "client " << i;
    }
    EXPECT_EQ(server.goodbyes.load(), static_cast<long>(clients));
    EXPECT_EQ(server.opened.load(), static_cast<long>(clients));
    EXPECT_EQ(server.closed.load(), server.opened.load());
    EXPECT_EQ(server.closed_twice.load(), 0);
    EXPECT_EQ(server.errors.load(), 0);
  }
  EXPECT_TRUE(counts_return_to(before));
}

}  // namespace
}  // namespace evloop::test
