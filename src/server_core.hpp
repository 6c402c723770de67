// Internal. The server behind evloop::Server: a loop group plus listeners. Validates the
// options, binds every listener (per loop with reuse-port), gives each its connections' profile.
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
  Status start();
  void stop() noexcept { group_.stop(); }
  Status wait() { return group_.wait(); }
  bool running() const noexcept { return group_.running(); }
  const std::vector<SocketAddress>& addresses() const noexcept { return addresses_; }
  LoopGroupCore& group() noexcept { return group_; }
  const LoopGroupCore& group() const noexcept { return group_; }

 private:
  // One listen address and the profile of the connections it accepts.
  struct Endpoint {
    std::string text;
    ListenAddress address;
    ProfilePtr profile;
  };

  Status open_listeners(const std::vector<Endpoint>& endpoints);

  Options options_;
  std::function<void(const ServingInfo&)> serving_;
  ProfilePtr default_profile_;
  std::vector<std::pair<std::string, ProfilePtr>> extra_listens_;  // Server::listen()
  LoopGroupCore group_;
  std::vector<SocketAddress> addresses_;
};

}  // namespace evloop::detail
