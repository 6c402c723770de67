// http-server: a small HTTP/1.1 server on evloop. GET / answers "Hello, World!"; keep-alive,
// pipelining and HTTP/1.0 work; malformed requests get 400 and a close, oversized heads 431,
// oversized bodies 413, unknown methods and chunked request bodies 501. It is the server the
// peer benchmark (bench/peers) measures against nginx.
#include <evloop/evloop.hpp>

#include <any>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "cli.hpp"
#include "http_handler.hpp"
#include "http_parser.hpp"

namespace {

constexpr const char* kUsage = R"(Usage: http-server [options]

Serves HTTP/1.1 (and 1.0): GET / answers "Hello, World!", POST /echo returns the body.

Options:
  --listen ADDR     address to serve (repeatable; default tcp://127.0.0.1:8080), e.g.
                    tcp://127.0.0.1:0 (a free port)  tcp6://[::1]:8080  unix:///tmp/http.sock
  --loops N         event loops (threads); "auto" = one per hardware thread (default 1)
  --reuseport       one SO_REUSEPORT listener per loop (the kernel balances connections)
  --max-body BYTES  largest request body accepted, larger gets 413 (default 1048576)
  --help            this text

Prints "listening on ADDR" for each bound address. Ctrl-C (SIGINT) or SIGTERM stops it.
)";

const example::Program kProgram{"http-server", kUsage, "tcp://127.0.0.1:8080"};

struct Config {
  evloop::Options options;
  httpd::Limits limits;
};

Config parse_args(int argc, char** argv) {
  Config config;
  config.options =
      example::parse_flags(kProgram, argc, argv, [&](std::string_view flag, const auto& value) {
        if (flag != "--max-body") return false;
        const std::string_view v = value();
        unsigned long long n = 0;
        if (!example::parse_number(v, 0, 1ULL << 32, n)) {
          example::usage_error(kProgram, "--max-body takes a byte count up to 4294967296, not '" +
                                             std::string(v) + "'");
        }
        config.limits.max_body_bytes = static_cast<std::size_t>(n);
        return true;
      });
  // The parser leaves an incomplete request unconsumed, so evloop holds at most one partial
  // request per connection: its head and its body. A little slack keeps evloop's own limit
  // from firing before the parser answers 431 or 413.
  config.options.input_limit = config.limits.max_head_bytes + config.limits.max_body_bytes + 4096;
  return config;
}

// Handles the bytes of one read: every complete request is answered, in order, with a single
// write for all of them (pipelined requests cost one send). Returns the bytes consumed.
std::size_t on_data(evloop::Conn& conn, std::string_view bytes) {
  auto* parser = std::any_cast<httpd::RequestParser>(&conn.context());
  thread_local std::string out;
  out.clear();
  std::size_t used = 0;
  bool close = false;
  while (!close) {
    httpd::ParseResult r = parser->parse(bytes.substr(used));
    if (r.status == httpd::ParseStatus::incomplete) {
      if (r.send_continue) out += httpd::kContinue;
      break;
    }
    if (r.status == httpd::ParseStatus::error) {
      httpd::append_error(r.error_status, r.error_reason, out);
      close = true;
      break;
    }
    const httpd::Request& req = parser->request();
    httpd::append_response(req, out);
    used += r.consumed;
    close = !req.keep_alive;
  }
  if (!out.empty()) conn.write(out);
  if (close) {
    conn.close();  // after the responses above are sent
    return bytes.size();
  }
  return used;
}

}  // namespace

int main(int argc, char** argv) {
  Config config = parse_args(argc, argv);

  evloop::Callbacks callbacks;
  callbacks.serving = example::print_listening;
  const httpd::Limits limits = config.limits;
  callbacks.opened = [limits](evloop::Conn& conn) {
    conn.context() = httpd::RequestParser(limits);
  };
  callbacks.data = on_data;

  evloop::Server server(std::move(config.options), std::move(callbacks));
  return example::serve_until_signal(kProgram, server);
}
