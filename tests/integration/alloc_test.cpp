// The hot path allocates nothing per message: after a warm-up, a steady echo (TCP, or UDP) makes
// no heap allocation on the loop thread. This binary replaces the global operator new
// (counting_new.hpp) to count allocations made by threads that opted in (only the loop thread
// does).
#include "counting_new.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "test_support.hpp"

namespace evloop::test {
namespace {

void set_counting(Server& server, bool on) {
  EventCounter done;
  server.loop(0).post([&] {
    t_counting = on;
    done.add();
  });
  ASSERT_TRUE(done.wait_for(1));
}

// Queues at least `bytes` of output on `conn` at once, from the loop thread, then reads it all
// back: afterwards the loop's chunk pool holds at least that much. How much of an echo the kernel
// does not take (and the pool must hold) depends on socket-buffer autotuning and memory pressure,
// so a warm-up of echoes alone can leave the pool short of what a later echo needs.
void fill_chunk_pool(Server& server, const ConnRef& conn, Client& client, std::size_t bytes) {
  const std::string block = pattern(64 * 1024, 3);
  std::size_t written = 0;
  EventCounter done;
  server.loop(0).post([&] {
    // The kernel takes a bounded amount (its socket buffers); 1 GiB is far beyond it.
    while (conn.get()->output_pending() < bytes && written < (std::size_t{1} << 30)) {
      conn.get()->write(block);
      written += block.size();
    }
    done.add();
  });
  ASSERT_TRUE(done.wait_for(1));
  ASSERT_EQ(client.read_exactly(written).size(), written);
}

TEST(AllocTest, SteadyEchoAllocatesNothingPerMessageOnTheLoopThread) {
  ConnRef conn;
  EventCounter opened;
  Callbacks cb;
  cb.opened = [&](Conn& c) {
    conn = c.ref();
    opened.add();
  };
  cb.data = [](Conn& c, std::string_view bytes) {
    c.write(bytes);
    return bytes.size();
  };
  RunningServer s(loopback_options(), cb);
  ASSERT_TRUE(s.status);
  Client client(s.address());
  ASSERT_TRUE(opened.wait_for(1));
  const std::string small = pattern(64), large = pattern(200 * 1024);
  auto round_trip = [&](const std::string& msg) {
    ASSERT_TRUE(client.send_all(msg));
    ASSERT_EQ(client.read_exactly(msg.size()), msg);
  };
  for (int i = 0; i < 50; ++i) round_trip(i % 10 == 0 ? large : small);  // warm-up
  // At most one echo is pending at a time (the client reads it whole before sending again): a
  // pool with room for more than a large one, plus a chunk it only partly fills, suffices.
  fill_chunk_pool(s.server, conn, client, large.size() + 2 * 16 * 1024);
  set_counting(s.server, true);
  for (int i = 0; i < 2000; ++i) round_trip(i % 100 == 0 ? large : small);
  set_counting(s.server, false);
  EXPECT_EQ(g_counted_allocations.load(), 0);
}

// A broadcast of a shared buffer to 200 connections: after a warm-up, no allocation on the loop
// thread (the pieces that reference the buffer come from the loop's pool) and no copy.
TEST(AllocTest, BroadcastOfASharedBufferAllocatesNothingPerConnection) {
  constexpr int kClients = 200;
  std::vector<ConnRef> refs;  // loop thread only until every client is open
  EventCounter opened;
  Callbacks cb;
  cb.opened = [&](Conn& c) {
    refs.push_back(c.ref());
    opened.add();
  };
  RunningServer s(loopback_options(), cb);
  ASSERT_TRUE(s.status);
  std::vector<Client> clients;
  for (int i = 0; i < kClients; ++i) clients.emplace_back(s.address());
  ASSERT_TRUE(opened.wait_for(kClients));
  const SharedBuffer news(pattern(1024, 7));
  auto broadcast = [&] {
    EventCounter done;
    s.server.loop(0).post([&] {
      for (const ConnRef& ref : refs) ref.get()->write(news);
      done.add();
    });
    ASSERT_TRUE(done.wait_for(1));
    for (auto& c : clients) ASSERT_EQ(c.read_exactly(1024), news.view());
  };
  broadcast();  // warm-up: fills the pool of pieces
  set_counting(s.server, true);
  for (int i = 0; i < 10; ++i) broadcast();
  set_counting(s.server, false);
  EXPECT_EQ(g_counted_allocations.load(), 0);
  EXPECT_TRUE(settle(s.server));
  EXPECT_EQ(total_stats(s.server).bytes_copied, 0u);
}

TEST(AllocTest, SteadyUdpEchoAllocatesNothingPerDatagramOnTheLoopThread) {
  Server server(Options{}, Callbacks{});
  DatagramHandlers h;
  h.datagram = [](Udp& udp, const SocketAddress& peer, std::string_view bytes) {
    udp.send_to(peer, bytes);
  };
  ASSERT_TRUE(server.listen_udp("udp4://127.0.0.1:0", h));
  ASSERT_TRUE(server.start());
  UdpPeer peer;
  const std::string small = pattern(64), large = pattern(9000);
  auto round_trip = [&](const std::string& msg) {
    ASSERT_TRUE(peer.send_to(server.addresses()[0], msg));
    ASSERT_EQ(peer.receive().value_or(""), msg);
  };
  for (int i = 0; i < 50; ++i) round_trip(i % 10 == 0 ? large : small);  // warm-up
  set_counting(server, true);
  for (int i = 0; i < 2000; ++i) round_trip(i % 100 == 0 ? large : small);
  set_counting(server, false);
  EXPECT_EQ(g_counted_allocations.load(), 0);
  server.stop();
  server.wait();
}

}  // namespace
}  // namespace evloop::test
