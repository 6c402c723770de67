// A pub/sub chat server written against evloop's public API only, as a push or chat server's
// author would: long-lived connections over TCP, rooms, a broadcast to every subscriber across
// the loops, a slow-consumer policy, heartbeats, idle timeouts and a goodbye on stop. The tests in
// pubsub_test.cpp drive it with real sockets.
//
// Protocol, one line each (`\n`):
//   client -> server   SUB <room>          subscribe; answered `OK <room>`
//                      PUB <room> <text>   every subscriber of <room> gets `MSG <room> <text>`
//                      PING                activity only (keeps the connection from going idle)
//   server -> client   HB                  heartbeat, every PubSubConfig::heartbeat
//                      BYE                 the server is stopping; the connection ends after it
//
// Each loop keeps its own room table, touched only on its own thread. A PUB is turned into one
// SharedBuffer; the publisher's loop writes it to its own subscribers, and posts it once to every
// other loop, which writes it to its subscribers: one post per loop per message, not one per
// subscriber, and the bytes are held once whatever the number of subscribers.
#pragma once

#include <evloop/evloop.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace evloop::test {

struct PubSubConfig {
  unsigned loops = 2;
  /// Interval of the `HB` line to every connection; zero: none.
  std::chrono::milliseconds heartbeat{0};
  /// ConnOptions::idle_timeout: a client that sends nothing for this long is closed.
  std::chrono::milliseconds idle_timeout{0};
  /// A subscriber whose pending output would pass this is cut off (reset), counted in
  /// `cut_off`: it falls behind the room, and its backlog would otherwise grow with every message.
  std::size_t slow_bound = 4 * 1024 * 1024;
  /// ConnOptions::socket_send_buffer (0: the kernel's).
  int socket_send_buffer = 0;
};

class PubSubServer {
 public:
  explicit PubSubServer(PubSubConfig config);
  ~PubSubServer();
  PubSubServer(const PubSubServer&) = delete;
  PubSubServer& operator=(const PubSubServer&) = delete;

  Status start();
  const SocketAddress& address() const { return server_.addresses().at(0); }
  Server& server() { return server_; }

  /// From any thread that is not a loop's: every connection gets `BYE`, then the server stops.
  void stop_with_goodbye();
  Status wait() { return server_.wait(); }

  // What happened, readable from any thread.
  std::atomic<long> opened{0};
  std::atomic<long> closed{0};
  std::atomic<long> closed_twice{0};        ///< `closed` for an id already closed (or never opened)
  std::atomic<long> cut_off{0};             ///< subscribers reset by the slow-consumer policy
  std::atomic<long> idle_closed{0};         ///< `closed` with errc::idle_timeout
  std::atomic<long> errors{0};              ///< `closed` with another error than those expected
  std::atomic<long> remote_posts{0};        ///< messages posted to another loop
  std::atomic<std::size_t> max_pending{0};  ///< largest output_pending() seen before a write
  std::atomic<long> goodbyes{0};            ///< BYE lines written

 private:
  struct Session {
    std::vector<std::string> rooms;
  };
  // One per loop, touched only on that loop's thread.
  struct LoopState {
    std::unordered_map<std::string, std::unordered_set<Conn*>> rooms;
    std::unordered_set<Conn*> all;
    bool saying_goodbye = false;
  };

  Callbacks callbacks();
  std::size_t on_data(Conn& c, std::string_view bytes);
  void on_line(Conn& c, std::string_view line);
  void publish(Conn& c, std::string_view room, std::string_view text);
  void deliver(LoopState& state, const std::string& room, const SharedBuffer& message);
  void send(Conn& c, const SharedBuffer& message);
  void say_goodbye(Loop& loop);
  void on_closed(Conn& c, std::error_code error);

  PubSubConfig config_;
  std::vector<LoopState> loops_;
  SharedBuffer heartbeat_{std::string("HB\n")};
  SharedBuffer goodbye_{std::string("BYE\n")};
  std::mutex ids_mutex_;
  std::set<std::uint64_t> open_ids_;
  Server server_;
};

}  // namespace evloop::test
