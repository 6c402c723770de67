// Test helper: run an example server as a child process, run client programs with a deadline,
// and talk to a server over raw loopback sockets. Every wait here is bounded. (The same helper
// lives in examples/http-server/tests and examples/redis-server/tests, so that each example
// folder stands alone.)
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace example_test {

using std::chrono::milliseconds;

/// What a child gets besides its arguments, as systemd socket activation gives it: `fds` placed
/// at 3, 4, ... (in that order), `env` ("NAME=value") added to ours, and with `listen_pid`,
/// LISTEN_PID set to the child's own pid ("self") or to the text given.
struct ChildSetup {
  std::vector<int> fds;
  std::vector<std::string> env;
  std::optional<std::string> listen_pid;
};

/// A child process whose stdout is a pipe to us (stderr is inherited, so its messages show in
/// the test log). The destructor kills and reaps it if it is still running.
class Child {
 public:
  /// Starts argv[0] (searched in PATH when it has no '/') with arguments argv[1...] and `setup`.
  /// Check running() afterwards.
  explicit Child(const std::vector<std::string>& argv, const ChildSetup& setup = {});
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  /// True while started and not yet reaped.
  bool running() const noexcept { return pid_ > 0; }
  /// The process id (for /proc/PID/...); -1 once reaped.
  pid_t pid() const noexcept { return pid_; }
  /// Reads stdout until a line starting with `prefix` (returned without the newline); empty
  /// when the deadline passes or stdout ends first.
  std::string wait_for_line(std::string_view prefix, milliseconds timeout);
  /// The same for a line that contains `text` anywhere (log lines that start with a pid or a
  /// time stamp).
  std::string wait_for_line_containing(std::string_view text, milliseconds timeout);
  /// Reads stdout until it ends (or the deadline) and returns all of it not yet taken by a
  /// wait_for_line(): the summary a program prints as it exits.
  std::string rest_of_output(milliseconds timeout);
  /// Sends a signal.
  void signal(int sig) const;
  /// Waits for the child to exit (stdout reaches EOF, then waitpid). Returns its exit code, 128+N
  /// if killed by signal N, or -1 if it did not exit in time (it is then killed).
  int wait_exit(milliseconds timeout);
  /// Waits for the process itself to exit, not for its stdout to end (a successor started by a
  /// live upgrade shares it), and reaps it. Returns as wait_exit().
  int wait_process(milliseconds timeout);

 private:
  std::string wait_for(std::string_view text, bool at_start, milliseconds timeout);

  pid_t pid_ = -1;
  int out_fd_ = -1;
  std::string buffered_;
};

/// Waits until `pid`, a child of ours (or a descendant reparented to us: become_subreaper()),
/// exits, and reaps it. Returns its exit code, 128+N if killed by signal N, or -1 if it did not
/// exit in time (it is then killed and reaped, unless `kill_on_timeout` is false). For another
/// process's child (a live upgrade's successor that the old server reaps), 0 once it has ended:
/// its code is its parent's to know.
int wait_for_exit(pid_t pid, milliseconds timeout, bool kill_on_timeout = true);
/// Makes this process the reaper of its orphaned descendants (Linux's PR_SET_CHILD_SUBREAPER): a
/// live upgrade's successor, whose parent exits, becomes our child, so wait_for_exit() can see
/// how it ends. False where that does not exist.
bool become_subreaper();

/// Starts `server_bin` with `--listen LISTEN` plus `extra` (and `setup`: inherited sockets) and
/// returns the port it prints ("listening on tcp4://127.0.0.1:PORT"), or 0 on failure.
std::uint16_t start_server(std::unique_ptr<Child>& child, const std::string& server_bin,
                           const std::vector<std::string>& extra = {},
                           const std::string& listen = "tcp://127.0.0.1:0",
                           const ChildSetup& setup = {});

/// What an example server printed after a SIGUSR2: "upgraded: pid N, M connections moved, D left
/// to drain" (pid 0 when it printed "upgrade failed: ..." or nothing in time).
struct Upgraded {
  pid_t pid = 0;
  int moved = -1;
  int draining = -1;
  std::string line;
};
/// Sends SIGUSR2 to `child`, an example server, and reads what its upgrade did.
Upgraded upgrade_example(Child& child, milliseconds timeout);
/// The same for `pid`, a successor of `child` (it writes to the same stdout), after an upgrade.
Upgraded upgrade_example(Child& child, pid_t pid, milliseconds timeout);

/// The result of run_program().
struct ProgramResult {
  int exit_code = -1;  ///< Exit code, 128+N for signal N, -1 on timeout.
  std::string output;  ///< stdout and stderr, interleaved.
};

/// Runs a program to completion with `input` on its stdin, killing it at the deadline. The input
/// is written as the program takes it, while its output is read (any size: a program that
/// echoes a megabyte back does not deadlock); what a program that exits early leaves unread is
/// dropped.
ProgramResult run_program(const std::vector<std::string>& argv, milliseconds timeout,
                          std::string_view input = {});

/// What `wrk -t1 -c<connections> -d1s URL` did (within a minute).
struct WrkRun {
  int exit_code = -1;
  long requests = 0;           ///< Requests completed.
  bool non_2xx = false;        ///< Some answer was not a 2xx.
  bool socket_errors = false;  ///< Some connect, read, write or timeout error.
  std::string output;
};
WrkRun run_wrk(const std::string& url, int connections = 20);

/// True when `name` is an executable somewhere on PATH.
bool have_program(const std::string& name);
/// What to run `name` by: `name` when it is on PATH, else /usr/sbin/NAME when that exists
/// (Debian's nginx and haproxy, and /usr/sbin is not on every user's PATH); empty when neither.
std::string program_path(const std::string& name);
/// Waits until HAProxy's `show stat`, asked on its stats socket `socket`, says that server
/// `server` of `proxy` is UP with a passed health check (status L4OK, L6OK or L7OK). Returns
/// the server's CSV line as last read, or "" if it could not be read.
std::string haproxy_server_checked(const std::string& socket, const std::string& proxy,
                                   const std::string& server, milliseconds timeout);

/// A connected loopback TCP socket (blocking), or -1.
int connect_loopback(std::uint16_t port);
/// A connected Unix stream socket (blocking), or -1.
int connect_unix(const std::string& path);
/// A listening TCP socket on 127.0.0.1 (`port` 0: a free one), close-on-exec, with SO_REUSEPORT
/// when `reuseport`; -1 on failure. Its port: bound_port().
int listen_loopback(std::uint16_t port = 0, bool reuseport = false);
/// The local port of a TCP socket.
std::uint16_t bound_port(int fd);
/// How long send_all() waits for room in the socket buffer by default.
inline constexpr milliseconds kSendAllTimeout{30'000};
/// Sends all of `bytes`, waiting (poll) for room in the socket buffer until `timeout` has passed;
/// false on error or at the deadline with bytes left unsent.
bool send_all(int fd, std::string_view bytes, milliseconds timeout = kSendAllTimeout);
/// Reads until the peer closes or the deadline passes; `closed` tells which.
std::string read_until_close(int fd, milliseconds timeout, bool& closed);
/// Reads until `size` bytes have arrived, EOF or the deadline.
std::string read_exactly(int fd, std::size_t size, milliseconds timeout);
/// Reads `count` copies of `unit`, comparing the bytes as they arrive (nothing is kept, so a
/// gigabyte costs no memory). Returns how many bytes matched before a mismatch, EOF or the
/// deadline: count * unit.size() when all came right.
std::size_t read_repeated(int fd, std::string_view unit, std::size_t count, milliseconds timeout);
/// Reads until `total` contains `needle` `count` times, EOF or the deadline.
std::string read_until_count(int fd, std::string_view needle, int count, milliseconds timeout);
/// Waits `wait` for the peer to send a byte or close; true when it did neither.
bool stays_silent(int fd, milliseconds wait);
/// Milliseconds from `since` until the peer closed `fd` without sending anything more, or -1 if
/// it sent a byte or did not close within `timeout`. Closes `fd`.
double ms_until_closed_silently(int fd, std::chrono::steady_clock::time_point since,
                                milliseconds timeout);
/// Milliseconds from `since` until a reset from the peer ended the connection on `fd` (its TCP
/// state is CLOSE), found without reading `fd`: for a client that stopped reading. -1 if it was
/// not reset within `timeout` of `since`. Polls the state: a reset of an unread socket raises no
/// event of its own.
double ms_until_reset_unread(int fd, std::chrono::steady_clock::time_point since,
                             milliseconds timeout);

/// What keep_busy() found.
struct BusyResult {
  int exchanges = 0;    ///< Exchanges completed.
  std::string failure;  ///< Empty, or what went wrong (and ended it).
};
/// Keeps a connection busy for `duration`: pauses of 50-500 ms (seeded, so runs repeat), in
/// which the peer must neither send nor close, each followed by `exchange(fd, i)`, which sends
/// request i and returns whether its reply came right.
BusyResult keep_busy(int fd, milliseconds duration,
                     const std::function<bool(int fd, int i)>& exchange);
/// Number of non-overlapping occurrences of `needle` in `s`.
int count_of(std::string_view s, std::string_view needle);

}  // namespace example_test
