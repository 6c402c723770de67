// split_echo: an echo server whose handler answers each message with two writes, a header (its
// first H bytes) and a body (the rest): the handler ConnOptions::write_through exists for, measured
// by bench/write_through.sh. The bytes echoed are the bytes received, so loadgen checks them.
#include <evloop/evloop.hpp>

#include "cli.hpp"

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>

namespace {

constexpr const char* kUsage = R"(Usage: split_echo --message-size BYTES [options]

Echoes each whole message of BYTES as two writes: its first --header bytes, then the rest.

Options:
  --listen ADDR          address to serve (default tcp://127.0.0.1:0)
  --message-size BYTES   the load generator's message size (2..16777216)
  --header BYTES         the first write of each message (default 16; below the message size)
  --write-through BYTES  evloop's ConnOptions::write_through, or never (default 32768)
  --backend B            auto, epoll or io_uring (default auto)
  --stats                on exit, print the loop's counters as one JSON line
  --help                 this text
)";

const example::Program kProgram{"split_echo", kUsage, "tcp://127.0.0.1:0"};

struct Split {
  std::size_t message = 0;
  std::size_t header = 16;
};

std::size_t parse_size(std::string_view flag, std::string_view value, unsigned long long min) {
  unsigned long long n = 0;
  if (!example::parse_number(value, min, 16ULL << 20, n)) {
    example::usage_error(kProgram, std::string(flag) + " takes " + std::to_string(min) +
                                       "..16777216 bytes, not '" + std::string(value) + "'");
  }
  return static_cast<std::size_t>(n);
}

}  // namespace

int main(int argc, char** argv) {
  bool print_stats = false;
  Split split;
  std::size_t write_through = evloop::ConnOptions{}.write_through;
  evloop::Options options =
      example::parse_flags(kProgram, argc, argv, [&](std::string_view flag, const auto& value) {
        if (flag == "--stats") {
          print_stats = true;
        } else if (flag == "--message-size") {
          split.message = parse_size(flag, value(), 2);
        } else if (flag == "--header") {
          split.header = parse_size(flag, value(), 1);
        } else if (flag == "--write-through") {
          write_through = example::parse_write_through(kProgram, value());
        } else {
          return false;
        }
        return true;
      });
  if (split.message == 0) example::usage_error(kProgram, "--message-size is required");
  if (split.header >= split.message) {
    example::usage_error(kProgram, "--header must be below --message-size");
  }
  options.write_through = write_through;

  evloop::Callbacks callbacks;
  callbacks.serving = example::print_listening;
  // Only whole messages are answered; a partial one stays unconsumed until the rest arrives.
  callbacks.data = [split](evloop::Conn& conn, std::string_view bytes) {
    std::size_t used = 0;
    for (; bytes.size() - used >= split.message; used += split.message) {
      conn.write(bytes.substr(used, split.header));
      conn.write(bytes.substr(used + split.header, split.message - split.header));
    }
    return used;
  };
  evloop::Server server(std::move(options), std::move(callbacks));
  const int code = example::serve_until_signal(kProgram, server, argc, argv);
  if (code == 0 && print_stats) example::print_stats_json(server);
  return code;
}
