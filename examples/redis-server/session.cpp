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

Session::Ran Session::run(evloop::Conn& conn, std::string_view input, std::size_t& used) {
  thread_local std::string out;
  const Millis now = now_millis();
  used = 0;
  Ran ran = Ran::all;
  for (;;) {
    if (conn.closing()) {  // over its output limit meanwhile: run nothing more
      ran = Ran::closed;
      break;
    }
    // Above the mark evloop has paused reading and owes us `low_water`: stop here. (What `out`
    // holds is under kWriteChunk and is written below.)
    if (conn.output_pending() > config_->output_high_water) {
      ran = Ran::paused;
      break;
    }
    const ParseResult r = parser_.parse(input.substr(used));
    if (r.status == ParseStatus::incomplete) break;
    if (r.status == ParseStatus::error) {
      append_error(r.error, out);  // "-ERR Protocol error: ...", then close, like Redis
      ran = Ran::closed;
      break;
    }
    used += r.consumed;
    if (execute(parser_.args(), *store_, now, out) == After::close) {
      ran = Ran::closed;
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
  if (ran == Ran::closed) conn.close();  // after the replies above are sent
  return ran;
}

std::size_t Session::on_data(evloop::Conn& conn, std::string_view bytes) {
  if (!backlog_.empty()) {
    // Bytes behind a backlog (a partial command left after a paced run) join it, in order.
    backlog_.append(bytes);
    if (!paced_) run_backlog(conn);
    if (backlog_size() > config_->input_limit) conn.abort();  // as evloop's input_limit does
    return bytes.size();
  }
  std::size_t used = 0;
  switch (run(conn, bytes, used)) {
    case Ran::all:
      return used;  // evloop keeps a partial command and hands it back with the next bytes
    case Ran::closed:
      return bytes.size();
    case Ran::paused:
      backlog_.assign(bytes.substr(used));
      backlog_at_ = 0;
      paced_ = true;
      conn.pause_reading();
      return bytes.size();
  }
  return bytes.size();
}

void Session::on_drained(evloop::Conn& conn) {
  if (paced_ && conn.output_pending() <= config_->output_high_water) run_backlog(conn);
}

void Session::run_backlog(evloop::Conn& conn) {
  std::size_t used = 0;
  const Ran ran = run(conn, std::string_view(backlog_).substr(backlog_at_), used);
  backlog_at_ += used;
  switch (ran) {
    case Ran::closed:
      forget_backlog();
      break;
    case Ran::paused:
      if (!paced_) conn.pause_reading();
      paced_ = true;
      break;
    case Ran::all:
      // What is left is at most a partial command: read on, behind it.
      if (paced_) conn.resume_reading();
      paced_ = false;
      if (backlog_at_ == backlog_.size()) {
        forget_backlog();
      } else {
        backlog_.erase(0, backlog_at_);  // the parser counts from the partial command's start
        backlog_at_ = 0;
      }
      break;
  }
}

void Session::forget_backlog() noexcept {
  std::string().swap(backlog_);  // a burst's backlog is given back, not kept per connection
  backlog_at_ = 0;
}

}  // namespace resp
