// Many line-protocol clients driven by one test thread with poll(): hundreds of subscribers
// without a thread each. Each client's lines are split as they arrive: heartbeats are counted,
// every other line is kept, in order, byte for byte.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "test_support.hpp"

namespace evloop::test {

class Swarm {
 public:
  struct Peer {
    Client client;
    std::string partial;                      ///< bytes of a line not complete yet
    std::string lines;                        ///< every complete line but `HB`, with its `\n`
    long heartbeats = 0;                      ///< `HB` lines
    bool ended = false;                       ///< EOF or an error
    int error = 0;                            ///< the errno that ended it (0: EOF)
    bool reading = true;                      ///< false: never read (a slow consumer)
    std::function<void(Peer&)> on_heartbeat;  ///< called for each `HB`
  };

  /// Connects `n` more clients; false (with what failed) if one could not connect.
  ::testing::AssertionResult connect(const SocketAddress& addr, std::size_t n, int rcvbuf = 0);
  std::size_t size() const { return peers_.size(); }
  Peer& operator[](std::size_t i) { return peers_[i]; }
  /// Sends all of `bytes` from client `i` (blocking, bounded by the socket's send timeout).
  bool send(std::size_t i, const std::string& bytes);
  /// Reads what arrives on every reading client until `done()` holds; false on timeout.
  bool pump_until(const std::function<bool()>& done, std::chrono::milliseconds timeout = kWait);

 private:
  void read_from(Peer& peer);
  std::vector<Peer> peers_;
};

}  // namespace evloop::test
