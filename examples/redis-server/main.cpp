// redis-server: a Redis-protocol (RESP2) key-value server on evloop, enough for redis-cli and
// redis-benchmark: PING, ECHO, SET (EX/PX/NX/XX/KEEPTTL), GET, DEL, EXISTS, INCR, MSET, MGET,
// DBSIZE, FLUSHALL, QUIT, SELECT 0, INFO, COMMAND, CONFIG GET. The store is shared by every loop
// (sharded, a mutex per shard). It is the server the peer benchmark (bench/peers) measures
// against the real redis-server.
#include <evloop/evloop.hpp>
#include <pthread.h>

#include <any>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "commands.hpp"
#include "resp_parser.hpp"
#include "store.hpp"

namespace {

constexpr const char* kUsage = R"(Usage: redis-server [options]

A Redis-protocol server (a subset of the commands) built on evloop.

Options:
  --listen ADDR       address to serve (repeatable; default tcp://127.0.0.1:6379), e.g.
                      tcp://127.0.0.1:0 (a free port)  tcp6://[::1]:6379  unix:///tmp/redis.sock
  --loops N           event loops (threads); "auto" = one per hardware thread (default 1)
  --reuseport         one SO_REUSEPORT listener per loop (the kernel balances connections)
  --max-bulk BYTES    longest bulk string accepted (default 67108864)
  --help              this text

Prints "listening on ADDR" for each bound address. Ctrl-C (SIGINT) or SIGTERM stops it.
)";

struct Config {
  evloop::Options options;
  resp::Limits limits;
};

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr, "redis-server: %s\nTry 'redis-server --help'.\n", message.c_str());
  std::exit(2);
}

// A decimal number in [min, max]; false for anything else (sign, spaces, suffixes, overflow).
bool parse_number(std::string_view text, unsigned long long min, unsigned long long max,
                  unsigned long long& out) {
  if (text.empty() || text.size() > 19) return false;
  unsigned long long n = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + static_cast<unsigned long long>(c - '0');
  }
  if (n < min || n > max) return false;
  out = n;
  return true;
}

Config parse_args(int argc, char** argv) {
  Config config;
  evloop::Options& options = config.options;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    auto value = [&]() -> std::string_view {
      if (i + 1 >= argc) usage_error(std::string(arg) + " needs a value");
      return argv[++i];
    };
    unsigned long long n = 0;
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (arg == "--listen") {
      options.listen.emplace_back(value());
    } else if (arg == "--loops") {
      const std::string_view v = value();
      if (v == "auto") {
        options.loops = evloop::Options::kAutoLoops;
      } else if (parse_number(v, 1, 4096, n)) {
        options.loops = static_cast<unsigned>(n);
      } else {
        usage_error("--loops takes 1..4096 or auto, not '" + std::string(v) + "'");
      }
    } else if (arg == "--reuseport") {
      options.reuseport = true;
    } else if (arg == "--max-bulk") {
      const std::string_view v = value();
      if (!parse_number(v, 1, 512ULL << 20, n)) {
        usage_error("--max-bulk takes 1..536870912 bytes, not '" + std::string(v) + "'");
      }
      config.limits.max_bulk_bytes = static_cast<std::size_t>(n);
    } else {
      usage_error("unknown option '" + std::string(arg) + "'");
    }
  }
  if (options.listen.empty()) options.listen.emplace_back("tcp://127.0.0.1:6379");
  // The parser leaves an incomplete command unconsumed, so evloop holds at most one partial
  // command per connection. A command may carry several bulks: allow a few of the largest
  // (evloop closes the connection beyond that, like Redis's client-query-buffer-limit).
  options.input_limit = 2 * config.limits.max_bulk_bytes + 2 * config.limits.max_inline_bytes;
  return config;
}

resp::Store g_store;

// Handles the bytes of one read: every complete command runs, in order, and all replies go out
// in a single write (a pipeline of N commands costs one send). Returns the bytes consumed.
std::size_t on_data(evloop::Conn& conn, std::string_view bytes) {
  auto* parser = std::any_cast<resp::CommandParser>(&conn.context());
  thread_local std::string out;
  out.clear();
  const resp::Millis now = resp::now_millis();
  std::size_t used = 0;
  bool close = false;
  while (!close) {
    resp::ParseResult r = parser->parse(bytes.substr(used));
    if (r.status == resp::ParseStatus::incomplete) break;
    if (r.status == resp::ParseStatus::error) {
      resp::append_error(r.error, out);  // "-ERR Protocol error: ...", then close, like Redis
      close = true;
      break;
    }
    used += r.consumed;
    close = resp::execute(parser->args(), g_store, now, out) == resp::After::close;
  }
  if (!out.empty()) conn.write(out);
  if (close) {
    conn.close();  // after the replies above are sent
    return bytes.size();
  }
  return used;
}

}  // namespace

int main(int argc, char** argv) {
  Config config = parse_args(argc, argv);

  evloop::Callbacks callbacks;
  callbacks.serving = [](const evloop::ServingInfo& info) {
    for (const evloop::SocketAddress& addr : info.addresses) {
      std::printf("listening on %s\n", addr.to_url().c_str());
    }
    std::fflush(stdout);
  };
  const resp::Limits limits = config.limits;
  callbacks.opened = [limits](evloop::Conn& conn) {
    conn.context() = resp::CommandParser(limits);
  };
  callbacks.data = on_data;
  // Active expiry on loop 0, ten times a second (keys are also expired when touched).
  callbacks.tick = [](evloop::Loop&) {
    g_store.expire_due(resp::now_millis());
    return std::chrono::milliseconds(100);
  };

  evloop::Server server(std::move(config.options), std::move(callbacks));
  // Stop on SIGINT or SIGTERM: both stay blocked in every thread (the loop threads inherit the
  // mask when start() creates them) and this thread takes them with sigwait(), then calls stop().
  // Calling stop() from an async signal handler works too (it is async-signal-safe), but under
  // TSan, which defers signal handlers, that stop was lost about once in a few hundred runs;
  // sigwait() leaves no handler to defer.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  const evloop::Status status = server.start();
  if (!status) {
    std::fprintf(stderr, "redis-server: %s\n", status.message().c_str());
    return 1;
  }
  int sig = 0;
  while (sigwait(&stop_signals, &sig) != 0) {
  }
  server.stop();
  server.wait();
  return 0;
}
