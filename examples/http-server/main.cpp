// http-server: a small HTTP/1.1 server on evloop. GET / answers "Hello, World!"; keep-alive,
// pipelining and HTTP/1.0 work; malformed requests get 400 and a close, oversized heads 431,
// oversized bodies 413, unknown methods and chunked request bodies 501. It is the server the
// peer benchmark (bench/peers) measures against nginx.
#include <evloop/evloop.hpp>
#include <pthread.h>

#include <any>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

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

struct Config {
  evloop::Options options;
  httpd::Limits limits;
};

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr, "http-server: %s\nTry 'http-server --help'.\n", message.c_str());
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
    } else if (arg == "--max-body") {
      const std::string_view v = value();
      if (!parse_number(v, 0, 1ULL << 32, n)) {
        usage_error("--max-body takes a byte count up to 4294967296, not '" + std::string(v) + "'");
      }
      config.limits.max_body_bytes = static_cast<std::size_t>(n);
    } else {
      usage_error("unknown option '" + std::string(arg) + "'");
    }
  }
  if (options.listen.empty()) options.listen.emplace_back("tcp://127.0.0.1:8080");
  // The parser leaves an incomplete request unconsumed, so evloop holds at most one partial
  // request per connection: its head and its body. A little slack keeps evloop's own limit
  // from firing before the parser answers 431 or 413.
  options.input_limit = config.limits.max_head_bytes + config.limits.max_body_bytes + 4096;
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
  callbacks.serving = [](const evloop::ServingInfo& info) {
    for (const evloop::SocketAddress& addr : info.addresses) {
      std::printf("listening on %s\n", addr.to_url().c_str());
    }
    std::fflush(stdout);
  };
  const httpd::Limits limits = config.limits;
  callbacks.opened = [limits](evloop::Conn& conn) {
    conn.context() = httpd::RequestParser(limits);
  };
  callbacks.data = on_data;

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
    std::fprintf(stderr, "http-server: %s\n", status.message().c_str());
    return 1;
  }
  int sig = 0;
  while (sigwait(&stop_signals, &sig) != 0) {
  }
  server.stop();
  server.wait();
  return 0;
}
