// Example (not part of the library). An incremental parser of Redis commands (RESP2 multibulk
// and inline commands) with no dependency on evloop, so it can be unit-tested and fuzzed alone.
//
// How it meets evloop's `data` callback: a command that is not complete yet is left
// *unconsumed*; evloop keeps that tail and hands it back, followed by the new bytes, on the next
// call. The parser remembers how far it got (offsets from the start of the tail), so nothing is
// parsed twice and a command that trickles in byte by byte still costs linear time. Arguments of
// multibulk commands are views into evloop's buffer: the common case (redis-benchmark pipelines
// of whole commands) costs no copy. Memory is bounded by Options::input_limit, which the server
// sets above the bulk-length limit.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace resp {

/// Limits on what a client may send. Redis's own defaults are 512 MiB bulks, INT_MAX-element
/// arrays and 64 KiB inline commands; the example is stricter by default.
struct Limits {
  std::size_t max_bulk_bytes = 64 * 1024 * 1024;  ///< Longest bulk string ("invalid bulk length").
  std::size_t max_array_len = 1024 * 1024;        ///< Most arguments ("invalid multibulk length").
  std::size_t max_inline_bytes = 64 * 1024;       ///< Longest inline command or count line.
};

/// What one parse() call found.
enum class ParseStatus {
  complete,    ///< A command: see CommandParser::args(); `consumed` bytes belong to it.
  incomplete,  ///< More bytes are needed; consume nothing and call again with more.
  error,       ///< A protocol error: reply "-ERR <error>" and close the connection.
};

/// The result of CommandParser::parse().
struct ParseResult {
  ParseStatus status = ParseStatus::incomplete;  ///< See ParseStatus.
  std::size_t consumed = 0;  ///< Bytes of the command (and of empty commands before it).
  std::string_view error;    ///< E.g. "Protocol error: invalid bulk length" (Redis's wording).
};

/// Parses commands one at a time from the front of a byte stream.
///
/// Contract: after `incomplete`, the next call must pass the same bytes again followed by more.
/// After `complete`, the next call starts at the byte after the command. After `error`, the
/// parser keeps returning that error until reset(). Empty commands (blank inline lines, `*0`,
/// `*-1`) are skipped, as Redis does.
class CommandParser {
 public:
  /// A parser with the given limits.
  explicit CommandParser(Limits limits = {}) : limits_(limits) {}

  /// Parses the command at the front of `input` (see the class comment for the contract).
  ParseResult parse(std::string_view input);
  /// The arguments of the command found by the last parse() that returned complete (the command
  /// name first). Valid until the next parse() and while the input bytes are.
  const std::vector<std::string_view>& args() const noexcept { return args_; }
  /// Forgets all progress.
  void reset() noexcept;
  /// Frees what a command of very many arguments made the parser keep (args() is then empty):
  /// called once a batch of commands has run, so an idle connection holds no such memory.
  void shrink() noexcept;

 private:
  enum class Phase { start, bulk_header, bulk_data, failed };
  struct Span {
    std::size_t off = 0;
    std::size_t len = 0;
  };

  ParseResult fail(std::string message);
  bool parse_inline(std::string_view line);
  ParseResult finish(std::string_view input);

  Limits limits_;
  Phase phase_ = Phase::start;
  std::size_t pos_ = 0;        // Offset of the next unparsed byte.
  std::size_t args_left_ = 0;  // Bulk strings still expected in this multibulk command.
  std::size_t bulk_len_ = 0;   // Length of the bulk string being read.
  bool inline_ = false;        // The command found was inline (args in scratch_).
  std::vector<Span> spans_;    // Argument positions: in the input, or in scratch_ if inline_.
  std::string scratch_;        // Unescaped inline arguments.
  std::vector<std::string_view> args_;
  std::string error_;
};

}  // namespace resp
