// Example (not part of the library). One client connection of the redis-server example: its
// parser, and its commands run at the pace at which the client reads the replies.
//
// Back-pressure. Commands run in order until the connection's pending output passes evloop's
// high-water mark (Options::output_high_water); then the session stops taking commands: evloop
// has paused reading on its own (the output passed the mark), and the session pauses it too
// (pause_reading()), so that nothing is read until every command already read has run. The
// commands left over from that read are kept in the session's *backlog*. When the output drains
// to the low-water mark evloop calls `low_water` (always owed then: the session stops only when
// evloop's own pause has begun): the backlog runs, until it is empty or the output passes the
// mark again. Reading resumes only when no complete command is left. So a client that pipelines
// and reads gets every reply however many it asked for, and one that pipelines and does not read
// costs at most the high-water mark, one reply and one read of input.
//
// Why a backlog of our own: the commands not run are an unconsumed tail that evloop would keep,
// but it hands a tail back only together with new bytes. A client that has sent everything and
// now only reads sends no new bytes, so the tail must be run from the drain handlers, which see
// no input: the session copies it. This happens only when a read is cut by back-pressure (a copy
// of at most one read); otherwise the session consumes in place and lets evloop keep a partial
// command, as before.
#pragma once

#include <evloop/evloop.hpp>

#include <cstddef>
#include <string>
#include <string_view>

#include "resp_parser.hpp"
#include "store.hpp"

namespace resp {

/// What a session needs to know of the server's configuration.
struct SessionConfig {
  Limits limits;                   ///< The parser's limits.
  std::size_t output_high_water;   ///< Stop running commands above this much pending output.
  std::size_t input_limit;         ///< Most unconsumed input kept (a backlog over it resets).
};

/// A connection's state, kept in Conn::context(). All of it runs on the connection's loop.
class Session {
 public:
  Session(const SessionConfig& config, Store& store) : config_(&config), store_(&store),
                                                       parser_(config.limits) {}

  /// evloop's `data`: runs the complete commands of `bytes` (after the backlog, if any) and
  /// returns how many bytes evloop may drop.
  std::size_t on_data(evloop::Conn& conn, std::string_view bytes);
  /// evloop's `low_water`: the output drained; runs the backlog.
  void on_drained(evloop::Conn& conn);

  /// Bytes held in the backlog (read, not yet run), for tests and statistics.
  std::size_t backlog_size() const noexcept { return backlog_.size() - backlog_at_; }

 private:
  enum class Ran { all, paused, closed };
  Ran run(evloop::Conn& conn, std::string_view input, std::size_t& used);
  void run_backlog(evloop::Conn& conn);
  void forget_backlog() noexcept;

  const SessionConfig* config_;
  Store* store_;
  CommandParser parser_;
  std::string backlog_;         // Commands read but not run yet, then possibly a partial one.
  std::size_t backlog_at_ = 0;  // The first byte of the backlog not consumed yet.
  bool paced_ = false;          // Stopped by back-pressure: reading is paused by us.
};

}  // namespace resp
