// Internal. Starting a live upgrade's successor (fork + exec) and ending one that failed.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace evloop::detail::upgrade {

/// The successor's environment: `env` (or, when not given, this process's), without the
/// variables that describe this process's own inheritance (LISTEN_PID, LISTEN_FDS,
/// LISTEN_FDNAMES, EVLOOP_UPGRADE_FD), plus EVLOOP_UPGRADE_FD=`control_fd`.
std::vector<std::string> successor_environment(const std::optional<std::vector<std::string>>& env,
                                               int control_fd);

/// Forks and executes argv[0] (a path: PATH is not searched) with `argv` and `env`. In the child,
/// between fork and exec (async-signal-safe calls only), `control_fd` is left open across the exec
/// (every other evloop fd is close-on-exec) and every signal is unblocked. When exec fails the
/// child sends an exec_failed frame with the errno on `control_fd` and exits with 127. Returns
/// the child's pid, or -errno when fork fails.
pid_t spawn_successor(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                      int control_fd);

/// Kills `pid` (SIGKILL; harmless once it has exited) and reaps it. Returns how it ended:
/// "exited with code 1", "killed by signal 6", ...
std::string kill_and_reap(pid_t pid);

/// Waits until `pid` (a child) ends and reaps it; how it ended, as kill_and_reap() says it.
std::string reap(pid_t pid);

}  // namespace evloop::detail::upgrade
