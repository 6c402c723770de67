// Example (not part of the library). One client connection of the redis-server example: its
// parser, and its commands run at the pace at which the client reads the replies
// (example::PacedInput, see examples/common/paced_input.hpp): commands run in order until the
// connection's pending output passes evloop's high-water mark; the rest wait, reading paused,
// until `low_water`. So a client that pipelines and reads gets every reply however many it asks
// for, and one that does not read costs at most the mark, one reply and one read of input.
#pragma once

#include <evloop/evloop.hpp>

#include <cstddef>
#include <string_view>

#include "paced_input.hpp"
#include "resp_parser.hpp"
#include "store.hpp"

namespace resp {

/// What a session needs to know of the server's configuration.
struct SessionConfig {
  Limits limits;                  ///< The parser's limits.
  std::size_t output_high_water;  ///< Stop running commands above this much pending output.
  std::size_t input_limit;        ///< Most unconsumed input kept (a backlog over it resets).
  std::size_t output_limit;       ///< Most pending output (evloop resets past it).
};

/// A connection's state, kept in Conn::context(). All of it runs on the connection's loop.
class Session {
  // The run PacedInput calls: the commands of `input`, on `conn`.
  auto runner(evloop::Conn& conn) {
    return
        [this, &conn](std::string_view input, std::size_t& used) { return run(conn, input, used); };
  }

 public:
  Session(const SessionConfig& config, Store& store)
      : config_(&config), store_(&store), parser_(config.limits) {}

  /// evloop's `data`: runs the complete commands of `bytes` (after the backlog, if any) and
  /// returns how many bytes evloop may drop.
  std::size_t on_data(evloop::Conn& conn, std::string_view bytes) {
    return input_.on_data(conn, bytes, config_->input_limit, runner(conn));
  }
  /// evloop's `low_water`: the output drained; runs the commands held back.
  void on_drained(evloop::Conn& conn) { input_.on_drained(conn, runner(conn)); }

 private:
  example::Ran run(evloop::Conn& conn, std::string_view input, std::size_t& used);

  const SessionConfig* config_;
  Store* store_;
  CommandParser parser_;
  example::PacedInput input_;
};

}  // namespace resp
