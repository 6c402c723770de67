#include "upgrade_successor.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <map>

#include "event_loop.hpp"
#include "evloop/upgrade.hpp"

namespace evloop::detail {
namespace {

using upgrade::Clock;
using upgrade::Frame;
using upgrade::FrameType;
using upgrade::PayloadReader;

// The predecessor writes its listening sockets as soon as it has started this process.
constexpr auto kHelloTimeout = std::chrono::seconds(10);
// How long a failed start waits to tell the predecessor why.
constexpr auto kReportTimeout = std::chrono::seconds(1);

Status failed(const std::string& why) {
  return {make_error_code(errc::upgrade_failed),
          std::string(kUpgradeFdVariable) + ": " + why +
              " (this process was started by a live "
              "upgrade: it takes its predecessor's sockets)"};
}

bool is_unix_stream_socket(int fd) {
  int type = 0;
  socklen_t len = sizeof type;
  return ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM &&
         local_address(fd).family() == AF_UNIX;
}

}  // namespace

bool UpgradeSuccessor::requested() { return std::getenv(kUpgradeFdVariable) != nullptr; }

Status UpgradeSuccessor::open() {
  const std::string value = std::getenv(kUpgradeFdVariable);
  ::unsetenv(kUpgradeFdVariable);  // a process this one starts is not a successor
  char* end = nullptr;
  const long fd = std::strtol(value.c_str(), &end, 10);
  if (value.empty() || *end != '\0' || fd < 0 || fd > (1 << 30)) {
    return failed("'" + value + "' is not a file descriptor");
  }
  if (!is_unix_stream_socket(static_cast<int>(fd))) {
    return failed("fd " + value + " is not a Unix stream socket");
  }
  control_ = UniqueFd(static_cast<int>(fd));
  ::fcntl(control_.get(), F_SETFD, FD_CLOEXEC);
  ::fcntl(control_.get(), F_SETFL, ::fcntl(control_.get(), F_GETFL) | O_NONBLOCK);
  reader_ = std::make_unique<upgrade::FrameReader>(control_.get());
  return read_listeners();
}

Status UpgradeSuccessor::read_listeners() {
  // hello frames: u32 total listeners, u32 in this frame, then per socket {u32 endpoint, u32 loop,
  // u32 flags (1: owns its Unix socket file), bytes listen address}, its fd attached.
  std::map<std::uint32_t, std::pair<std::string, Listeners>> by_endpoint;
  const auto deadline = Clock::now() + kHelloTimeout;
  std::uint32_t total = 1;
  for (std::uint32_t received = 0; received < total;) {
    Frame frame;
    if (const int e = reader_->next(frame, deadline)) {
      return failed("reading the listening sockets: " + std::string(std::strerror(e)));
    }
    PayloadReader in(frame.payload);
    std::uint32_t count = 0;
    if (frame.type != FrameType::hello || !in.u32(total) || !in.u32(count) ||
        count != frame.fds.size()) {
      return failed("the predecessor's first frame is not its listening sockets");
    }
    for (std::uint32_t i = 0; i < count; ++i, ++received) {
      std::uint32_t endpoint = 0, loop = 0, flags = 0;
      std::string text;
      if (!in.u32(endpoint) || !in.u32(loop) || !in.u32(flags) || !in.bytes(text)) {
        return failed("a malformed listening socket record");
      }
      auto& [address, listeners] = by_endpoint[endpoint];
      address = text;
      listeners.owns_unix_path = (flags & 1) != 0;
      listeners.fds.push_back(std::move(frame.fds[i]));  // sent in loop order
    }
  }
  for (auto& [endpoint, entry] : by_endpoint) listeners_.push_back(std::move(entry));
  return {};
}

bool UpgradeSuccessor::take_listeners(const std::string& text, Listeners& out) {
  for (auto& [address, listeners] : listeners_) {
    if (address != text || listeners.fds.empty()) continue;
    out = std::move(listeners);
    listeners.fds.clear();
    return true;
  }
  return false;
}

void UpgradeSuccessor::report_failure(const Status& status) {
  if (control_.get() >= 0) {
    upgrade::send_frame(control_.get(), FrameType::start_failed, status.message(), {},
                        Clock::now() + kReportTimeout);
  }
  listeners_.clear();
  close_control();
}

void UpgradeSuccessor::report_ready(const std::vector<std::unique_ptr<EventLoop>>& loops,
                                    std::vector<ProfilePtr> profiles) {
  listeners_.clear();
  std::string pid;
  upgrade::PayloadWriter(pid).u64(static_cast<std::uint64_t>(::getpid()));
  if (upgrade::send_frame(control_.get(), FrameType::ready, pid, {},
                          Clock::now() + kReportTimeout) != 0) {
    return close_control();  // the predecessor is gone: this process serves on without it
  }
  std::vector<EventLoop*> targets;
  for (const auto& loop : loops) targets.push_back(loop.get());
  receiver_ = std::thread([this, targets = std::move(targets), profiles = std::move(profiles)] {
    receive(targets, profiles);
  });
}

void UpgradeSuccessor::receive(std::vector<EventLoop*> loops, std::vector<ProfilePtr> profiles) {
  Frame frame;
  // Until `done`, the predecessor's exit (end of stream) or stop() (which shuts the socket down).
  while (reader_->next(frame, Clock::time_point::max()) == 0 &&
         frame.type == FrameType::connections && adopt_batch(frame, loops, profiles)) {
  }
  close_control();
}

bool UpgradeSuccessor::adopt_batch(Frame& frame, const std::vector<EventLoop*>& loops,
                                   const std::vector<ProfilePtr>& profiles) {
  // connections: u32 count, then per connection {u32 profile, u32 loop, bytes peer (a
  // sockaddr), bytes input, bytes output, bytes state}, its fd attached.
  PayloadReader in(frame.payload);
  std::uint32_t count = 0;
  if (!in.u32(count) || count != frame.fds.size()) return false;
  for (std::uint32_t i = 0; i < count; ++i) {
    std::uint32_t profile = 0, loop = 0;
    std::string peer, input, output;
    MovedState moved;
    if (!in.u32(profile) || !in.u32(loop) || !in.bytes(peer) || !in.bytes(input) ||
        !in.bytes(output) || !in.bytes(moved.state)) {
      return false;  // the fds left in the frame close with it
    }
    // A profile this Server lacks (a Server::listen() it no longer makes): nothing here could
    // speak to that peer; its fd closes.
    if (profile >= profiles.size()) continue;
    moved.peer = SocketAddress(peer.data(), peer.size());
    loops[loop % loops.size()]->adopt(frame.fds[i].release(), profiles[profile], std::move(input),
                                      std::move(output), std::move(moved));
  }
  return in.finished();
}

void UpgradeSuccessor::close_control() {
  std::lock_guard lock(mutex_);
  control_.reset();
}

void UpgradeSuccessor::finish_receiving() {
  std::lock_guard lock(join_mutex_);
  if (receiver_.joinable()) receiver_.join();
}

void UpgradeSuccessor::stop() {
  {
    std::lock_guard lock(mutex_);
    if (control_.get() >= 0) ::shutdown(control_.get(), SHUT_RDWR);  // wakes the receiver
  }
  finish_receiving();
}

}  // namespace evloop::detail
