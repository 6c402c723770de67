// Internal. The server behind evloop::Server: a loop group plus listeners and UDP sockets.
// Validates the options, opens every listener and UDP socket (bound here, per loop with
// reuse-port; or inherited: fd://, systemd://, or from a live upgrade's predecessor), gives each
// its profile, and runs a live upgrade (upgrade_predecessor.hpp) when asked.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "evloop/server.hpp"
#include "inherited_listeners.hpp"
#include "loop_group_core.hpp"
#include "profile.hpp"
#include "upgrade_successor.hpp"

namespace evloop::detail {

class ServerCore {
 public:
  ServerCore(Options options, Callbacks callbacks);
  ~ServerCore();

  Status listen(std::string address, Handlers handlers, ConnOptions options);
  Status listen_udp(std::string address, DatagramHandlers handlers, UdpOptions options);
  Status start();
  void stop() noexcept { group_.stop(); }
  Status wait();
  bool running() const noexcept { return group_.running(); }
  Status upgrade(const UpgradeOptions& options, UpgradeReport* report);
  const std::vector<SocketAddress>& addresses() const noexcept { return addresses_; }
  LoopGroupCore& group() noexcept { return group_; }
  const LoopGroupCore& group() const noexcept { return group_; }

 private:
  // One listen address and the profile of the connections it accepts (an index in profiles_), or
  // of its UDP sockets.
  struct Endpoint {
    std::string text;
    ListenAddress address;
    std::size_t profile = 0;    // TCP and Unix
    UdpProfilePtr udp_profile;  // UDP
  };
  // Whose a listening socket is if start() fails: the caller's stays open; the server's closes
  // (with its Unix socket file); a live upgrade's predecessor's closes, its file left in place.
  enum class Owner { caller, server, predecessor };

  Status check_not_started(const char* call, const std::string& address) const;
  Status check_endpoint(Endpoint& ep) const;
  Status open_listeners();
  Status open_endpoint(std::size_t index);
  // A TCP, Unix or UDP address: its socket, or one per loop with reuse-port.
  Status bind_endpoint(std::size_t index);
  Status select_systemd(const Endpoint& endpoint, std::vector<int>& fds);
  Status serve_handed_udp(std::size_t index, std::vector<UniqueFd>& fds);
  Status serve_inherited(std::size_t index, const std::vector<int>& fds, Owner owner,
                         bool owns_unix_path);
  Status add_inherited(std::size_t index, const std::vector<int>& fds, Owner owner,
                       bool owns_unix_path, std::vector<int>& taken);
  Status add_listener(std::size_t loop, std::size_t endpoint, OpenedListener opened, bool spreads,
                      Owner owner);
  void add_address(const SocketAddress& bound, bool udp);
  Status fail_start(Status status);
  // start() failed once the loops exist: gives back what they hold but the server does not own,
  // destroys them, and forgets the addresses reported; then fail_start().
  Status abandon_start(Status status);
  bool on_loop_thread() const;  // called on one of this server's loop threads

  Options options_;
  std::function<void(const ServingInfo&)> serving_;
  std::vector<ProfilePtr> profiles_;  // [0]: options_/callbacks; then one per Server::listen()
  std::vector<Endpoint> endpoints_;   // Options::listen, then Server::listen()/listen_udp()
  LoopGroupCore group_;
  std::vector<SocketAddress> addresses_;
  std::vector<std::string> urls_;
  std::vector<int> systemd_fds_;  // served from systemd's sockets: claimed once start() succeeds
  std::unique_ptr<UpgradeSuccessor> successor_;  // set when a live upgrade started this process
  enum UpgradeState : int { idle, upgrading, handed_over };
  std::atomic<int> upgrade_state_{idle};
};

}  // namespace evloop::detail
