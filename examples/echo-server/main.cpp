// echo-server: every byte received is sent back. The smallest complete evloop server, and the
// server the benchmark suite measures against plain sockets.
#include <evloop/evloop.hpp>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

namespace {

constexpr const char* kUsage = R"(Usage: echo-server [options]

Echoes every byte back to its sender.

Options:
  --listen ADDR   address to serve (repeatable; default tcp://127.0.0.1:5555), e.g.
                  tcp://0.0.0.0:7000  tcp6://[::1]:7000  unix:///tmp/echo.sock
                  tcp://127.0.0.1:0 picks a free port; append ?reuseport=1 per address
  --loops N       event loops (threads); "auto" = one per hardware thread (default 1)
  --reuseport     one SO_REUSEPORT listener per loop (the kernel balances connections)
  --balance P     without reuse-port: round-robin, least-connections or source-hash
  --stats         on exit, print the loops' counters as one JSON line
  --help          this text

Prints "listening on ADDR" for each bound address. Ctrl-C (SIGINT) or SIGTERM stops it.
)";

evloop::Server* g_server = nullptr;

extern "C" void on_signal(int) {
  if (g_server != nullptr) g_server->stop();  // async-signal-safe
}

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr, "echo-server: %s\nTry 'echo-server --help'.\n", message.c_str());
  std::exit(2);
}

bool parse_loops(std::string_view text, unsigned& loops) {
  if (text == "auto") {
    loops = evloop::Options::kAutoLoops;
    return true;
  }
  char* end = nullptr;
  const unsigned long n = std::strtoul(std::string(text).c_str(), &end, 10);
  if (text.empty() || *end != '\0' || n == 0 || n > 4096) return false;
  loops = static_cast<unsigned>(n);
  return true;
}

evloop::Options parse_args(int argc, char** argv, bool& print_stats) {
  evloop::Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    auto value = [&]() -> std::string_view {
      if (i + 1 >= argc) usage_error(std::string(arg) + " needs a value");
      return argv[++i];
    };
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (arg == "--listen") {
      options.listen.emplace_back(value());
    } else if (arg == "--loops") {
      const std::string_view v = value();
      if (!parse_loops(v, options.loops)) usage_error("--loops takes 1..4096 or auto, not '" + std::string(v) + "'");
    } else if (arg == "--reuseport") {
      options.reuseport = true;
    } else if (arg == "--balance") {
      const std::string_view v = value();
      if (v == "round-robin") {
        options.balance = evloop::Balance::round_robin;
      } else if (v == "least-connections") {
        options.balance = evloop::Balance::least_connections;
      } else if (v == "source-hash") {
        options.balance = evloop::Balance::source_hash;
      } else {
        usage_error("unknown --balance '" + std::string(v) + "'");
      }
    } else if (arg == "--stats") {
      print_stats = true;
    } else {
      usage_error("unknown option '" + std::string(arg) + "'");
    }
  }
  if (options.listen.empty()) options.listen.emplace_back("tcp://127.0.0.1:5555");
  return options;
}

void print_stats_json(const evloop::Server& server) {
  evloop::LoopStats t;
  for (const evloop::LoopStats& s : server.stats()) t += s;
  std::printf(
      "{\"stats\":{\"waits\":%llu,\"wakeups\":%llu,\"tasks\":%llu,\"reads\":%llu,\"writes\":%llu,"
      "\"bytes_in\":%llu,\"bytes_out\":%llu,\"write_arms\":%llu,\"read_pauses\":%llu,"
      "\"accepts\":%llu,\"accept_errors\":%llu,\"timers_fired\":%llu,\"poller_changes\":%llu,"
      "\"opened\":%llu,\"closed\":%llu}}\n",
      static_cast<unsigned long long>(t.waits), static_cast<unsigned long long>(t.wakeups),
      static_cast<unsigned long long>(t.tasks), static_cast<unsigned long long>(t.reads),
      static_cast<unsigned long long>(t.writes), static_cast<unsigned long long>(t.bytes_in),
      static_cast<unsigned long long>(t.bytes_out), static_cast<unsigned long long>(t.write_arms),
      static_cast<unsigned long long>(t.read_pauses), static_cast<unsigned long long>(t.accepts),
      static_cast<unsigned long long>(t.accept_errors),
      static_cast<unsigned long long>(t.timers_fired),
      static_cast<unsigned long long>(t.poller_changes), static_cast<unsigned long long>(t.opened),
      static_cast<unsigned long long>(t.closed));
}

}  // namespace

int main(int argc, char** argv) {
  bool print_stats = false;
  evloop::Options options = parse_args(argc, argv, print_stats);

  evloop::Callbacks callbacks;
  callbacks.serving = [](const evloop::ServingInfo& info) {
    for (const evloop::SocketAddress& addr : info.addresses) {
      std::printf("listening on %s\n", addr.to_url().c_str());
    }
    std::printf("echo-server: %zu loop%s; Ctrl-C to stop\n", info.loops, info.loops == 1 ? "" : "s");
    std::fflush(stdout);
  };
  callbacks.data = [](evloop::Conn& conn, std::string_view bytes) {
    conn.write(bytes);
    return bytes.size();
  };

  evloop::Server server(std::move(options), std::move(callbacks));
  g_server = &server;
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  const evloop::Status status = server.run();
  g_server = nullptr;
  if (!status) {
    std::fprintf(stderr, "echo-server: %s\n", status.message().c_str());
    return 1;
  }
  if (print_stats) print_stats_json(server);
  std::fprintf(stderr, "echo-server: stopped\n");
  return 0;
}
