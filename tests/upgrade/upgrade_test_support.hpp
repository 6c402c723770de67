// The live-upgrade tests' fixture: runs upgrade_test_server (UPGRADE_TEST_SERVER_BIN) as a child,
// follows it through its generations (each successor becomes our child once its parent exits:
// this process is a subreaper), talks to it with one-line commands, and leaves no process behind.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <cstddef>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "child_process.hpp"
#include "test_support.hpp"

namespace example_test {

using evloop::test::kSanitized;

/// The bound of every wait on a server.
inline constexpr milliseconds kTimeout{30'000};

/// What an UPGRADE command answered.
struct UpgradeReply {
  bool ok = false;
  pid_t successor = 0;
  std::size_t moved = 0;
  std::size_t draining = 0;
  std::string message;  // the failure, or the whole reply
};

/// The pid in "(pid N)" of an upgrade's failure message, or 0.
pid_t pid_in(const std::string& message);

/// An io_uring accept on a listening socket, armed by this process, that never completes: the
/// ring (DEFER_TASKRUN) runs the accept only in a wait for its completions, and none comes. The
/// kernel wakes io_uring's accepts exclusively, one per arriving connection, the first armed
/// first: this one (multishot: it stays in line) takes the wake-up of each connection that reaches
/// it, as the accept of a frozen process, or of a killed one whose ring the kernel has not torn
/// down yet, does. The connections stay in the backlog; a server whose own accept waits behind
/// this one is not told of them.
class StuckAccept {
 public:
  StuckAccept() = default;
  ~StuckAccept();
  StuckAccept(const StuckAccept&) = delete;
  StuckAccept& operator=(const StuckAccept&) = delete;
  /// Arms it on `listener`. False when the kernel refuses (no io_uring, no DEFER_TASKRUN).
  bool arm(int listener);

 private:
  int ring_ = -1;
  void* sq_ = nullptr;
  std::size_t sq_size_ = 0;
  void* sqes_ = nullptr;
  std::size_t sqes_size_ = 0;
};

/// A duplicate of process `pid`'s listening socket bound to `port` (pidfd_getfd), or -1.
int listener_of(pid_t pid, std::uint16_t port);

/// A duplicate of the control socket of process `pid`, a live upgrade's successor (the fd its
/// EVLOOP_UPGRADE_FD named as it started; pidfd_getfd), or -1 with errno set.
int control_socket_of(pid_t pid);

/// Sets EVLOOP_BACKEND for this process and the servers it starts, as it was when it ends.
class BackendForChildren {
 public:
  explicit BackendForChildren(const char* backend);
  ~BackendForChildren();
  BackendForChildren(const BackendForChildren&) = delete;
  BackendForChildren& operator=(const BackendForChildren&) = delete;

 private:
  std::optional<std::string> was_;
};

class UpgradeTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  /// Starts the server with `--listen LISTEN` (unless `listen` is empty) and `extra`, through
  /// `wrapper` (a program that execs the server, e.g. systemd-socket-activate) if given, with
  /// `setup`; reads its "listening on" and "serving pid=" lines. `connect_to` is a Unix socket
  /// path to talk to it by (default: the TCP port it prints); then a first connection is made as
  /// soon as the path accepts, which is what makes systemd-socket-activate start the server.
  void start(const std::vector<std::string>& extra, const ChildSetup& setup = {},
             const std::string& listen = "tcp://127.0.0.1:0",
             const std::vector<std::string>& wrapper = {}, const std::string& connect_to = {});
  /// A connected socket to the server (-1 on failure).
  int connect() const;
  /// Sends `line` and a newline on a new connection; returns everything until the server closes
  /// (or what came within `timeout`).
  std::string command(const std::string& line, milliseconds timeout = kTimeout) const;
  /// Asks for an upgrade with `args` appended to the successor's command line.
  UpgradeReply upgrade(const std::string& args = "");
  /// The pid of the next "serving pid=" line (a successor prints it as it starts), or 0.
  pid_t expect_serving_line();
  /// Waits for a generation of the server to exit; its exit code (-1: it did not, and is killed).
  int wait_generation_exit(pid_t pid);
  /// True when `pid` is still running after `wait`.
  bool process_stays(pid_t pid, milliseconds wait);

  std::unique_ptr<Child> child_;
  std::uint16_t port_ = 0;
  std::string unix_path_;
  pid_t server_pid_ = 0;  // the generation serving now
  std::set<pid_t> live_;  // generations not reaped yet
};

}  // namespace example_test
