// Example. A client connection of the redis-server: commands paced by back-pressure (see
// session.hpp).
#include "session.hpp"

#include "commands.hpp"

namespace resp {
namespace {

// Replies are gathered in a per-thread string and handed to evloop whenever they pass this, and
// at the end of each run: a pipeline of small commands costs one send, and a run that asks for
// many large replies never builds one string of them all (a write of 16 KiB or more goes to the
// kernel at once, from this string).
constexpr std::size_t kWriteChunk = 64 * 1024;
// A larger scratch string (grown by a large reply) is given back after the run.
constexpr std::size_t kKeepScratch = 1024 * 1024;

}  // namespace

example::Ran Session::run(evloop::Conn& conn, std::string_view input, std::size_t& used) {
  thread_local std::string out;
  const Millis now = now_millis();
  used = 0;
  example::Ran ran = example::Ran::all;
  for (;;) {
    if (conn.closing()) {  // over its output limit meanwhile: run nothing more
      ran = example::Ran::closed;
      break;
    }
    // Above the mark evloop has paused reading and owes us `low_water`: stop here. (What `out`
    // holds is under kWriteChunk and is written below.)
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
    if (execute(parser_.args(), *store_, now, out) == After::close) {
      ran = example::Ran::closed;
      break;
    }
    if (out.size() >= kWriteChunk) {
      conn.write(out);
      out.clear();
    }
  }
  if (!out.empty()) conn.write(out);
  out.clear();
  if (out.capacity() > kKeepScratch) std::string().swap(out);
  if (ran == example::Ran::closed) conn.close();  // after the replies above are sent
  return ran;
}

}  // namespace resp
