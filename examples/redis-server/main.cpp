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
#include "session.hpp"
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
  --send-timeout SECONDS
                      reset a client whose replies make no progress for this long (it
                      stopped reading: a GET of a large value would hold its memory);
                      0 = never (default 60)
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
  std::chrono::seconds send_timeout{60};
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
        } else if (flag == "--send-timeout") {
          send_timeout = example::parse_seconds(kProgram, flag, value());
        } else {
          return false;
        }
        return true;
      });
  config.options.idle_timeout = timeout;
  config.options.send_timeout = send_timeout;
  resp::set_config_timeout(timeout.count());
  resp::fit_limits(config.limits, config.options);
  return config;
}

resp::Store g_store;

evloop::Server* g_server = nullptr;

// INFO's "# Clients" and "# Stats" sections, from evloop's counters (all loops): what tests and
// benchmarks watch, e.g. evloop_output_buffered above the high-water mark while a client is paced.
std::string info_from_evloop() {
  evloop::LoopStats t;
  for (const evloop::LoopStats& s : g_server->stats()) t += s;
  std::string text = "# Clients\r\nconnected_clients:" + std::to_string(t.open_connections);
  text.append("\r\n\r\n# Stats\r\ntotal_net_input_bytes:").append(std::to_string(t.bytes_in));
  text.append("\r\ntotal_net_output_bytes:").append(std::to_string(t.bytes_out));
  text.append("\r\nevloop_read_pauses:").append(std::to_string(t.read_pauses));
  text.append("\r\nevloop_output_buffered:").append(std::to_string(t.output_buffered));
  text.append("\r\nevloop_input_buffered:").append(std::to_string(t.input_buffered));
  text.append("\r\n");
  return text;
}

resp::Session& session_of(evloop::Conn& conn) {
  return std::any_cast<resp::Session&>(conn.context());
}

}  // namespace

int main(int argc, char** argv) {
  Config config = parse_args(argc, argv);

  evloop::Callbacks callbacks;
  callbacks.serving = example::print_listening;
  // Read by every connection's session for the server's lifetime.
  static const resp::SessionConfig session_config{config.limits, config.options.output_high_water,
                                                  config.options.input_limit,
                                                  config.options.output_limit};
  callbacks.opened = [](evloop::Conn& conn) {
    conn.context() = resp::Session(session_config, g_store);
  };
  callbacks.data = [](evloop::Conn& conn, std::string_view bytes) {
    return session_of(conn).on_data(conn, bytes);
  };
  // Replies are paced by back-pressure: a session that stopped above the high-water mark runs
  // the commands it holds when the output drains to the low-water mark (see session.hpp).
  // (Not `all_sent`: it would be a call after nearly every reply, and `low_water` is owed
  // whenever a session stops.)
  callbacks.low_water = [](evloop::Conn& conn) { session_of(conn).on_drained(conn); };
  // Active expiry on loop 0, ten times a second (keys are also expired when touched).
  callbacks.tick = [](evloop::Loop&) {
    g_store.expire_due(resp::now_millis());
    return std::chrono::milliseconds(100);
  };

  evloop::Server server(std::move(config.options), std::move(callbacks));
  g_server = &server;
  resp::set_info_extra(info_from_evloop);
  return example::serve_until_signal(kProgram, server, argc, argv);
}
