// Internal. Listening sockets a process inherits instead of binding them: the ones systemd passes
// by socket activation (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES; fds from 3), and the rule that
// spreads several inherited sockets of one address over the loops (systemd's, and those a live
// upgrade's predecessor hands over).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "evloop/address.hpp"
#include "evloop/error.hpp"
#include "socket.hpp"

namespace evloop::detail {

/// The first fd systemd passes (SD_LISTEN_FDS_START).
inline constexpr int kSystemdFirstFd = 3;

/// A socket passed by systemd: its fd (3, 4, ...) and its FileDescriptorName= ("unknown" when the
/// unit sets none, as systemd itself names it).
struct SystemdSocket {
  int fd = -1;
  std::string name;
};

/// The systemd variables, read as sd_listen_fds(3) reads them.
struct SystemdEnvironment {
  std::vector<SystemdSocket> sockets;
  /// When there are no sockets: why (no LISTEN_FDS, or a LISTEN_PID of another process), for the
  /// message of a systemd:// address that finds none.
  std::string note;
};

/// Parses the variables (null = unset) for the process `self`: no LISTEN_PID or LISTEN_FDS means
/// no sockets; a LISTEN_PID other than `self` means they were meant for another process (ignored,
/// with a note); a malformed number, or LISTEN_FDNAMES with a count other than LISTEN_FDS, fails
/// with errc::bad_address. Touches neither the environment nor the fds.
Status parse_systemd_environment(const char* listen_pid, const char* listen_fds,
                                 const char* listen_fdnames, long self, SystemdEnvironment& out);

/// The fds of a `systemd://` address (every socket passed) or `systemd://NAME` (those named NAME),
/// in fd order, leaving out those a running Server already serves. The first call reads the
/// variables, makes every fd passed close-on-exec and unsets the variables (again whenever they are
/// set again, as a test harness does). Fails with errc::bad_address, saying why, when none is left.
/// Thread-safe; like sd_listen_fds(), it changes the environment, which no other thread may read
/// meanwhile.
Status select_systemd_sockets(const ListenAddress& address, std::vector<int>& fds);

/// A start() that serves these fds succeeded: they are that Server's now (it closes them when it
/// stops), and select_systemd_sockets() offers them no more. (A start() that fails leaves them to
/// the next.)
void claim_systemd_sockets(const std::vector<int>& fds);

/// Checks that `fd` is a listening stream socket and makes it non-blocking and close-on-exec,
/// without taking it over; fills `bound` with its address. `text` names the listen address in the
/// message of a failure (errc::bad_address, or the system error).
Status check_inherited_listener(int fd, const std::string& text, SocketAddress& bound);

/// Where the i-th of `count` inherited sockets of one address goes among `loops` loops: to loop
/// i % loops, so socket i of a predecessor's loop i stays on loop i (several share a loop when
/// there are fewer loops now: none is closed, so no queued connection is dropped); with fewer
/// sockets than loops, each hands what it accepts off to the loop the balance policy picks.
struct Placement {
  std::size_t loop = 0;
  bool spreads = false;
};
inline Placement place_inherited(std::size_t i, std::size_t count, std::size_t loops) {
  return {i % loops, count < loops};
}

/// An inherited listening socket and the address it is bound to.
struct InheritedSocket {
  int fd = -1;
  SocketAddress bound;
};

/// Splits `sockets` into groups bound to the same address, in the order of each group's first
/// socket: one group is one listen address, its sockets (bound with SO_REUSEPORT) one per loop.
std::vector<std::vector<InheritedSocket>> group_by_address(
    const std::vector<InheritedSocket>& sockets);

}  // namespace evloop::detail
