#include "server_core.hpp"

#include "event_loop.hpp"
#include "listener.hpp"
#include "platform.hpp"

namespace evloop {
namespace detail {

ServerCore::ServerCore(Options options, Callbacks callbacks)
    : options_(std::move(options)),
      serving_(std::move(callbacks.serving)),
      default_profile_(std::make_shared<const Profile>(
          Profile{static_cast<Handlers&&>(callbacks), static_cast<const ConnOptions&>(options_)})),
      group_(static_cast<const LoopOptions&>(options_), static_cast<LoopHooks&&>(callbacks)) {}

Status ServerCore::check_not_started(const std::string& address) const {
  if (group_.running() || !group_.loops().empty()) {
    return {make_error_code(errc::already_started),
            "Server::listen(" + address + "): call it before start()"};
  }
  return {};
}

Status ServerCore::listen(std::string address, Handlers handlers, ConnOptions options) {
  if (Status s = check_not_started(address); !s) return s;
  auto profile = std::make_shared<const Profile>(Profile{std::move(handlers), options});
  extra_listens_.push_back({std::move(address), {}, std::move(profile), nullptr});
  return {};
}

Status ServerCore::listen_udp(std::string address, DatagramHandlers handlers, UdpOptions options) {
  if (Status s = check_not_started(address); !s) return s;
  auto profile = std::make_shared<const UdpProfile>(UdpProfile{std::move(handlers), options});
  extra_listens_.push_back({std::move(address), {}, nullptr, std::move(profile)});
  return {};
}

Status ServerCore::check_endpoint(Endpoint& ep) const {
  if (Status s = parse_listen_address(ep.text, ep.address); !s) return s;
  const bool udp = is_udp(ep.address.transport);
  if (udp && !ep.udp_profile) {
    return {make_error_code(errc::bad_address),
            "listen " + ep.text +
                ": a UDP address needs datagram handlers: add it with "
                "Server::listen_udp(address, DatagramHandlers, UdpOptions)"};
  }
  if (!udp && ep.udp_profile) {
    return {make_error_code(errc::bad_address),
            "listen " + ep.text + ": datagram handlers need a udp://, udp4:// or udp6:// address"};
  }
  if (udp) return validate(ep.udp_profile->options, "listen " + ep.text);
  return {};
}

Status ServerCore::open_bound(const Endpoint& ep) {
  const auto& loops = group_.loops();
  const ListenAddress& addr = ep.address;
  const bool udp = ep.udp_profile != nullptr;
  // Reuse-port only where the kernel balances it; otherwise one loop accepts and hands off (a UDP
  // address: loop 0 serves it alone).
  const bool per_loop = addr.transport != Transport::unix_socket && platform::kReuseportBalances &&
                        loops.size() > 1 && addr.reuseport.value_or(options_.reuseport);
  std::uint16_t port = addr.port;
  for (std::size_t i = 0; i < (per_loop ? loops.size() : 1); ++i) {
    OpenedListener opened;
    if (Status s = open_listener(addr, per_loop, port, opened); !s) return s;
    if (i == 0) {
      addresses_.push_back(opened.bound);
      urls_.push_back(udp ? opened.bound.to_udp_url() : opened.bound.to_url());
      port = opened.bound.port();  // the other loops bind the port the kernel chose
    }
    if (udp) {
      loops[i]->add_udp_socket(std::move(opened.fd), ep.udp_profile);
      continue;
    }
    auto listener = std::make_unique<Listener>(std::move(opened), ep.profile);
    listener->spreads = !per_loop && loops.size() > 1;
    listener->balance = options_.balance;
    if (Status s = loops[i]->add_listener(std::move(listener)); !s) return s;
  }
  return {};
}

Status ServerCore::open_listeners(const std::vector<Endpoint>& endpoints) {
  const auto& loops = group_.loops();
  for (const Endpoint& ep : endpoints) {
    const ListenAddress& addr = ep.address;
    if (addr.transport == Transport::inherited_fd) {
      // One socket: loop 0 accepts for all loops.
      OpenedListener opened;
      if (Status s = open_inherited_listener(addr, opened); !s) return s;
      addresses_.push_back(opened.bound);
      urls_.push_back(opened.bound.to_url());
      auto listener = std::make_unique<Listener>(std::move(opened), ep.profile);
      listener->inherited = true;
      listener->spreads = loops.size() > 1;
      listener->balance = options_.balance;
      if (Status s = loops[0]->add_listener(std::move(listener)); !s) return s;
      continue;
    }
    if (Status s = open_bound(ep); !s) return s;
  }
  return {};
}

Status ServerCore::start() {
  if (options_.listen.empty() && extra_listens_.empty()) {
    return {make_error_code(errc::no_address),
            "no listen address given (a program that only dials out can use a LoopGroup)"};
  }
  if (Status s = validate(options_, "options"); !s) return s;
  std::vector<Endpoint> endpoints;
  for (const std::string& text : options_.listen) {
    endpoints.push_back({text, {}, default_profile_, nullptr});
  }
  for (const Endpoint& ep : extra_listens_) {
    if (ep.profile) {
      if (Status s = validate(ep.profile->options, "listen " + ep.text); !s) return s;
    }
    endpoints.push_back(ep);
  }
  for (Endpoint& ep : endpoints) {
    if (Status s = check_endpoint(ep); !s) return s;
  }
  // Everything that can fail happens before any thread starts; on failure the loops (and with
  // them every fd opened so far, but for inherited ones, which stay the caller's) are destroyed.
  if (Status s = group_.open(); !s) return s;
  if (Status s = open_listeners(endpoints); !s) {
    for (const auto& loop : group_.loops()) loop->release_inherited_listeners();
    group_.discard();
    addresses_.clear();
    urls_.clear();
    return s;
  }
  if (serving_) {
    serving_(ServingInfo{addresses_, group_.loops().size(), group_.backend(), group_.backend_note(),
                         urls_});
  }
  return group_.start_threads();
}

}  // namespace detail

Server::Server(Options options, Callbacks callbacks)
    : core_(std::make_unique<detail::ServerCore>(std::move(options), std::move(callbacks))) {}

Server::~Server() = default;

Status Server::listen(std::string address, Handlers handlers, ConnOptions options) {
  return core_->listen(std::move(address), std::move(handlers), std::move(options));
}

Status Server::listen_udp(std::string address, DatagramHandlers handlers, UdpOptions options) {
  return core_->listen_udp(std::move(address), std::move(handlers), std::move(options));
}

Status Server::start() { return core_->start(); }

Status Server::run() {
  if (Status s = core_->start(); !s) return s;
  return core_->wait();
}

void Server::stop() noexcept { core_->stop(); }
Status Server::wait() { return core_->wait(); }
bool Server::running() const noexcept { return core_->running(); }
const std::vector<SocketAddress>& Server::addresses() const noexcept { return core_->addresses(); }
std::size_t Server::loop_count() const noexcept { return core_->group().loops().size(); }
Loop& Server::loop(std::size_t i) const { return core_->group().loops().at(i)->handle(); }

const char* Server::backend() const noexcept { return core_->group().backend(); }

std::vector<LoopStats> Server::stats() const {
  std::vector<LoopStats> out;
  for (const auto& loop : core_->group().loops()) out.push_back(loop->stats());
  return out;
}

}  // namespace evloop
