// Example (not part of the library). Requests run at the pace at which the client reads the
// responses: shared by the redis and http examples, whose `data` handlers run every complete
// request of a read and may produce far more output than a read's worth.
//
// How it works. A protocol's run (a function of the input) runs requests in order and stops when
// the connection's pending output passes evloop's high-water mark (above_mark()); evloop has then
// paused reading on its own and owes a `low_water` call once the output drains to the low-water
// mark. The requests left over are kept in a backlog here, and reading is paused with
// pause_reading() too, so that nothing is read until every request already read has run. The
// `low_water` handler calls on_drained(), which runs the backlog until it is empty or the output
// passes the mark again; reading resumes only when no complete request is left. So a client that
// pipelines and reads gets every response however many it asked for, and one that pipelines and
// does not read costs at most the mark, one response and one read of input.
//
// Why a backlog of our own: the requests not run are an unconsumed tail that evloop would keep,
// but evloop hands a tail back only together with new bytes. A client that has sent everything and
// now only reads sends no new bytes, so the tail must run from `low_water`, which sees no input:
// it is copied here. That happens only when a read is cut by back-pressure (a copy of at most one
// read); otherwise the run consumes in place and evloop keeps a partial request, as usual.
#pragma once

#include <evloop/evloop.hpp>

#include <cstddef>
#include <string>
#include <string_view>

namespace example {

/// How a protocol's run over some input ended.
enum class Ran {
  all,     ///< Every complete request ran; what is left is at most a partial one.
  paused,  ///< Stopped above the high-water mark (above_mark() was true).
  closed,  ///< The connection is closing: nothing more runs.
};

/// True when `conn` has more output pending than `high_water` (Options::output_high_water): a run
/// stops there, and evloop owes `low_water`.
inline bool above_mark(const evloop::Conn& conn, std::size_t high_water) {
  return conn.output_pending() > high_water;
}

/// The responses of one run, gathered in a per-thread string: handed to evloop whenever they pass
/// kChunk (so that above_mark() counts them: a run of many large responses never builds one
/// string of them all; a write of 32 KiB or more goes to the kernel at once, from this string),
/// and at flush(). A pipeline of small responses thus costs one send per run.
class Responses {
 public:
  static constexpr std::size_t kChunk = 64 * 1024;

  explicit Responses(evloop::Conn& conn) noexcept : conn_(conn), out_(scratch()) { out_.clear(); }
  /// Flushes what is left, and gives back a scratch string grown large by a large response.
  ~Responses() {
    flush();
    if (out_.capacity() > kKeepScratch) std::string().swap(out_);
  }
  Responses(const Responses&) = delete;
  Responses& operator=(const Responses&) = delete;

  /// Where a response is appended.
  std::string& out() noexcept { return out_; }
  /// Hands what is gathered to evloop (before a close, or a send_file() that must follow it).
  void flush() {
    if (out_.empty()) return;
    conn_.write(out_);
    out_.clear();
  }
  /// flush() once kChunk bytes are gathered: call it after each response.
  void flush_if_full() {
    if (out_.size() >= kChunk) flush();
  }

 private:
  static constexpr std::size_t kKeepScratch = 1024 * 1024;
  static std::string& scratch() {
    thread_local std::string text;
    return text;
  }

  evloop::Conn& conn_;
  std::string& out_;
};

/// One connection's unrun input. `run` is a callable `Ran(std::string_view input,
/// std::size_t& used)` that runs the complete requests at the front of `input` and sets `used` to
/// the bytes they took; it must resume a partial request it saw before when called again with
/// the same bytes followed by more (as evloop's unconsumed tail is handed back).
class PacedInput {
 public:
  /// evloop's `data`: runs `bytes` (behind the backlog, if any); returns what evloop may drop.
  /// A backlog over `input_limit` (a partial request left after a paced run that keeps growing)
  /// resets the connection, as evloop's ConnOptions::input_limit does.
  template <typename Run>
  std::size_t on_data(evloop::Conn& conn, std::string_view bytes, std::size_t input_limit,
                      Run&& run) {
    if (!backlog_.empty()) {
      backlog_.append(bytes);
      if (!paced_) run_backlog(conn, run);
      if (backlog_.size() - backlog_at_ > input_limit) conn.abort();
      return bytes.size();
    }
    std::size_t used = 0;
    const Ran ran = run(bytes, used);  // (sets `used`, read below)
    switch (settled(ran, used == bytes.size())) {
      case Ran::all:
        return used;  // evloop keeps a partial request and hands it back with the next bytes
      case Ran::closed:
        break;
      case Ran::paused:
        backlog_.assign(bytes.substr(used));
        backlog_at_ = 0;
        paced_ = true;
        conn.pause_reading();
        break;
    }
    return bytes.size();
  }

  /// True while requests read from evloop wait here (a live upgrade cannot move such a
  /// connection: evloop moves its own unread input, not this backlog).
  bool holds_input() const noexcept { return !backlog_.empty(); }

  /// evloop's `low_water`: the output drained; runs the backlog.
  template <typename Run>
  void on_drained(evloop::Conn& conn, Run&& run) {
    if (paced_) run_backlog(conn, run);
  }

 private:
  template <typename Run>
  void run_backlog(evloop::Conn& conn, Run& run) {
    std::size_t used = 0;
    const std::string_view input = std::string_view(backlog_).substr(backlog_at_);
    Ran ran = run(input, used);
    ran = settled(ran, used == input.size());
    backlog_at_ += used;
    switch (ran) {
      case Ran::closed:
        // Read on: a protocol that half-closes after its last response (HTTP's "Connection:
        // close") ends when it reads the client's FIN, which a paused connection never sees.
        if (paced_) conn.resume_reading();
        paced_ = false;
        forget();
        break;
      case Ran::paused:
        if (!paced_) conn.pause_reading();
        paced_ = true;
        break;
      case Ran::all:
        // What is left is at most a partial request: read on, behind it.
        if (paced_) conn.resume_reading();
        paced_ = false;
        if (backlog_at_ == backlog_.size()) {
          forget();
        } else {
          backlog_.erase(0, backlog_at_);  // the run counts from the partial request's start
          backlog_at_ = 0;
        }
        break;
    }
  }

  // A run that stopped at the mark with nothing left to run holds nothing back: no pause (it
  // would cost two poller changes per response, e.g. each large file of a keep-alive client).
  static Ran settled(Ran ran, bool nothing_left) noexcept {
    return ran == Ran::paused && nothing_left ? Ran::all : ran;
  }

  void forget() noexcept {
    std::string().swap(backlog_);  // a burst's backlog is given back, not kept per connection
    backlog_at_ = 0;
  }

  std::string backlog_;         // Requests read but not run yet, then possibly a partial one.
  std::size_t backlog_at_ = 0;  // The first byte of the backlog not run yet.
  bool paced_ = false;          // Stopped by back-pressure: reading is paused by us.
};

}  // namespace example
