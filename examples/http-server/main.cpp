// http-server: a small HTTP/1.1 server on evloop. GET / answers "Hello, World!", or with --root
// DIR the files under DIR are served (bodies with Conn::send_file); keep-alive, pipelining (paced
// by back-pressure) and HTTP/1.0 work; request bodies come with Content-Length or chunked
// (Transfer-Encoding: chunked, decoded); malformed requests get 400 and a close (at the first byte
// that shows it), oversized request lines 414 and heads 431, oversized bodies 413, unknown methods
// and transfer codings before a final chunked 501 (one that does not end in chunked: 400), a head
// that takes too long 408, a body that stops arriving 408; idle keep-alive connections are closed.
// It is the server the peer benchmark (bench/peers) measures against nginx.
#include <evloop/evloop.hpp>

#include <unistd.h>

#include <any>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "cli.hpp"
#include "deadlines.hpp"
#include "http_handler.hpp"
#include "http_parser.hpp"
#include "paced_input.hpp"
#include "static_files.hpp"

namespace {

constexpr const char* kUsage = R"(Usage: http-server [options]

Serves HTTP/1.1 (and 1.0): GET / answers "Hello, World!", POST /echo returns the body.
With --root, GET and HEAD serve the files under DIR instead.

Options:
  --listen ADDR     address to serve (repeatable; default tcp://127.0.0.1:8080), e.g.
                    tcp://127.0.0.1:0 (a free port)  tcp6://[::1]:8080  unix:///tmp/http.sock
                    fd://N (an inherited socket)  systemd:// or systemd://NAME
  --loops N         event loops (threads); "auto" = one per hardware thread (default 1)
  --reuseport       one SO_REUSEPORT listener per loop (the kernel balances connections)
  --backend B       event backend: auto, epoll or io_uring (default auto: $EVLOOP_BACKEND,
                    else epoll); io_uring falls back to epoll where the kernel refuses it
  --root DIR        serve GET and HEAD of the regular files under DIR (a directory stands
                    for its index.html): Content-Type from the extension, Last-Modified and
                    If-Modified-Since (304), 404 for what is not there, 403 for a path that
                    leaves DIR ("..", %2e%2e, %2f, %00) or has a symbolic link in it
  --max-body BYTES  largest request body accepted, larger gets 413 (default 1048576); a
                    chunked body's framing may add max-body/8 + 8 KiB (413 beyond)
  --header-timeout SECONDS
                    the whole request head must arrive within this, counted from its first
                    byte (from the accept for a connection's first request), else 408 and
                    close; 0 = off (default 60)
  --body-timeout SECONDS
                    while a request body arrives, each read of it must come within this of
                    the one before, else 408 and close; 0 = off (default 60)
  --keepalive-timeout SECONDS
                    close a connection that has no request in progress for this long
                    (no response); 0 = off (default 75)
  --help            this text

Prints "listening on ADDR" for each bound address. Ctrl-C (SIGINT) or SIGTERM stops it.
SIGUSR2 upgrades it live: the same binary (as it is on disk now) and arguments start and take
over the listeners and every connection between requests; a connection in the middle of a
request finishes it here (with "Connection: close"), then this process exits.
)";

const example::Program kProgram{"http-server", kUsage, "tcp://127.0.0.1:8080"};

struct Config {
  evloop::Options options;
  httpd::Limits limits;
  httpd::Timeouts timeouts;
};

// The files of --root (not enabled without it). Opened before the loops start; read-only then.
httpd::StaticFiles g_files;

Config parse_args(int argc, char** argv) {
  Config config;
  config.options =
      example::parse_flags(kProgram, argc, argv, [&](std::string_view flag, const auto& value) {
        if (flag == "--max-body") {
          const std::string_view v = value();
          unsigned long long n = 0;
          if (!example::parse_number(v, 0, 1ULL << 32, n)) {
            example::usage_error(kProgram, "--max-body takes a byte count up to 4294967296, not '" +
                                               std::string(v) + "'");
          }
          config.limits.max_body_bytes = static_cast<std::size_t>(n);
        } else if (flag == "--root") {
          std::string error;
          if (!g_files.open(std::string(value()), error)) {
            example::usage_error(kProgram, "--root " + error);
          }
        } else if (flag == "--header-timeout") {
          config.timeouts.header = example::parse_seconds(kProgram, flag, value());
        } else if (flag == "--body-timeout") {
          config.timeouts.body = example::parse_seconds(kProgram, flag, value());
        } else if (flag == "--keepalive-timeout") {
          config.timeouts.keepalive = example::parse_seconds(kProgram, flag, value());
        } else {
          return false;
        }
        return true;
      });
  // The parser leaves an incomplete request unconsumed, so evloop holds at most one partial
  // request per connection: its head and its body, and for a chunked body the framing, which the
  // parser bounds (Limits::max_request_bytes()). A little slack keeps evloop's own limit from
  // firing before the parser answers 431 or 413.
  config.options.input_limit = config.limits.max_request_bytes() + 4096;
  // A response the client stops reading (a large file, say) is given up after a minute without
  // progress, like nginx's send_timeout.
  config.options.send_timeout = std::chrono::seconds(60);
  return config;
}

// One connection's state: its parser, the deadline of its timeouts and the one timer that
// checks that deadline (0 when none is armed); whether a request has been answered, and whether
// one is in progress (part of it has arrived, or its response waits for the output to drain).
struct Session {
  httpd::RequestParser parser;
  httpd::Deadlines deadlines;
  evloop::TimerId timer = 0;
  example::PacedInput input;   // requests held back while responses drain
  bool last_answered = false;  // a response said "Connection: close": nothing more is read
  bool answered = false;
  bool in_request = false;
};

// What every connection's `data` needs of the configuration (set before the loops start).
std::size_t g_high_water = 0;
std::size_t g_input_limit = 0;

Session& session_of(evloop::Conn& conn) { return std::any_cast<Session&>(conn.context()); }

void check_deadline(evloop::Conn& conn);

// Arms the connection's timer, unless one is armed or no deadline is pending. The timer holds a
// ConnRef, not the Conn: should the connection close first, the post finds no connection and is
// dropped (and `closed` cancels the timer anyway).
void arm_timer(evloop::Conn& conn, Session& session, httpd::Clock::time_point now) {
  if (session.timer != 0) return;
  const std::optional<httpd::Clock::duration> delay = session.deadlines.timer_delay(now);
  if (!delay) return;
  session.timer = conn.loop().run_after(*delay, [ref = conn.ref()] { ref.post(check_deadline); });
}

// A request that did not arrive in time: 408, then close (after the 408 and any earlier response
// still pending are sent).
void time_out(evloop::Conn& conn, std::string_view why) {
  std::string out;
  httpd::append_error(408, why, out);
  conn.write(out);
  conn.close();
}

// The timer fired: act on an expired deadline, or wait for the time left.
void check_deadline(evloop::Conn& conn) {
  Session& session = session_of(conn);
  session.timer = 0;
  if (conn.closing()) return;
  const httpd::Clock::time_point now = httpd::Clock::now();
  switch (session.deadlines.expired(now)) {
    case httpd::Deadlines::Expired::head:
      return time_out(conn, "the request head did not arrive in time");
    case httpd::Deadlines::Expired::body:
      return time_out(conn, "the request body stopped arriving");
    case httpd::Deadlines::Expired::keepalive:
      if (conn.output_pending() == 0) {
        conn.close();
        return;
      }
      // A response still going out (a large file) is not idleness: the keep-alive time starts
      // again (send_timeout bounds a client that stopped reading).
      session.deadlines.on_read(now, httpd::Awaiting::next_request, true);
      arm_timer(conn, session, now);
      return;
    case httpd::Deadlines::Expired::none:
      arm_timer(conn, session, now);
      return;
  }
}

// Answers one complete request. A file body goes out with send_file() behind the responses
// gathered so far in `out` (evloop keeps bytes and file ranges in order).
void respond(evloop::Conn& conn, const httpd::Request& req, example::Responses& responses) {
  if (!g_files.enabled() ||
      (req.method != httpd::Method::get && req.method != httpd::Method::head)) {
    httpd::append_response(req, responses.out());
    return;
  }
  const httpd::File file = g_files.respond(req, responses.out());
  if (file.fd < 0) return;
  responses.flush();
  conn.send_file(evloop::TakeFd{file.fd}, 0, file.size);  // evloop closes it once sent
}

// Answers the complete requests at the front of `input`, in order, with one write for all of
// them when they are small (pipelined requests cost one send), until the output passes the
// high-water mark (see paced_input.hpp). Sets `used` to the bytes of the requests answered.
example::Ran run(evloop::Conn& conn, Session& session, std::string_view input, std::size_t& used) {
  if (session.last_answered) {  // the bytes after a request that ended the connection
    used = input.size();
    return example::Ran::closed;
  }
  example::Responses responses(conn);
  std::string& out = responses.out();
  used = 0;
  bool completed = false;
  bool failed = false;
  example::Ran ran = example::Ran::all;
  for (;;) {
    if (example::above_mark(conn, g_high_water)) {
      ran = example::Ran::paused;
      break;
    }
    httpd::ParseResult r = session.parser.parse(input.substr(used));
    if (r.status == httpd::ParseStatus::incomplete) {
      if (r.send_continue) out += httpd::kContinue;
      break;
    }
    if (r.status == httpd::ParseStatus::error) {
      httpd::append_error(r.error_status, r.error_reason, out);
      ran = example::Ran::closed;
      failed = true;
      break;
    }
    const httpd::Request& req = session.parser.request();
    respond(conn, req, responses);
    used += r.consumed;
    completed = true;
    if (!req.keep_alive) {
      ran = example::Ran::closed;
      break;
    }
    responses.flush_if_full();
  }
  responses.flush();
  if (failed) {
    conn.close();  // after the error response (within ConnOptions::close_timeout)
    return ran;
  }
  const httpd::Clock::time_point now = httpd::Clock::now();
  if (ran == example::Ran::closed) {
    // "Connection: close": a FIN after the last response, however long its body takes to go out
    // (send_timeout bounds a client that stops reading), with the timeouts of this example, not
    // close()'s. The connection ends when the client closes too, or at the keep-alive timeout
    // once everything is sent.
    session.last_answered = true;
    conn.shutdown_write();
    session.deadlines.on_read(now, httpd::Awaiting::next_request, true);
    arm_timer(conn, session, now);
    return ran;
  }
  const httpd::Awaiting next = ran == example::Ran::paused      ? httpd::Awaiting::response
                               : used == input.size()           ? httpd::Awaiting::next_request
                               : session.parser.awaiting_body() ? httpd::Awaiting::body
                                                                : httpd::Awaiting::head;
  session.answered = session.answered || completed;
  session.in_request = next != httpd::Awaiting::next_request;
  session.deadlines.on_read(now, next, completed);
  arm_timer(conn, session, now);
  return ran;
}

auto runner(evloop::Conn& conn, Session& session) {
  return [&conn, &session](std::string_view input, std::size_t& used) {
    return run(conn, session, input, used);
  };
}

// A connection opens (or arrives from a live upgrade, `idle` when it had served a request and
// was waiting for the next): a fresh session and its timer.
void begin_session(evloop::Conn& conn, httpd::Limits limits, httpd::Timeouts timeouts, bool idle) {
  const httpd::Clock::time_point now = httpd::Clock::now();
  conn.context() = Session{
      httpd::RequestParser(limits), httpd::Deadlines(timeouts, now), 0, {}, false, idle, false};
  Session& session = session_of(conn);
  if (idle) session.deadlines.on_read(now, httpd::Awaiting::next_request, true);
  arm_timer(conn, session, now);
}

// Live upgrade (SIGUSR2): a connection with no request in progress moves (its unsent responses go
// with it); one in the middle of a request, or with requests waiting for their turn, finishes the
// request here, answered with "Connection: close".
std::optional<std::string> hand_over(evloop::Conn& conn) {
  Session& session = session_of(conn);
  if (session.last_answered) return std::nullopt;  // already ending
  if (session.in_request || session.input.holds_input()) {
    session.parser.close_after_current();
    return std::nullopt;
  }
  return session.answered ? "idle" : "new";
}

}  // namespace

int main(int argc, char** argv) {
  Config config = parse_args(argc, argv);

  evloop::Callbacks callbacks;
  callbacks.serving = example::print_listening;
  callbacks.opened = [limits = config.limits, timeouts = config.timeouts](evloop::Conn& conn) {
    begin_session(conn, limits, timeouts, false);
  };
  callbacks.adopted = [limits = config.limits, timeouts = config.timeouts](evloop::Conn& conn,
                                                                           std::string_view state) {
    begin_session(conn, limits, timeouts, state == "idle");
  };
  callbacks.handover = hand_over;
  g_high_water = config.options.output_high_water;
  g_input_limit = config.options.input_limit;
  callbacks.data = [](evloop::Conn& conn, std::string_view bytes) {
    Session& session = session_of(conn);
    return session.input.on_data(conn, bytes, g_input_limit, runner(conn, session));
  };
  callbacks.low_water = [](evloop::Conn& conn) {
    Session& session = session_of(conn);
    session.input.on_drained(conn, runner(conn, session));
  };
  callbacks.closed = [](evloop::Conn& conn, std::error_code) {
    if (const Session& session = session_of(conn); session.timer != 0) {
      conn.loop().cancel(session.timer);
    }
  };

  evloop::Server server(std::move(config.options), std::move(callbacks));
  return example::serve_until_signal(kProgram, server, argc, argv);
}
