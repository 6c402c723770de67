// Example. A client connection of the redis-server: commands paced by back-pressure (see
// session.hpp).
#include "session.hpp"

#include <algorithm>

#include "commands.hpp"

namespace resp {

example::Ran Session::run(evloop::Conn& conn, std::string_view input, std::size_t& used) {
  example::Responses replies(conn);
  std::string& out = replies.out();
  const Millis now = now_millis();
  used = 0;
  example::Ran ran = example::Ran::all;
  for (;;) {
    if (conn.closing()) {  // over its output limit meanwhile: run nothing more
      ran = example::Ran::closed;
      break;
    }
    // Above the mark evloop has paused reading and owes us `low_water`: stop here.
    if (example::above_mark(conn, config_->output_high_water)) {
      ran = example::Ran::paused;
      break;
    }
    const ParseResult r = parser_.parse(input.substr(used));
    if (r.status == ParseStatus::incomplete) break;
    if (r.status == ParseStatus::error) {
      append_error(r.error, out);  // "-ERR Protocol error: ...", then close, like Redis
      ran = example::Ran::closed;
      break;
    }
    used += r.consumed;
    // What a reply may add before the output would pass its limit: a larger one is refused.
    const std::size_t held = conn.output_pending() + out.size();
    const std::size_t room = config_->output_limit - std::min(config_->output_limit, held);
    if (execute(parser_.args(), *store_, now, out, room) == After::close) {
      ran = example::Ran::closed;
      break;
    }
    replies.flush_if_full();
  }
  replies.flush();
  parser_.shrink();  // a command of a million arguments leaves nothing behind on this connection
  if (ran == example::Ran::closed) conn.close();  // after the replies above are sent
  return ran;
}

}  // namespace resp
