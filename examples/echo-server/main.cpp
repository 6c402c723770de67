// echo-server: every byte received is sent back. The smallest complete evloop server, and the
// server the benchmark suite measures against plain sockets.
#include <evloop/evloop.hpp>

#include "cli.hpp"

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

namespace {

constexpr const char* kUsage = R"(Usage: echo-server [options]

Echoes every byte back to its sender.

Options:
  --listen ADDR   address to serve (repeatable; default tcp://127.0.0.1:5555), e.g.
                  tcp://0.0.0.0:7000  tcp6://[::1]:7000  unix:///tmp/echo.sock
                  tcp://127.0.0.1:0 picks a free port; append ?reuseport=1 per address;
                  fd://N an inherited listening socket; systemd:// or systemd://NAME the
                  sockets of systemd socket activation
  --loops N       event loops (threads); "auto" = one per hardware thread (default 1)
  --reuseport     one SO_REUSEPORT listener per loop (the kernel balances connections)
  --backend B     event backend: auto, epoll or io_uring (default auto: $EVLOOP_BACKEND,
                  else epoll); io_uring falls back to epoll where the kernel refuses it
  --balance P     without reuse-port: round-robin, least-connections or source-hash
  --idle-timeout SECONDS
                  close a connection that sends nothing for this long; 0 = never
                  (default 0)
  --send-timeout SECONDS
                  reset a connection whose pending output makes no progress for this
                  long (a client that stops reading); 0 = never (default 0: the
                  benchmarks' server keeps no timer per connection unless asked)
  --write-through BYTES
                  a write of at least BYTES goes to the kernel at once, uncopied; smaller
                  ones are copied and sent together after the handler; 1 = every write,
                  never = none (default 32768; evloop's ConnOptions::write_through)
  --stats         on exit, print the loops' counters as one JSON line
  --help          this text

Prints "listening on ADDR" for each bound address. Ctrl-C (SIGINT) or SIGTERM stops it.
SIGUSR2 upgrades it live: the same binary (as it is on disk now) and arguments start and take
over the listeners and every connection; this process then exits.
)";

const example::Program kProgram{"echo-server", kUsage, "tcp://127.0.0.1:5555"};

evloop::Options parse_args(int argc, char** argv, bool& print_stats) {
  // parse_flags() returns the Options: what the extra flags set goes in after it.
  evloop::Balance balance = evloop::Balance::round_robin;
  std::chrono::seconds idle_timeout{0};
  std::chrono::seconds send_timeout{0};
  std::size_t write_through = evloop::ConnOptions{}.write_through;
  evloop::Options options =
      example::parse_flags(kProgram, argc, argv, [&](std::string_view flag, const auto& value) {
        if (flag == "--stats") {
          print_stats = true;
        } else if (flag == "--balance") {
          const std::string_view v = value();
          if (v == "round-robin") {
            balance = evloop::Balance::round_robin;
          } else if (v == "least-connections") {
            balance = evloop::Balance::least_connections;
          } else if (v == "source-hash") {
            balance = evloop::Balance::source_hash;
          } else {
            example::usage_error(kProgram,
                                 "--balance takes round-robin, least-connections or source-hash, "
                                 "not '" +
                                     std::string(v) + "'");
          }
        } else if (flag == "--idle-timeout") {
          idle_timeout = example::parse_seconds(kProgram, flag, value());
        } else if (flag == "--send-timeout") {
          send_timeout = example::parse_seconds(kProgram, flag, value());
        } else if (flag == "--write-through") {
          write_through = example::parse_write_through(kProgram, value());
        } else {
          return false;
        }
        return true;
      });
  options.balance = balance;
  options.idle_timeout = idle_timeout;
  options.send_timeout = send_timeout;
  options.write_through = write_through;
  return options;
}

}  // namespace

int main(int argc, char** argv) {
  bool print_stats = false;
  evloop::Callbacks callbacks;
  callbacks.serving = [](const evloop::ServingInfo& info) {
    example::print_listening(info);
    std::fprintf(stderr, "echo-server: %zu loop%s; Ctrl-C to stop\n", info.loops,
                 info.loops == 1 ? "" : "s");
  };
  callbacks.data = [](evloop::Conn& conn, std::string_view bytes) {
    conn.write(bytes);
    return bytes.size();
  };
  // Live upgrade (SIGUSR2): every connection moves; echo keeps no state of its own (what was read
  // but not echoed yet, and what waits to be sent, move with the socket).
  callbacks.handover = [](evloop::Conn&) -> std::optional<std::string> { return std::string(); };

  evloop::Server server(parse_args(argc, argv, print_stats), std::move(callbacks));
  const int code = example::serve_until_signal(kProgram, server, argc, argv);
  if (code == 0 && print_stats) example::print_stats_json(server);
  return code;
}
