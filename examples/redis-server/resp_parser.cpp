// Example. Incremental RESP2 command parser (see resp_parser.hpp for the contract). Error texts
// follow Redis's networking.c so that clients and tests see the messages they know.
#include "resp_parser.hpp"

#include <cstdint>
#include <cstring>
#include <limits>

namespace resp {
namespace {

// Like Redis's string2ll: optional '-', then "0" or digits without a leading zero; no spaces,
// no '+', no overflow.
bool parse_int(std::string_view s, std::int64_t& out) noexcept {
  bool neg = !s.empty() && s.front() == '-';
  if (neg) s.remove_prefix(1);
  if (s.empty() || s.size() > 19 || (s.front() == '0' && s.size() > 1)) return false;
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<std::uint64_t>(c - '0');  // 19 digits cannot wrap a uint64.
  }
  if (neg) {
    if (v == 0 || v > std::uint64_t{1} << 63) return false;  // "-0" is not canonical.
    out = v == std::uint64_t{1} << 63 ? std::numeric_limits<std::int64_t>::min()
                                      : -static_cast<std::int64_t>(v);
    return true;
  }
  if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return false;
  out = static_cast<std::int64_t>(v);
  return true;
}

// The "\r\n"-terminated line starting at `from`: sets `cr` to the offset of its '\r'. Returns
// false when no '\r' with a byte after it is there yet.
bool find_cr(std::string_view in, std::size_t from, std::size_t& cr) noexcept {
  if (from >= in.size()) return false;
  const void* p = std::memchr(in.data() + from, '\r', in.size() - from);
  if (p == nullptr) return false;
  cr = static_cast<std::size_t>(static_cast<const char*>(p) - in.data());
  return cr + 1 < in.size();
}

// Whether the bytes from `from` on, in which no line end was found, already make a line longer
// than `max` bytes. A CR as the last byte may still be the line's own, so it does not count
// (yet). Deciding only what the bytes so far prove gives the same answer however the input is
// split into reads as for the whole line.
bool line_too_long(std::string_view in, std::size_t from, std::size_t max) noexcept {
  const std::size_t have = in.size() - from;
  return have > max + 1 || (have == max + 1 && in.back() != '\r');
}

bool is_space(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

void CommandParser::reset() noexcept {
  phase_ = Phase::start;
  pos_ = 0;
  args_left_ = 0;
  bulk_len_ = 0;
  inline_ = false;
  spans_.clear();
  error_.clear();
}

void CommandParser::shrink() noexcept {
  // About 16 bytes per argument in each: what up to this many arguments take stays.
  constexpr std::size_t kKept = 1024;
  if (args_.capacity() > kKept) std::vector<std::string_view>().swap(args_);
  if (spans_.capacity() > kKept && phase_ == Phase::start) std::vector<Span>().swap(spans_);
  if (scratch_.capacity() > kKept * 16 && phase_ == Phase::start) std::string().swap(scratch_);
}

ParseResult CommandParser::fail(std::string message) {
  phase_ = Phase::failed;
  error_ = std::move(message);
  ParseResult r;
  r.status = ParseStatus::error;
  r.error = error_;
  return r;
}

ParseResult CommandParser::parse(std::string_view in) {
  for (;;) {
    switch (phase_) {
      case Phase::failed: {
        ParseResult r;
        r.status = ParseStatus::error;
        r.error = error_;
        return r;
      }
      case Phase::start: {
        if (pos_ >= in.size()) return {};
        if (in[pos_] != '*') {
          const void* p = std::memchr(in.data() + pos_, '\n', in.size() - pos_);
          if (p == nullptr) {
            if (line_too_long(in, pos_, limits_.max_inline_bytes)) {
              return fail("Protocol error: too big inline request");
            }
            return {};
          }
          auto nl = static_cast<std::size_t>(static_cast<const char*>(p) - in.data());
          std::string_view line = in.substr(pos_, nl - pos_);
          if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
          if (line.size() > limits_.max_inline_bytes) {
            return fail("Protocol error: too big inline request");
          }
          pos_ = nl + 1;
          if (!parse_inline(line)) return fail("Protocol error: unbalanced quotes in request");
          if (spans_.empty()) continue;  // A blank line: nothing to run.
          inline_ = true;
          return finish(in);
        }
        std::size_t cr = 0;
        if (!find_cr(in, pos_ + 1, cr)) {
          if (line_too_long(in, pos_, limits_.max_inline_bytes)) {
            return fail("Protocol error: too big mbulk count string");
          }
          return {};
        }
        if (cr - pos_ > limits_.max_inline_bytes) {
          return fail("Protocol error: too big mbulk count string");
        }
        std::int64_t n = 0;
        if (!parse_int(in.substr(pos_ + 1, cr - pos_ - 1), n) || in[cr + 1] != '\n' ||
            (n > 0 && static_cast<std::uint64_t>(n) > limits_.max_array_len)) {
          return fail("Protocol error: invalid multibulk length");
        }
        pos_ = cr + 2;
        if (n <= 0) continue;  // *0 and *-1: an empty command, skipped like Redis does.
        args_left_ = static_cast<std::size_t>(n);
        spans_.clear();
        phase_ = Phase::bulk_header;
        break;
      }
      case Phase::bulk_header: {
        if (pos_ >= in.size()) return {};
        if (in[pos_] != '$') {
          return fail(std::string("Protocol error: expected '$', got '") + in[pos_] + "'");
        }
        std::size_t cr = 0;
        if (!find_cr(in, pos_ + 1, cr)) {
          if (line_too_long(in, pos_, limits_.max_inline_bytes)) {
            return fail("Protocol error: too big bulk count string");
          }
          return {};
        }
        if (cr - pos_ > limits_.max_inline_bytes) {
          return fail("Protocol error: too big bulk count string");
        }
        std::int64_t n = 0;
        if (!parse_int(in.substr(pos_ + 1, cr - pos_ - 1), n) || in[cr + 1] != '\n' || n < 0 ||
            static_cast<std::uint64_t>(n) > limits_.max_bulk_bytes) {
          return fail("Protocol error: invalid bulk length");
        }
        bulk_len_ = static_cast<std::size_t>(n);
        pos_ = cr + 2;
        phase_ = Phase::bulk_data;
        break;
      }
      case Phase::bulk_data: {
        if (in.size() - pos_ < bulk_len_ + 2) return {};
        // Redis skips these two bytes unchecked; checking them catches a wrong length early.
        if (in[pos_ + bulk_len_] != '\r' || in[pos_ + bulk_len_ + 1] != '\n') {
          return fail("Protocol error: expected '\\r\\n' after bulk data");
        }
        spans_.push_back({pos_, bulk_len_});
        pos_ += bulk_len_ + 2;
        if (--args_left_ == 0) return finish(in);
        phase_ = Phase::bulk_header;
        break;
      }
    }
  }
}

// Splits an inline command like Redis's sdssplitargs: whitespace separates arguments; "double
// quotes" take \n \r \t \b \a \\ \" and \xHH escapes; 'single quotes' take \'; a closing quote
// must be followed by whitespace or the end. Arguments go to scratch_, positions to spans_.
bool CommandParser::parse_inline(std::string_view line) {
  scratch_.clear();
  spans_.clear();
  std::size_t i = 0;
  const std::size_t n = line.size();
  for (;;) {
    while (i < n && is_space(line[i])) ++i;
    if (i == n) return true;
    std::size_t start = scratch_.size();
    bool in_dq = false;
    bool in_sq = false;
    for (bool done = false; !done;) {
      if (in_dq) {
        if (i == n) return false;
        char c = line[i];
        if (c == '\\' && i + 3 < n && line[i + 1] == 'x' && hex_value(line[i + 2]) >= 0 &&
            hex_value(line[i + 3]) >= 0) {
          scratch_ += static_cast<char>(hex_value(line[i + 2]) * 16 + hex_value(line[i + 3]));
          i += 3;
        } else if (c == '\\' && i + 1 < n) {
          ++i;
          switch (line[i]) {
            case 'n':
              scratch_ += '\n';
              break;
            case 'r':
              scratch_ += '\r';
              break;
            case 't':
              scratch_ += '\t';
              break;
            case 'b':
              scratch_ += '\b';
              break;
            case 'a':
              scratch_ += '\a';
              break;
            default:
              scratch_ += line[i];
              break;
          }
        } else if (c == '"') {
          if (i + 1 < n && !is_space(line[i + 1])) return false;
          done = true;
        } else {
          scratch_ += c;
        }
      } else if (in_sq) {
        if (i == n) return false;
        char c = line[i];
        if (c == '\\' && i + 1 < n && line[i + 1] == '\'') {
          scratch_ += '\'';
          ++i;
        } else if (c == '\'') {
          if (i + 1 < n && !is_space(line[i + 1])) return false;
          done = true;
        } else {
          scratch_ += c;
        }
      } else {
        if (i == n || is_space(line[i])) {
          done = true;
          continue;  // Leave i on the separator.
        }
        if (line[i] == '"') {
          in_dq = true;
        } else if (line[i] == '\'') {
          in_sq = true;
        } else {
          scratch_ += line[i];
        }
      }
      if (i < n) ++i;
    }
    spans_.push_back({start, scratch_.size() - start});
  }
}

ParseResult CommandParser::finish(std::string_view in) {
  std::string_view base = inline_ ? std::string_view(scratch_) : in;
  args_.clear();
  for (const Span& s : spans_) args_.push_back(base.substr(s.off, s.len));
  ParseResult r;
  r.status = ParseStatus::complete;
  r.consumed = pos_;
  phase_ = Phase::start;
  pos_ = 0;
  inline_ = false;
  spans_.clear();
  return r;
}

}  // namespace resp
