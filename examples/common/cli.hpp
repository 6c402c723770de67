// What every example server shares: the common flags (--listen, --loops, --reuseport, --help),
// the "listening on ADDR" lines, the --stats JSON line, and serving until SIGINT or SIGTERM,
// upgrading on SIGUSR2.
#pragma once

#include <evloop/evloop.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace example {

/// A program's name (for messages), its --help text and its default listen address.
struct Program {
  const char* name;
  const char* usage;
  const char* default_listen;
};

/// Handles a flag only one example takes: `value()` returns the flag's argument (exiting with a
/// usage error when there is none). Returns false for a flag it does not know.
using ExtraFlag =
    std::function<bool(std::string_view flag, const std::function<std::string_view()>& value)>;

/// Parses the command line into Options. --help prints the usage and exits 0; a bad flag prints
/// a message and exits 2, and so does a --listen address that does not parse or that names the
/// wrong transport (check_listen_address()). What only binding can tell (address in use, fd://
/// not a socket, no systemd sockets) is left to start(), which fails with exit 1.
evloop::Options parse_flags(const Program& program, int argc, char** argv,
                            const ExtraFlag& extra = {});

/// Checks a --listen address as parse_flags() does: a usage error (exit 2) when
/// evloop::parse_listen_address() refuses it, or when it is a UDP address (udp://, udp4://,
/// udp6://) for a TCP program or anything else for a UDP one (a program whose
/// Program::default_listen is a UDP address), which Server::start() would refuse.
void check_listen_address(const Program& program, std::string_view text);

/// Prints "NAME: MESSAGE" and a hint to stderr, then exits 2.
[[noreturn]] void usage_error(const Program& program, const std::string& message);

/// A decimal number in [min, max]; false for anything else (sign, spaces, suffixes, overflow).
bool parse_number(std::string_view text, unsigned long long min, unsigned long long max,
                  unsigned long long& out);

/// The value of a flag in whole seconds, 0..kMaxSeconds (0 usually means "off"); anything else
/// is a usage error naming `flag`.
std::chrono::seconds parse_seconds(const Program& program, std::string_view flag,
                                   std::string_view value);
/// The largest value parse_seconds() accepts: a year.
inline constexpr unsigned long long kMaxSeconds = 365ULL * 24 * 3600;

/// The value of --write-through (ConnOptions::write_through): 1..kMaxWriteThrough bytes, or
/// "never" (SIZE_MAX: every write is copied); anything else is a usage error.
std::size_t parse_write_through(const Program& program, std::string_view value);
/// The largest number parse_write_through() accepts: 1 TiB (larger is the same as "never").
inline constexpr unsigned long long kMaxWriteThrough = 1ULL << 40;

/// The `serving` callback of every example: one "listening on URL" line per bound address
/// ("tcp4://127.0.0.1:5555", "udp4://127.0.0.1:5555", "unix:///tmp/a.sock").
void print_listening(const evloop::ServingInfo& info);

/// Prints the server's backend and counters, every loop's added up, as one JSON line on stdout:
/// {"stats":{"backend":"epoll","waits":...,"bytes_out":...,...}} (the benchmark runner reads it).
void print_stats_json(const evloop::Server& server);

/// Starts `server` and serves until SIGINT or SIGTERM, then stops it and waits; on SIGUSR2 (the
/// nginx convention) upgrades live: re-executes this program (argv[0], resolved to an absolute
/// path now, so a binary replaced on disk is the one that runs) with the same arguments, hands
/// it the listeners and the connections the server's `handover` handler lets go, prints
/// "upgraded: pid N, M connections moved, D left to drain" (or "upgrade failed: ..." and serves
/// on), and exits once what stayed has drained. Returns the exit code: 0, or 1 when start()
/// fails or a loop failed while serving (wait()'s error; its message printed). The signals stay
/// blocked in every thread (loop threads inherit the mask) and a thread of ours takes them with
/// sigwait(): no handler, so nothing for a sanitizer to defer or lose. Server::stop() is
/// async-signal-safe too, for programs that prefer a handler.
int serve_until_signal(const Program& program, evloop::Server& server, int argc, char** argv);

/// Sends `state` ("READY=1", "MAINPID=N") to systemd's notification socket ($NOTIFY_SOCKET), as
/// sd_notify(3) does; nothing when the variable is not set. serve_until_signal() says READY=1
/// once the server started, and MAINPID=<successor> after a live upgrade, so that a unit with
/// Type=notify and NotifyAccess=all follows the new process.
void notify_systemd(const std::string& state);

/// This program's command line with argv[0] as an absolute path (resolved through PATH when it
/// has no '/'), to execute again.
std::vector<std::string> own_command_line(int argc, char** argv);

}  // namespace example
