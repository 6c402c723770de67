// redis-server: a Redis-protocol (RESP2) key-value server on evloop, enough for redis-cli and
// redis-benchmark: PING, ECHO, SET (EX/PX/NX/XX/KEEPTTL), GET, DEL, EXISTS, INCR, MSET, MGET,
// DBSIZE, FLUSHALL, QUIT, SELECT 0, INFO, COMMAND, CONFIG GET. The store is shared by every loop
// (sharded, a mutex per shard). It is the server the peer benchmark (bench/peers) measures
// against the real redis-server.
#include <evloop/evloop.hpp>

#include <any>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "cli.hpp"
#include "commands.hpp"
#include "resp_parser.hpp"
#include "server_limits.hpp"
#include "store.hpp"

namespace {

constexpr const char* kUsage = R"(Usage: redis-server [options]

A Redis-protocol server (a subset of the commands) built on evloop.

Options:
  --listen ADDR       address to serve (repeatable; default tcp://127.0.0.1:6379), e.g.
                      tcp://127.0.0.1:0 (a free port)  tcp6://[::1]:6379  unix:///tmp/redis.sock
                      fd://N (an inherited socket)  systemd:// or systemd://NAME
  --loops N           event loops (threads); "auto" = one per hardware thread (default 1)
  --reuseport         one SO_REUSEPORT listener per loop (the kernel balances connections)
  --backend B         event backend: auto, epoll or io_uring (default auto: $EVLOOP_BACKEND,
                      else epoll); io_uring falls back to epoll where the kernel refuses it
  --max-bulk BYTES    longest bulk string accepted (default 67108864); the output limit
                      per connection grows with it, so that GET can return what SET took
  --timeout SECONDS   close a client that sends nothing for this long; 0 = never
                      (default 0, as Redis's timeout)
  --help              this text

Prints "listening on ADDR" for each bound address. Ctrl-C (SIGINT) or SIGTERM stops it.
SIGUSR2 starts the same binary with the same arguments and hands it the listeners: new clients
go to it (with an empty store); connected clients stay here until they close (30 s at most).
)";

const example::Program kProgram{"redis-server", kUsage, "tcp://127.0.0.1:6379"};

struct Config {
  evloop::Options options;
  resp::Limits limits;
};

Config parse_args(int argc, char** argv) {
  Config config;
  std::chrono::seconds timeout{0};  // (parse_flags returns the Options: set them after it)
  config.options =
      example::parse_flags(kProgram, argc, argv, [&](std::string_view flag, const auto& value) {
        if (flag == "--max-bulk") {
          const std::string_view v = value();
          unsigned long long n = 0;
          if (!example::parse_number(v, 1, 512ULL << 20, n)) {
            example::usage_error(
                kProgram, "--max-bulk takes 1..536870912 bytes, not '" + std::string(v) + "'");
          }
          config.limits.max_bulk_bytes = static_cast<std::size_t>(n);
        } else if (flag == "--timeout") {
          timeout = example::parse_seconds(kProgram, flag, value());
        } else {
          return false;
        }
        return true;
      });
  config.options.idle_timeout = timeout;
  resp::set_config_timeout(timeout.count());
  resp::fit_limits(config.limits, config.options);
  return config;
}

resp::Store g_store;

// Replies are gathered in a per-thread string and handed to evloop whenever they pass this, and
// at the end of each read: a pipeline of small commands costs one send, and a read that asks for
// many large replies never builds one string of them all.
constexpr std::size_t kWriteChunk = 64 * 1024;
// A larger scratch string (grown by a large reply) is given back after the read.
constexpr std::size_t kKeepScratch = 1024 * 1024;

// Handles the bytes of one read: every complete command runs, in order, and its reply is
// written. Returns the bytes consumed.
std::size_t on_data(evloop::Conn& conn, std::string_view bytes) {
  auto* parser = std::any_cast<resp::CommandParser>(&conn.context());
  thread_local std::string out;
  const resp::Millis now = resp::now_millis();
  std::size_t used = 0;
  bool close = false;
  // A connection closing meanwhile (over its output limit) runs no further command.
  while (!close && !conn.closing()) {
    resp::ParseResult r = parser->parse(bytes.substr(used));
    if (r.status == resp::ParseStatus::incomplete) break;
    if (r.status == resp::ParseStatus::error) {
      resp::append_error(r.error, out);  // "-ERR Protocol error: ...", then close, like Redis
      close = true;
      break;
    }
    used += r.consumed;
    close = resp::execute(parser->args(), g_store, now, out) == resp::After::close;
    if (out.size() >= kWriteChunk) {
      conn.write(out);
      out.clear();
    }
  }
  if (!out.empty()) conn.write(out);
  out.clear();
  if (out.capacity() > kKeepScratch) std::string().swap(out);
  if (close || conn.closing()) {
    conn.close();  // after the replies above are sent
    return bytes.size();
  }
  return used;
}

}  // namespace

int main(int argc, char** argv) {
  Config config = parse_args(argc, argv);

  evloop::Callbacks callbacks;
  callbacks.serving = example::print_listening;
  const resp::Limits limits = config.limits;
  callbacks.opened = [limits](evloop::Conn& conn) { conn.context() = resp::CommandParser(limits); };
  callbacks.data = on_data;
  // Active expiry on loop 0, ten times a second (keys are also expired when touched).
  callbacks.tick = [](evloop::Loop&) {
    g_store.expire_due(resp::now_millis());
    return std::chrono::milliseconds(100);
  };

  evloop::Server server(std::move(config.options), std::move(callbacks));
  return example::serve_until_signal(kProgram, server, argc, argv);
}
