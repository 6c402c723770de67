// tcp-proxy: forwards every client's byte stream to an upstream and the upstream's back, with
// back-pressure carried end to end, half-close passed on both ways, and failures passed on as
// resets. Each accepted client dials the upstream from its own loop, so a pair lives on one loop
// thread and its two sides reach each other directly, without a lock or a post.
//
// The two sides of a pair are symmetric: bytes read from one are written to the other (`pipe`
// below serves both). Per pair the proxy keeps nothing but each side's pointer to the other, in
// its context() slot (a pointer fits std::any's in-place storage): no allocation of its own per
// pair, none per message.
#include <evloop/evloop.hpp>

#include <any>
#include <chrono>
#include <cstdio>
#include <string>
#include <string_view>
#include <system_error>

#include "cli.hpp"

namespace {

constexpr const char* kUsage = R"(Usage: tcp-proxy --upstream ADDR [options]

Forwards each client's connection to ADDR and the upstream's bytes back, with back-pressure
both ways (a side that does not read holds back the other, never the proxy's memory), half-close
passed on (a FIN becomes a FIN after the bytes before it) and failures passed on as resets (a
refused or timed-out upstream, or a reset on either side, resets the other side).

Options:
  --upstream ADDR         where to forward: tcp://HOST:PORT, tcp4://, tcp6://[::1]:PORT or
                          unix:///path (required; host names are resolved for every client)
  --listen ADDR           address to serve (repeatable; default tcp://127.0.0.1:9000), e.g.
                          tcp://0.0.0.0:9000  tcp://127.0.0.1:0 (a free port)  unix:///tmp/p.sock
  --loops N               event loops (threads); "auto" = one per hardware thread (default 1);
                          a client and its upstream connection share a loop
  --reuseport             one SO_REUSEPORT listener per loop (the kernel balances clients)
  --backend B             event backend: auto, epoll or io_uring (default auto: $EVLOOP_BACKEND,
                          else epoll); io_uring falls back to epoll where the kernel refuses it
  --connect-timeout MS    a dial that takes longer resets its client (default 10000; 0 = no
                          limit but the kernel's own, about two minutes)
  --send-timeout SECONDS  a side whose pending output makes no progress for this long (its
                          peer stopped reading) is reset, and so is the other side (default
                          60; 0 = never)
  --idle-timeout SECONDS  a pair where no byte moves either way for this long is closed, each
                          side with a FIN (default 600; 0 = never)
  --stats                 on exit, print the loops' counters as one JSON line
  --help                  this text

Prints "listening on ADDR" for each bound address. Ctrl-C (SIGINT) or SIGTERM stops it.
SIGUSR2 starts the same binary with the same arguments and hands it the listeners: new clients
go to it; the pairs open here go on until they end (30 s at most).
)";

const example::Program kProgram{"tcp-proxy", kUsage, "tcp://127.0.0.1:9000"};

// The most one read takes from a socket (the loops' read buffer). Larger than evloop's default
// (64 KiB): a proxy moves bulk data, and at 4 × 64 KiB messages in flight a 256 KiB read costs
// the proxy 0.8× the CPU per message of a 64 KiB one (bench/peers/README.md).
constexpr std::size_t kReadSize = 256 * 1024;
// Output pending on one side above which the proxy stops reading from the other side. It
// resumes when that output is all sent (`all_sent`). Reading never resumes while the other
// side is behind, so at the start of every `data` call the receiving side has at most this
// much pending, and after it at most this plus one read.
constexpr std::size_t kPauseMark = 256 * 1024;
// Hence the most one side ever holds: a write past it would be a bug of this program, and the
// library resets that connection (errc::output_limit), so the bound holds whatever happens.
constexpr std::size_t kMaxPending = kPauseMark + kReadSize;

struct Config {
  evloop::Options options;
  std::string upstream;
  evloop::ConnectOptions dial;
  bool print_stats = false;
};

// The proxy pauses the side that is ahead, not the side that is behind. evloop's own
// back-pressure pauses a connection's reading when its *own* output passes
// output_high_water; for a proxy that is the wrong side and can deadlock (our requests back up
// to a slow upstream, so we stop reading its replies, so it stops reading our requests). Setting
// the high- and low-water marks to the output limit turns that pause off: a write that would pass
// the limit resets instead (see kMaxPending), so output never exceeds the high-water mark.
// Every write goes to the kernel at once: the proxy writes each read once, from the loop's read
// buffer, so nothing is gathered and only what the kernel refuses is copied.
// A side is idle when it neither receives nor sends: one side of a download only sends, and
// each side's sends are the other side's receives, so both sides' clocks see the pair's traffic.
void set_limits(evloop::ConnOptions& o, std::chrono::seconds send_timeout,
                std::chrono::seconds idle_timeout) {
  o.send_timeout = send_timeout;
  o.idle_timeout = idle_timeout;
  o.idle_counts_sends = true;
  o.output_limit = kMaxPending;
  o.output_high_water = kMaxPending;
  o.output_low_water = kMaxPending;
  o.write_through = 1;
}

Config parse_args(int argc, char** argv) {
  Config config;
  std::chrono::seconds send_timeout{60};
  std::chrono::seconds idle_timeout{600};
  config.options =
      example::parse_flags(kProgram, argc, argv, [&](std::string_view flag, const auto& value) {
        if (flag == "--upstream") {
          config.upstream = value();
          evloop::ListenAddress parsed;
          if (const evloop::Status s = evloop::parse_connect_address(config.upstream, parsed); !s) {
            example::usage_error(kProgram, "--upstream: " + s.message());
          }
          // A UDP address parses as a connect address too (Loop::connect_udp takes it), but a
          // TCP dial refuses it: every client would be reset.
          if (evloop::is_udp(parsed.transport)) {
            example::usage_error(kProgram, "--upstream " + config.upstream +
                                               ": this program forwards TCP, not UDP: use tcp://, "
                                               "tcp4://, tcp6:// or unix://");
          }
        } else if (flag == "--connect-timeout") {
          const std::string_view v = value();
          unsigned long long ms = 0;
          if (!example::parse_number(v, 0, 86'400'000, ms)) {
            example::usage_error(
                kProgram,
                "--connect-timeout takes milliseconds, 0..86400000, not '" + std::string(v) + "'");
          }
          config.dial.connect_timeout = std::chrono::milliseconds(ms);
        } else if (flag == "--send-timeout") {
          send_timeout = example::parse_seconds(kProgram, flag, value());
        } else if (flag == "--idle-timeout") {
          idle_timeout = example::parse_seconds(kProgram, flag, value());
        } else if (flag == "--stats") {
          config.print_stats = true;
        } else {
          return false;
        }
        return true;
      });
  if (config.upstream.empty()) example::usage_error(kProgram, "--upstream is required");
  config.options.read_buffer_size = kReadSize;
  set_limits(config.options, send_timeout, idle_timeout);
  set_limits(config.dial, send_timeout, idle_timeout);
  return config;
}

// --- the pair ------------------------------------------------------------------------------------

// The other side of `c`'s pair, or null once it has gone.
evloop::Conn* other_side(evloop::Conn& c) {
  evloop::Conn** other = std::any_cast<evloop::Conn*>(&c.context());
  return other != nullptr ? *other : nullptr;
}

// `c` is going: its other side forgets it, and is returned.
evloop::Conn* unlink(evloop::Conn& c) {
  evloop::Conn* other = other_side(c);
  if (other != nullptr) other->context() = static_cast<evloop::Conn*>(nullptr);
  c.context() = static_cast<evloop::Conn*>(nullptr);
  return other;
}

// A close that tells the other side of a failure: anything but a clean end. A stop of the
// proxy (server_stopped) is a clean end: each side gets a FIN after its pending output.
bool failed(std::error_code error) {
  return error && error != evloop::make_error_code(evloop::errc::server_stopped);
}

// What both sides do: bytes, a FIN, output drained, the end.
evloop::Handlers pipe_handlers() {
  evloop::Handlers h;
  h.data = [](evloop::Conn& from, std::string_view bytes) {
    if (evloop::Conn* to = other_side(from)) {
      to->write(bytes);  // while the upstream is still connecting, kept until it opens
      if (to->output_pending() > kPauseMark) from.pause_reading();
    }
    return bytes.size();
  };
  h.eof = [](evloop::Conn& from) {
    // A FIN after every byte before it; the other direction goes on. A side whose both
    // directions have ended closes by itself.
    if (evloop::Conn* to = other_side(from)) to->shutdown_write();
  };
  h.all_sent = [](evloop::Conn& to) {
    evloop::Conn* from = other_side(to);
    if (from != nullptr && from->reading_paused()) from->resume_reading();
  };
  h.closed = [](evloop::Conn& c, std::error_code error) {
    // A clean end happens only once both directions ended, so the other side has ended (or
    // is ending) cleanly too: leave it be. An idle pair ends with a FIN on both sides (nothing
    // was lost). A failure resets the other side, so its peer cannot take a truncated stream
    // for a complete one.
    evloop::Conn* other = unlink(c);
    if (other == nullptr) return;
    if (error == evloop::make_error_code(evloop::errc::idle_timeout)) return other->close();
    if (failed(error)) other->abort();
  };
  return h;
}

}  // namespace

int main(int argc, char** argv) {
  const Config config = parse_args(argc, argv);

  evloop::Handlers upstream = pipe_handlers();
  upstream.connect_failed = [&config](evloop::Conn& up, std::error_code error) {
    evloop::Conn* client = unlink(up);
    if (client == nullptr) return;  // the client went first and cancelled the dial
    if (error != evloop::make_error_code(evloop::errc::server_stopped)) {
      std::fprintf(stderr, "tcp-proxy: %s: upstream %s: %s\n",
                   client->remote_address().to_string().c_str(), config.upstream.c_str(),
                   error.message().c_str());
    }
    client->abort();  // it sent bytes that went nowhere: not a clean end
  };

  evloop::Callbacks callbacks;
  static_cast<evloop::Handlers&>(callbacks) = pipe_handlers();
  callbacks.opened = [&config, &upstream](evloop::Conn& client) {
    // On the client's loop: a same-thread dial exists as soon as connect() returns, and opens
    // (or fails) only after this handler, so the two sides are linked before either fires.
    const evloop::ConnRef ref = client.loop().connect(config.upstream, upstream, config.dial);
    evloop::Conn* up = ref.get();
    if (up == nullptr) return client.abort();  // the loop is stopping
    up->context() = &client;
    client.context() = up;
  };
  callbacks.serving = [&config](const evloop::ServingInfo& info) {
    example::print_listening(info);
    std::fprintf(stderr, "tcp-proxy: to %s; %zu loop%s; Ctrl-C to stop\n", config.upstream.c_str(),
                 info.loops, info.loops == 1 ? "" : "s");
  };

  evloop::Server server(config.options, std::move(callbacks));
  const int code = example::serve_until_signal(kProgram, server, argc, argv);
  if (code == 0 && config.print_stats) example::print_stats_json(server);
  return code;
}
