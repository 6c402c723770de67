#include "server_core.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include "event_loop.hpp"
#include "listener.hpp"
#include "platform.hpp"
#include "timeouts.hpp"
#include "upgrade_predecessor.hpp"

namespace evloop {
namespace detail {

ServerCore::ServerCore(Options options, Callbacks callbacks)
    : options_(std::move(options)),
      serving_(std::move(callbacks.serving)),
      profiles_{make_profile(static_cast<Handlers&&>(callbacks),
                             static_cast<const ConnOptions&>(options_))},
      group_(static_cast<const LoopOptions&>(options_), static_cast<LoopHooks&&>(callbacks)) {
  for (const std::string& text : options_.listen) endpoints_.push_back({text, {}, 0, nullptr});
}

ServerCore::~ServerCore() = default;

Status ServerCore::check_not_started(const char* call, const std::string& address) const {
  if (group_.running() || !group_.loops().empty()) {
    return {make_error_code(errc::already_started),
            std::string(call) + "(" + address + "): call it before start()"};
  }
  return {};
}

Status ServerCore::listen(std::string address, Handlers handlers, ConnOptions options) {
  if (Status s = check_not_started("Server::listen", address); !s) return s;
  profiles_.push_back(make_profile(std::move(handlers), std::move(options)));
  endpoints_.push_back({std::move(address), {}, profiles_.size() - 1, nullptr});
  return {};
}

Status ServerCore::listen_udp(std::string address, DatagramHandlers handlers, UdpOptions options) {
  if (Status s = check_not_started("Server::listen_udp", address); !s) return s;
  auto profile = std::make_shared<const UdpProfile>(UdpProfile{std::move(handlers), options});
  endpoints_.push_back({std::move(address), {}, 0, std::move(profile)});
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

void ServerCore::add_address(const SocketAddress& bound, bool udp) {
  addresses_.push_back(bound);
  urls_.push_back(udp ? bound.to_udp_url() : bound.to_url());
}

Status ServerCore::add_listener(std::size_t loop, std::size_t endpoint, OpenedListener opened,
                                bool spreads, Owner owner) {
  auto listener =
      std::make_unique<Listener>(std::move(opened), profiles_[endpoints_[endpoint].profile]);
  listener->endpoint = endpoint;
  listener->inherited = owner == Owner::caller;
  listener->handed_over = owner == Owner::predecessor;
  listener->shared = owner != Owner::server;
  listener->spreads = spreads;
  listener->balance = options_.balance;
  return group_.loops()[loop]->add_listener(std::move(listener));
}

Status ServerCore::bind_endpoint(std::size_t index) {
  const Endpoint& ep = endpoints_[index];
  const ListenAddress& addr = ep.address;
  const auto& loops = group_.loops();
  // Reuse-port only where the kernel balances it; otherwise one loop accepts and hands off (a UDP
  // address: loop 0 serves it alone).
  const bool per_loop = addr.transport != Transport::unix_socket && platform::kReuseportBalances &&
                        loops.size() > 1 && addr.reuseport.value_or(options_.reuseport);
  std::uint16_t port = addr.port;
  for (std::size_t i = 0; i < (per_loop ? loops.size() : 1); ++i) {
    OpenedListener opened;
    if (Status s = open_listener(addr, per_loop, port, opened); !s) return s;
    if (i == 0) {
      add_address(opened.bound, ep.udp_profile != nullptr);
      port = opened.bound.port();  // the other loops bind the port the kernel chose
    }
    if (ep.udp_profile) {
      if (Status s = loops[i]->add_udp_socket(std::move(opened.fd), ep.udp_profile, index); !s) {
        return {s.code(), "listen " + ep.text + ": " + s.message()};
      }
      continue;
    }
    const bool spreads = !per_loop && loops.size() > 1;
    if (Status s = add_listener(i, index, std::move(opened), spreads, Owner::server); !s) return s;
  }
  return {};
}

// Listening sockets this process did not bind: each group bound to one address (one socket, or
// one per loop with reuse-port) is spread over the loops by place_inherited(). `owner` says whose
// they are if start() fails.
Status ServerCore::serve_inherited(std::size_t index, const std::vector<int>& fds, Owner owner,
                                   bool owns_unix_path) {
  std::vector<int> taken;  // held by a listener (which closes it, or not, as `owner` says)
  const Status s = add_inherited(index, fds, owner, owns_unix_path, taken);
  if (!s && owner != Owner::caller) {
    for (const int fd : fds) {
      if (std::find(taken.begin(), taken.end(), fd) == taken.end()) ::close(fd);
    }
  }
  return s;
}

Status ServerCore::add_inherited(std::size_t index, const std::vector<int>& fds, Owner owner,
                                 bool owns_unix_path, std::vector<int>& taken) {
  std::vector<InheritedSocket> sockets;
  for (const int fd : fds) {
    InheritedSocket socket{fd, {}};
    if (Status s = check_inherited_listener(fd, endpoints_[index].text, socket.bound); !s) return s;
    sockets.push_back(socket);
  }
  const std::size_t loops = group_.loops().size();
  for (const auto& group : group_by_address(sockets)) {
    add_address(group.front().bound, false);
    for (std::size_t i = 0; i < group.size(); ++i) {
      const Placement place = place_inherited(i, group.size(), loops);
      OpenedListener opened{UniqueFd(group[i].fd), group[i].bound, {}};
      if (owns_unix_path) opened.unix_path = UnixPathOwner::of(opened.bound);
      taken.push_back(group[i].fd);
      if (Status s = add_listener(place.loop, index, std::move(opened), place.spreads, owner); !s) {
        return s;
      }
    }
  }
  return {};
}

// A live upgrade's predecessor's UDP sockets for one address (one per loop of its with
// reuse-port): spread over this process's loops in order.
Status ServerCore::serve_handed_udp(std::size_t index, std::vector<UniqueFd>& fds) {
  const Endpoint& ep = endpoints_[index];
  const auto& loops = group_.loops();
  for (std::size_t i = 0; i < fds.size(); ++i) {
    int type = 0;
    socklen_t len = sizeof type;
    if (::getsockopt(fds[i].get(), SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_DGRAM) {
      return {make_error_code(errc::bad_address),
              "listen " + ep.text + ": the predecessor handed over a socket that is not UDP"};
    }
    if (i == 0) add_address(local_address(fds[i].get()), true);
    if (Status s =
            loops[i % loops.size()]->add_udp_socket(std::move(fds[i]), ep.udp_profile, index);
        !s) {
      return {s.code(), "listen " + ep.text + ": " + s.message()};
    }
  }
  return {};
}

Status ServerCore::select_systemd(const Endpoint& endpoint, std::vector<int>& fds) {
  if (Status s = select_systemd_sockets(endpoint.address, fds); !s) return s;
  for (const int fd : fds) {
    if (std::find(systemd_fds_.begin(), systemd_fds_.end(), fd) != systemd_fds_.end()) {
      return {make_error_code(errc::bad_address),
              "listen " + endpoint.text + ": systemd socket fd " + std::to_string(fd) +
                  " is already served by another listen address of this server"};
    }
  }
  systemd_fds_.insert(systemd_fds_.end(), fds.begin(), fds.end());
  return {};
}

Status ServerCore::open_endpoint(std::size_t index) {
  const Endpoint& ep = endpoints_[index];
  // A live upgrade's successor serves each address with its predecessor's sockets (matched by
  // the address as written: fd://N and systemd:// mean nothing in this process any more).
  UpgradeSuccessor::Listeners handed;
  if (successor_ && successor_->take_listeners(ep.text, handed)) {
    if (ep.udp_profile) return serve_handed_udp(index, handed.fds);
    std::vector<int> fds;
    for (UniqueFd& fd : handed.fds) fds.push_back(fd.release());
    return serve_inherited(index, fds, Owner::predecessor, handed.owns_unix_path);
  }
  switch (ep.address.transport) {
    case Transport::inherited_fd:
      return serve_inherited(index, {ep.address.fd}, Owner::caller, false);
    case Transport::systemd: {
      std::vector<int> fds;
      if (Status s = select_systemd(ep, fds); !s) return s;
      return serve_inherited(index, fds, Owner::caller, false);
    }
    default:
      return bind_endpoint(index);
  }
}

Status ServerCore::open_listeners() {
  for (std::size_t i = 0; i < endpoints_.size(); ++i) {
    if (Status s = open_endpoint(i); !s) return s;
  }
  return {};
}

Status ServerCore::fail_start(Status status) {
  if (successor_) successor_->report_failure(status);
  successor_.reset();
  return status;
}

Status ServerCore::abandon_start(Status status) {
  // What the loops hold but this server does not own goes back untouched: inherited fds stay
  // open (the caller's), a predecessor's Unix socket file stays (it serves it).
  for (const auto& loop : group_.loops()) loop->release_borrowed_listeners();
  group_.discard();
  addresses_.clear();
  urls_.clear();
  systemd_fds_.clear();
  return fail_start(std::move(status));
}

Status ServerCore::start() {
  if (group_.running() || group_.stopping() || !group_.loops().empty()) {
    return group_.open();  // already_started (or stopped before start)
  }
  // A successor learns it is one first, so that any failure below reaches its predecessor.
  if (UpgradeSuccessor::requested()) {
    successor_ = std::make_unique<UpgradeSuccessor>();
    if (Status s = successor_->open(); !s) return fail_start(s);
    group_.lend_handed_unix_files(true);  // until the handover has ended (upgrade_successor.cpp)
  }
  if (endpoints_.empty()) {
    return fail_start({make_error_code(errc::no_address),
                       "no listen address given (a program that only dials out can use a "
                       "LoopGroup)"});
  }
  if (Status s = validate(options_, "options"); !s) return fail_start(s);
  for (std::size_t i = 1; i < profiles_.size(); ++i) {
    const auto it = std::find_if(endpoints_.begin(), endpoints_.end(),
                                 [i](const Endpoint& ep) { return ep.profile == i; });
    if (Status s = validate(profiles_[i]->options, "listen " + it->text); !s) return fail_start(s);
  }
  for (Endpoint& ep : endpoints_) {
    if (Status s = check_endpoint(ep); !s) return fail_start(s);
  }
  // Everything that can fail happens before any thread starts; on failure the loops (and with
  // them every fd opened so far, but for inherited ones, which stay the caller's) are destroyed.
  if (Status s = group_.open(); !s) return fail_start(s);
  if (Status s = open_listeners(); !s) return abandon_start(s);
  if (serving_) {
    serving_(ServingInfo{addresses_, group_.loops().size(), successor_ != nullptr, group_.backend(),
                         group_.backend_note(), urls_});
  }
  if (successor_) {
    if (Status s = successor_->start_receiver(group_.loops(), profiles_); !s) {
      return abandon_start(s);
    }
  }
  if (Status s = group_.start_threads(); !s) return abandon_start(s);
  claim_systemd_sockets(systemd_fds_);
  if (successor_) {
    if (group_.stopping()) {
      // Stopped already (from `serving`, say): connections handed over now would only fail.
      // The predecessor learns so and serves on with them.
      successor_->report_failure(
          {make_error_code(errc::server_stopped), "the successor was stopped as it started"});
    } else {
      successor_->report_ready(group_.loops());
    }
  }
  return {};
}

bool ServerCore::on_loop_thread() const { return group_.on_loop_thread(); }

Status ServerCore::wait() {
  Status status = group_.wait();
  // After the loops: adoptions still arriving are refused.
  if (successor_) {
    successor_->stop();
    group_.settle_lent_unix_files();
  }
  return status;
}

Status ServerCore::upgrade(const UpgradeOptions& options, UpgradeReport* report) {
  if (on_loop_thread()) {
    return {make_error_code(errc::upgrade_failed),
            "upgrade: called on a loop thread, which the handover needs: call it from another "
            "thread"};
  }
  if (!group_.running() || group_.stopping()) {
    return {make_error_code(errc::upgrade_failed), "upgrade: the server is not running"};
  }
  if (Status s = check_upgrade_options(options); !s) return s;
  int expected = idle;
  if (!upgrade_state_.compare_exchange_strong(expected, upgrading)) {
    return {make_error_code(errc::upgrade_in_progress),
            expected == upgrading ? "upgrade: another upgrade is in progress"
                                  : "upgrade: this server already handed over to a successor"};
  }
  // A successor upgraded at once: what its predecessor is still handing over moves on too. A
  // predecessor that takes longer than ready_timeout (stuck, say) fails this upgrade instead of
  // blocking it: nothing has changed, and a later one may succeed.
  if (successor_ && !successor_->finish_receiving(capped(options.ready_timeout))) {
    upgrade_state_.store(idle);
    return {make_error_code(errc::upgrade_failed),
            "upgrade: this process's predecessor has not finished handing its connections over "
            "within ready_timeout (" +
                std::to_string(options.ready_timeout.count()) +
                " ms); nothing changed: try again once it has"};
  }
  std::vector<std::string> texts;
  for (const Endpoint& ep : endpoints_) texts.push_back(ep.text);
  UpgradeReport done;
  Status s = hand_over(UpgradeSource{group_, texts, profiles_}, options, done);
  upgrade_state_.store(s ? handed_over : idle);
  if (s && report != nullptr) *report = done;
  return s;
}

}  // namespace detail

Server::Server(Options options, Callbacks callbacks)
    : core_(std::make_unique<detail::ServerCore>(std::move(options), std::move(callbacks))) {}

Server::~Server() {
  core_->group().require_off_loop_threads("Server::~Server",
                                          detail::LoopGroupCore::kDestroyOffLoopThreads);
}

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
Status Server::wait() {
  core_->group().require_off_loop_threads("Server::wait",
                                          detail::LoopGroupCore::kWaitOffLoopThreads);
  return core_->wait();
}
bool Server::running() const noexcept { return core_->running(); }
Status Server::upgrade(const UpgradeOptions& options, UpgradeReport* report) {
  return core_->upgrade(options, report);
}
const std::vector<SocketAddress>& Server::addresses() const noexcept { return core_->addresses(); }
std::size_t Server::loop_count() const noexcept { return core_->group().loops().size(); }
Loop& Server::loop(std::size_t i) const { return core_->group().handle(i, "Server::loop"); }

const char* Server::backend() const noexcept { return core_->group().backend(); }

std::vector<LoopStats> Server::stats() const {
  std::vector<LoopStats> out;
  for (const auto& loop : core_->group().loops()) out.push_back(loop->stats());
  return out;
}

}  // namespace evloop
