// Internal. The handing-over side of a live upgrade (Server::upgrade), step by step:
//   1. duplicate every listening socket, on its loop, with its listen address and loop index;
//   2. start the successor (fork + exec) with a control socket, and send it those sockets;
//   3. wait until it is ready; if it fails or times out, kill it: nothing here has changed;
//   4. stop accepting on every loop (the sockets stay open: the successor shares them);
//   5. on every loop, ask each open connection's `handover` handler, detach the ones it lets go
//      and send them, at most 253 per frame, as the loops produce them; the successor answers
//      each frame saying which it took (those it did not are adopted here again);
//   6. say `done`, and let what stayed drain (the group stops once it is empty, or at the
//      deadline).
// Should the successor be lost during step 5, it is killed, the connections not sent whole are
// adopted here again, accepting resumes, and the upgrade reports the failure; should it say it
// was stopped, or stop reading before `done` (its stop(), its end), the same, but it is left to
// end by itself (and reaped then), with the connections it took. The Unix socket files
// of the listeners are the upgrade's from step 1: none is removed here while the successor may
// serve it (not by a stop() meanwhile), and each goes back to its listener if the upgrade fails.
#pragma once

#include <string>
#include <vector>

#include "evloop/upgrade.hpp"
#include "profile.hpp"

namespace evloop::detail {

class LoopGroupCore;

/// What a live upgrade needs of the Server it hands over.
struct UpgradeSource {
  LoopGroupCore& group;
  /// The server's listen addresses, by endpoint index (Listener::endpoint).
  const std::vector<std::string>& endpoints;
  /// The profiles of its listeners' connections: 0 is the server's own, then one per
  /// Server::listen(); the successor gives a moved connection the profile at the same index.
  const std::vector<ProfilePtr>& profiles;
};

/// errc::bad_option, saying which, when `options` cannot run an upgrade.
Status check_upgrade_options(const UpgradeOptions& options);

/// Runs a live upgrade on the caller's thread (not a loop's). On success fills `report` and
/// leaves the group draining; on failure this process serves as before.
Status hand_over(const UpgradeSource& source, const UpgradeOptions& options, UpgradeReport& report);

}  // namespace evloop::detail
