// Internal. The server behind evloop::Server: a loop group plus listeners and UDP sockets.
// Validates the options, binds every listener and UDP socket (per loop with reuse-port), gives
// each its profile.
#pragma once

#include <string>
#include <vector>

#include "evloop/server.hpp"
#include "loop_group_core.hpp"
#include "profile.hpp"

namespace evloop::detail {

class ServerCore {
 public:
  ServerCore(Options options, Callbacks callbacks);

  Status listen(std::string address, Handlers handlers, ConnOptions options);
  Status listen_udp(std::string address, DatagramHandlers handlers, UdpOptions options);
  Status start();
  void stop() noexcept { group_.stop(); }
  Status wait() { return group_.wait(); }
  bool running() const noexcept { return group_.running(); }
  const std::vector<SocketAddress>& addresses() const noexcept { return addresses_; }
  LoopGroupCore& group() noexcept { return group_; }
  const LoopGroupCore& group() const noexcept { return group_; }

 private:
  // One listen address and the profile of the connections it accepts, or of its UDP sockets.
  struct Endpoint {
    std::string text;
    ListenAddress address;
    ProfilePtr profile;         // TCP and Unix
    UdpProfilePtr udp_profile;  // UDP
  };

  Status check_not_started(const std::string& address) const;
  Status check_endpoint(Endpoint& ep) const;
  Status open_listeners(const std::vector<Endpoint>& endpoints);
  // A TCP, Unix or UDP address: its socket, or one per loop with reuse-port.
  Status open_bound(const Endpoint& ep);

  Options options_;
  std::function<void(const ServingInfo&)> serving_;
  ProfilePtr default_profile_;
  std::vector<Endpoint> extra_listens_;  // Server::listen()
  LoopGroupCore group_;
  std::vector<SocketAddress> addresses_;
  std::vector<std::string> urls_;
};

}  // namespace evloop::detail
