// Public. Live upgrade: a running Server hands its listening sockets and its connections to a new
// process (Server::upgrade). The README's "Zero-downtime restart" describes the whole sequence
// and the control socket's protocol.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace evloop {

/// The environment variable that tells a successor which fd is its control socket
/// ("EVLOOP_UPGRADE_FD=N"). A Server whose start() finds it takes its listening sockets and
/// connections from the process that started it, instead of binding.
inline constexpr const char* kUpgradeFdVariable = "EVLOOP_UPGRADE_FD";

/// How Server::upgrade() starts the successor and ends this process's part.
struct UpgradeOptions {
  /// The successor's command line. argv[0] is the program executed (a path, not looked up in
  /// PATH: "/proc/self/exe" or the absolute path of this program re-executes it); required.
  std::vector<std::string> argv;
  /// The successor's environment, "NAME=value" each; unset: this process's environment at the
  /// call. Either way without LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES, and with
  /// EVLOOP_UPGRADE_FD.
  std::optional<std::vector<std::string>> env;
  /// The successor must report ready (its Server::start() succeeded) within this, or it is killed
  /// and the upgrade fails with this process serving on. Also bounds each write to the successor
  /// during the handover, with the wait for its answer (one that does not read or answer in time
  /// is given up on, the same way); and, in a process that is itself a successor, the wait for
  /// its predecessor to finish handing over (else the upgrade fails, nothing changed). Must be
  /// positive (errc::bad_option).
  std::chrono::milliseconds ready_timeout{10'000};
  /// After the handover, the connections that were not moved go on here for at most this long
  /// (until each closes); then the server stops as by stop() (Options::shutdown_grace applies).
  /// Must not be negative (errc::bad_option).
  std::chrono::milliseconds drain_timeout{30'000};
};

/// What a successful Server::upgrade() did.
struct UpgradeReport {
  /// The successor's process id.
  long successor_pid = 0;
  /// Connections handed to the successor.
  std::size_t moved = 0;
  /// Open connections left to drain here: their `handover` handler said std::nullopt (or none
  /// is set), or it closed the connection; a send_file() range was pending, or shutdown_write()
  /// had been called (detach() refuses both); the connection is not a listener's (a
  /// Loop::connect or Loop::adopt of the program's own); or the successor left it here (its
  /// connection came from a Server::listen() the successor does not make). (Connections already
  /// closing, and dials still connecting, finish here too, uncounted.)
  std::size_t draining = 0;
};

}  // namespace evloop
