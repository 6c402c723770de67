#include "upgrade_successor.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>

#include "event_loop.hpp"
#include "evloop/upgrade.hpp"
#include "loop_group_core.hpp"
#include "sys_error.hpp"

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
  const char* variable = std::getenv(kUpgradeFdVariable);
  const std::string value = variable != nullptr ? variable : "";  // unset since requested()
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
  // u32 flags (1: owns its Unix socket file; 2: reads answers), bytes listen address}, its fd
  // attached.
  std::map<std::uint32_t, std::pair<std::string, Listeners>> by_endpoint;
  const auto deadline = Clock::now() + kHelloTimeout;
  std::uint32_t total = 1;
  for (std::uint32_t received = 0; received < total;) {
    Frame frame;
    if (const int e = reader_->next(frame, deadline)) {
      return failed("reading the listening sockets: " + sys_error(e).message());
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
      listeners.owns_unix_path = (flags & upgrade::kOwnsUnixPath) != 0;
      answers_ = (flags & upgrade::kReadsAnswers) != 0;
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
  set_gate(Gate::shut);
  if (control_.get() >= 0) {
    upgrade::send_frame(control_.get(), FrameType::start_failed, status.message(), {},
                        Clock::now() + kReportTimeout);
  }
  listeners_.clear();
  close_control();
}

Status UpgradeSuccessor::start_receiver(const std::vector<std::unique_ptr<EventLoop>>& loops,
                                        std::vector<ProfilePtr> profiles) {
  try {
    std::vector<EventLoop*> targets;
    for (const auto& loop : loops) targets.push_back(loop.get());
    {
      std::lock_guard lock(receiving_mutex_);
      receiving_ = true;
    }
    receiver_ = std::thread([this, targets = std::move(targets), profiles = std::move(profiles)] {
      bool go = false;
      {
        std::unique_lock lock(receiving_mutex_);
        received_all_.wait(lock, [this] { return gate_ != Gate::closed; });
        go = gate_ == Gate::open;
      }
      if (go) return receive(targets, profiles);
      end_receiving();
    });
  } catch (const std::exception& e) {  // std::system_error (EAGAIN: a task limit), bad_alloc
    end_receiving();
    return {make_error_code(errc::upgrade_failed),
            std::string("start the thread that receives the connections: ") + e.what()};
  }
  return {};
}

void UpgradeSuccessor::set_gate(Gate gate) {
  std::lock_guard lock(receiving_mutex_);
  if (gate_ == Gate::closed) gate_ = gate;
  received_all_.notify_all();
}

void UpgradeSuccessor::report_ready(const std::vector<std::unique_ptr<EventLoop>>& loops) {
  listeners_.clear();
  std::string ready;
  upgrade::PayloadWriter out(ready);
  out.u64(static_cast<std::uint64_t>(::getpid()));
  out.u32(upgrade::kAnswers);
  if (upgrade::send_frame(control_.get(), FrameType::ready, ready, {},
                          Clock::now() + kReportTimeout) != 0) {
    // The predecessor is gone: this process serves on without it, and owns the files.
    loops.front()->group().lend_handed_unix_files(false);
    set_gate(Gate::shut);
    return close_control();
  }
  set_gate(Gate::open);
}

void UpgradeSuccessor::receive(std::vector<EventLoop*> loops, std::vector<ProfilePtr> profiles) {
  Frame frame;
  std::string answer;
  bool refused = false;  // answered that this server is stopped: the predecessor serves on
  int error = 0;
  // Until `done`, the predecessor's exit (end of stream) or stop() (which shuts the socket down
  // for reading: what is on its way still arrives, and is answered).
  while ((error = reader_->next(frame, Clock::time_point::max())) == 0 &&
         frame.type == FrameType::connections && adopt_batch(frame, loops, profiles, answer)) {
    std::uint32_t flags = 0;
    refused = refused || (PayloadReader(answer).u32(flags) && (flags & upgrade::kStopped) != 0);
    if (answers_ && upgrade::send_frame(control_.get(), FrameType::adopted, answer, {},
                                        Clock::now() + kReportTimeout) != 0) {
      break;
    }
  }
  // The handover has ended (`done`, or the predecessor's end, not one stop() made): the Unix
  // socket files it handed over are this process's now, unless it said it was stopped (the
  // predecessor has them back).
  bool ended = error == 0 && frame.type == FrameType::done;
  if (error != 0) {
    std::lock_guard lock(mutex_);
    ended = !shut_down_;
  }
  if (ended && !refused) loops.front()->group().lend_handed_unix_files(false);
  close_control();
  end_receiving();
}

void UpgradeSuccessor::end_receiving() {
  std::lock_guard lock(receiving_mutex_);
  receiving_ = false;
  received_all_.notify_all();
}

namespace {

// A connection of a batch, on its way to a loop.
struct Arriving {
  UniqueFd fd;
  ProfilePtr profile;
  std::string input;
  std::string output;
  MovedState moved;
};

// Opens each connection on its loop, unless that loop's group is stopping (or its loop has
// ended): then its fd closes here, untouched (the predecessor still holds the connection).
// Returns once every loop has taken or refused its share; `taken[i]` says which.
void adopt_on_loops(std::vector<std::pair<EventLoop*, Arriving>>& batch, std::vector<bool>& taken) {
  struct Countdown {
    std::mutex mutex;
    std::condition_variable cv;
    std::size_t left = 0;
  };
  auto countdown = std::make_shared<Countdown>();
  countdown->left = batch.size();
  taken.assign(batch.size(), false);
  for (std::size_t i = 0; i < batch.size(); ++i) {
    EventLoop* loop = batch[i].first;
    // Runs whether the task runs or is refused (a loop that has ended).
    std::shared_ptr<void> done(nullptr, [countdown](void*) {
      std::lock_guard lock(countdown->mutex);
      --countdown->left;
      countdown->cv.notify_all();
    });
    loop->post([loop, &arriving = batch[i].second, &taken, i, countdown, done] {
      if (loop->group().stopping()) return;
      Arriving& a = arriving;
      loop->adopt(a.fd.release(), std::move(a.profile), std::move(a.input), std::move(a.output),
                  std::move(a.moved));
      std::lock_guard lock(countdown->mutex);
      taken[i] = true;
    });
  }
  std::unique_lock lock(countdown->mutex);
  countdown->cv.wait(lock, [&] { return countdown->left == 0; });
}

}  // namespace

bool UpgradeSuccessor::adopt_batch(Frame& frame, const std::vector<EventLoop*>& loops,
                                   const std::vector<ProfilePtr>& profiles, std::string& answer) {
  // connections: u32 count, then per connection {u32 profile, u32 loop, bytes peer (a
  // sockaddr), bytes input, bytes output, bytes state}, its fd attached.
  PayloadReader in(frame.payload);
  std::uint32_t count = 0;
  if (!in.u32(count) || count != frame.fds.size()) return false;
  std::vector<std::pair<EventLoop*, Arriving>> batch;
  std::vector<std::size_t> index;  // each arriving connection's place in the frame
  for (std::uint32_t i = 0; i < count; ++i) {
    std::uint32_t profile = 0, loop = 0;
    Arriving a;
    std::string peer;
    if (!in.u32(profile) || !in.u32(loop) || !in.bytes(peer) || !in.bytes(a.input) ||
        !in.bytes(a.output) || !in.bytes(a.moved.state)) {
      return false;  // the fds in the frame close with it
    }
    // A profile this Server lacks (a Server::listen() it no longer makes): nothing here could
    // speak to that peer. Left to the predecessor (its fd here closes with the frame), which
    // serves it on if it reads answers.
    if (profile >= profiles.size()) continue;
    a.fd = std::move(frame.fds[i]);
    a.profile = profiles[profile];
    a.moved.peer = SocketAddress(peer.data(), peer.size());
    batch.emplace_back(loops[loop % loops.size()], std::move(a));
    index.push_back(i);
  }
  if (!in.finished()) return false;
  std::vector<bool> taken;
  adopt_on_loops(batch, taken);
  // adopted: u32 flags (1: stopped, it takes no more), u32 count, then per connection of the
  // frame u32 1 (taken) or 0 (left to the predecessor).
  std::vector<std::uint32_t> verdicts(count, 0);
  for (std::size_t k = 0; k < batch.size(); ++k) verdicts[index[k]] = taken[k] ? 1 : 0;
  answer.clear();
  upgrade::PayloadWriter out(answer);
  out.u32(loops.front()->group().stopping() ? upgrade::kStopped : 0);
  out.u32(count);
  for (const std::uint32_t v : verdicts) out.u32(v);
  return true;
}

void UpgradeSuccessor::close_control() {
  std::lock_guard lock(mutex_);
  control_.reset();
}

bool UpgradeSuccessor::finish_receiving(std::chrono::milliseconds timeout) {
  {
    std::unique_lock lock(receiving_mutex_);
    if (!received_all_.wait_for(lock, timeout, [this] { return !receiving_; })) return false;
  }
  std::lock_guard lock(join_mutex_);
  if (receiver_.joinable()) receiver_.join();
  return true;
}

void UpgradeSuccessor::stop() {
  {
    std::lock_guard lock(mutex_);
    // Wakes the receiver once it has read what is on its way (which it answers: refused, the
    // loops having stopped); its answers can still be written.
    if (control_.get() >= 0) ::shutdown(control_.get(), SHUT_RD);
    shut_down_ = true;
  }
  set_gate(Gate::shut);  // a receiver still waiting to learn whether to receive: it need not
  std::lock_guard lock(join_mutex_);
  if (receiver_.joinable()) receiver_.join();
}

}  // namespace evloop::detail
