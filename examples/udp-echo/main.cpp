// udp-echo: every datagram is sent back to its sender. The smallest complete UDP server on
// evloop, and the server the UDP benchmark (bench/udp_runner) measures against plain sockets.
#include <evloop/evloop.hpp>

#include "cli.hpp"

#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr const char* kUsage = R"(Usage: udp-echo [options]

Sends every datagram back to its sender.

Options:
  --listen ADDR   UDP address to serve (repeatable; default udp://127.0.0.1:5555), e.g.
                  udp://0.0.0.0:7000  udp6://[::1]:7000  udp://127.0.0.1:0 (a free port)
  --loops N       event loops (threads); "auto" = one per hardware thread (default 1)
  --reuseport     one SO_REUSEPORT socket per loop (the kernel spreads the peers);
                  without it loop 0 serves each address
  --backend B     event backend: auto, epoll or io_uring (default auto: $EVLOOP_BACKEND,
                  else epoll); io_uring falls back to epoll where the kernel refuses it
  --batch N       datagrams per recvmmsg/sendmmsg call, 1..1024 (default 32)
  --rcvbuf BYTES  SO_RCVBUF of each socket, 1..1073741824 (default: the kernel's; capped
                  by net.core.rmem_max): room for bursts while a loop is busy
  --gso           send with UDP segmentation offload (Linux 4.18+; off where missing)
  --gro           receive with UDP receive offload (Linux 5.0+; off where missing)
  --stats         on exit, print the loops' counters as one JSON line
  --help          this text

Prints "listening on ADDR" for each bound address. Ctrl-C (SIGINT) or SIGTERM stops it.
SIGUSR2 starts the same binary with the same arguments and hands it the UDP sockets themselves
(nothing is bound twice, no queued datagram is lost), then this process exits.
)";

const example::Program kProgram{"udp-echo", kUsage, "udp://127.0.0.1:5555"};

struct Config {
  evloop::Options options;
  evloop::UdpOptions udp;
  bool print_stats = false;
};

Config parse_args(int argc, char** argv) {
  Config c;
  c.options =
      example::parse_flags(kProgram, argc, argv, [&](std::string_view flag, const auto& value) {
        if (flag == "--stats") {
          c.print_stats = true;
        } else if (flag == "--gso") {
          c.udp.gso = true;
        } else if (flag == "--gro") {
          c.udp.gro = true;
        } else if (flag == "--rcvbuf") {
          const std::string_view v = value();
          unsigned long long n = 0;
          if (!example::parse_number(v, 1, 1ull << 30, n)) {
            example::usage_error(
                kProgram, "--rcvbuf takes 1..1073741824 bytes, not '" + std::string(v) + "'");
          }
          c.udp.socket_receive_buffer = static_cast<int>(n);
        } else if (flag == "--batch") {
          const std::string_view v = value();
          unsigned long long n = 0;
          if (!example::parse_number(v, 1, 1024, n)) {
            example::usage_error(kProgram, "--batch takes 1..1024, not '" + std::string(v) + "'");
          }
          c.udp.batch = static_cast<unsigned>(n);
        } else {
          return false;
        }
        return true;
      });
  return c;
}

void print_stats_json(const evloop::Server& server) {
  evloop::LoopStats t;
  for (const evloop::LoopStats& s : server.stats()) t += s;
  auto u = [](std::uint64_t v) { return static_cast<unsigned long long>(v); };
  std::printf(
      "{\"stats\":{\"backend\":\"%s\",\"waits\":%llu,\"wakeups\":%llu,\"datagrams_in\":%llu,"
      "\"datagrams_out\":%llu,"
      "\"bytes_in\":%llu,\"bytes_out\":%llu,\"receive_calls\":%llu,\"send_calls\":%llu,"
      "\"drops\":%llu,\"truncations\":%llu,\"send_errors\":%llu,\"gso_sends\":%llu,"
      "\"gro_receives\":%llu,\"write_arms\":%llu,\"poller_changes\":%llu}}\n",
      server.backend(), u(t.waits), u(t.wakeups), u(t.datagrams_in), u(t.datagrams_out),
      u(t.bytes_in), u(t.bytes_out), u(t.datagram_receive_calls), u(t.datagram_send_calls),
      u(t.datagram_drops), u(t.datagram_truncations), u(t.datagram_send_errors), u(t.gso_sends),
      u(t.gro_receives), u(t.write_arms), u(t.poller_changes));
}

}  // namespace

int main(int argc, char** argv) {
  Config config = parse_args(argc, argv);
  evloop::Callbacks callbacks;
  callbacks.serving = [](const evloop::ServingInfo& info) {
    example::print_listening(info);
    std::fprintf(stderr, "udp-echo: %zu loop%s; Ctrl-C to stop\n", info.loops,
                 info.loops == 1 ? "" : "s");
  };
  evloop::DatagramHandlers handlers;
  handlers.datagram = [](evloop::Udp& udp, const evloop::SocketAddress& peer,
                         std::string_view bytes) { udp.send_to(peer, bytes); };
  handlers.truncated = [](evloop::Udp&, const evloop::SocketAddress& peer, std::string_view) {
    std::fprintf(stderr, "udp-echo: a datagram from %s was too long; not echoed\n",
                 peer.to_string().c_str());
  };

  // The listen addresses are UDP ones, served with these handlers; the Server's own (TCP)
  // listen list stays empty.
  const std::vector<std::string> addresses = std::move(config.options.listen);
  config.options.listen.clear();
  evloop::Server server(config.options, std::move(callbacks));
  for (const std::string& address : addresses) server.listen_udp(address, handlers, config.udp);
  const int code = example::serve_until_signal(kProgram, server, argc, argv);
  if (code == 0 && config.print_stats) print_stats_json(server);
  return code;
}
