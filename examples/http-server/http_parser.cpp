// Example. Incremental HTTP/1.x request parser (see http_parser.hpp for the contract).
#include "http_parser.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>

namespace httpd {
namespace {

// RFC 9110 tchar: the characters of a token (method, field name).
constexpr std::array<bool, 256> make_token_table() {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[static_cast<std::size_t>(c)] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[static_cast<std::size_t>(c)] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[static_cast<std::size_t>(c)] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
  return t;
}
constexpr std::array<bool, 256> kToken = make_token_table();

bool is_token(std::string_view s) noexcept {
  if (s.empty()) return false;
  for (char c : s) {
    if (!kToken[static_cast<unsigned char>(c)]) return false;
  }
  return true;
}

char lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

bool is_ows(char c) noexcept { return c == ' ' || c == '\t'; }

std::string_view trim_ows(std::string_view s) noexcept {
  while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
  return s;
}

// Field values: visible ASCII, SP, HTAB and obs-text (0x80-0xFF); no other control characters.
bool is_field_value(std::string_view s) noexcept {
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
  }
  return true;
}

// Calls fn(token) for each comma-separated element of a list-valued field, trimmed.
template <typename Fn>
void for_each_list_item(std::string_view value, Fn fn) {
  while (!value.empty()) {
    std::size_t comma = value.find(',');
    std::string_view item = trim_ows(value.substr(0, comma));
    if (!item.empty()) fn(item);
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
}

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// RFC 9110 5.6.4 quoted-string, at the front of `s`: its length, or 0 if there is none.
std::size_t quoted_string_length(std::string_view s) noexcept {
  if (s.empty() || s.front() != '"') return 0;
  for (std::size_t i = 1; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '"') return i + 1;
    if (c == '\\') {  // quoted-pair: HTAB, SP, VCHAR or obs-text
      if (++i == s.size()) return 0;
      const auto q = static_cast<unsigned char>(s[i]);
      if ((q < 0x20 && q != '\t') || q == 0x7f) return 0;
    } else if ((c < 0x20 && c != '\t') || c == 0x7f) {  // qdtext
      return 0;
    }
  }
  return 0;
}

// RFC 9112 7.1.1: chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ), a
// value being a token or a quoted-string. Checked, then ignored (none is defined).
bool is_chunk_extensions(std::string_view s) noexcept {
  auto skip_ows = [&s](std::size_t i) {
    while (i < s.size() && is_ows(s[i])) ++i;
    return i;
  };
  auto token_end = [&s](std::size_t i) {
    while (i < s.size() && kToken[static_cast<unsigned char>(s[i])]) ++i;
    return i;
  };
  std::size_t i = 0;
  while (i < s.size()) {
    i = skip_ows(i);
    if (i == s.size() || s[i] != ';') return false;
    i = skip_ows(i + 1);
    const std::size_t name_end = token_end(i);
    if (name_end == i) return false;
    i = name_end;
    if (std::size_t eq = skip_ows(i); eq < s.size() && s[eq] == '=') {
      i = skip_ows(eq + 1);
      const std::size_t value_end = token_end(i);
      const std::size_t length = value_end > i ? value_end - i : quoted_string_length(s.substr(i));
      if (length == 0) return false;
      i += length;
    }
  }
  return true;
}

bool lookup_method(std::string_view s, Method& m) noexcept {
  static constexpr std::pair<std::string_view, Method> kMethods[] = {
      {"GET", Method::get},    {"HEAD", Method::head},  {"POST", Method::post},
      {"PUT", Method::put},    {"DELETE", Method::del}, {"OPTIONS", Method::options},
      {"PATCH", Method::patch}};
  for (const auto& [name, method] : kMethods) {
    if (s == name) {
      m = method;
      return true;
    }
  }
  return false;
}

}  // namespace

std::string_view method_name(Method m) noexcept {
  switch (m) {
    case Method::get:
      return "GET";
    case Method::head:
      return "HEAD";
    case Method::post:
      return "POST";
    case Method::put:
      return "PUT";
    case Method::del:
      return "DELETE";
    case Method::options:
      return "OPTIONS";
    case Method::patch:
      return "PATCH";
  }
  return "?";
}

std::string_view Request::header(std::string_view name) const noexcept {
  for (const Header& h : headers) {
    if (iequals(h.name, name)) return h.value;
  }
  return {};
}

void RequestParser::reset() noexcept {
  start_next();
  decoded_ = std::string();
  closing_ = false;
  error_status_ = 0;
  error_reason_ = {};
}

void RequestParser::start_next() noexcept {
  phase_ = Phase::request_line;
  pos_ = 0;
  check_ = {};
  target_ = {};
  spans_.clear();
  content_length_ = 0;
  have_length_ = false;
  have_transfer_encoding_ = false;
  other_coding_ = false;
  final_chunked_ = false;
  chunked_count_ = 0;
  chunked_ = false;
  chunk_ = Chunk::size_line;
  body_start_ = 0;
  chunk_left_ = 0;
  line_scanned_ = 0;
  trailer_start_ = 0;
  trailer_count_ = 0;
  host_count_ = 0;
  conn_close_ = false;
  conn_keep_alive_ = false;
  expect_continue_ = false;
  continue_sent_ = false;
}

ParseResult RequestParser::fail(int status, std::string_view reason) noexcept {
  phase_ = Phase::failed;
  error_status_ = status;
  error_reason_ = reason;
  ParseResult r;
  r.status = ParseStatus::error;
  r.error_status = status;
  r.error_reason = reason;
  return r;
}

ParseResult RequestParser::parse(std::string_view input) {
  if (phase_ == Phase::failed) return fail(error_status_, error_reason_);
  // The last chunked body has been answered (a new request starts): its memory goes, so that a
  // keep-alive connection between requests holds none.
  if (phase_ != Phase::body && !decoded_.empty()) decoded_ = std::string();
  ParseResult err;
  // The head, line by line. pos_ survives between calls, so no byte is scanned twice.
  while (phase_ == Phase::request_line || phase_ == Phase::headers) {
    const void* nl =
        pos_ < input.size() ? std::memchr(input.data() + pos_, '\n', input.size() - pos_) : nullptr;
    const std::size_t nl_off =
        nl == nullptr ? input.size()
                      : static_cast<std::size_t>(static_cast<const char*>(nl) - input.data());
    // The whole head, its last LF included, must fit in max_head_bytes: a line whose end is not
    // among them is refused as soon as they are here. The bytes within the limit are checked
    // first, so that an impossible line gets its 400 whether or not its end is in this input.
    if (nl == nullptr || nl_off >= limits_.max_head_bytes) {
      if (!check_partial_line(input, std::min(nl_off, limits_.max_head_bytes), err)) return err;
      if (nl_off < limits_.max_head_bytes) return ParseResult{};
      return phase_ == Phase::request_line ? fail(414, "request line is too long")
                                           : fail(431, "request header fields are too large");
    }
    if (nl_off == pos_ || input[nl_off - 1] != '\r') return fail(400, "line ends without CR");
    std::size_t line_off = pos_;
    std::string_view line = input.substr(line_off, nl_off - 1 - line_off);
    pos_ = nl_off + 1;
    if (phase_ == Phase::request_line) {
      if (line.empty()) continue;  // RFC 9112 2.2: ignore empty lines before a request line.
      if (!parse_request_line(line, line_off, err)) return err;
      phase_ = Phase::headers;
    } else if (line.empty()) {
      if (!finish_head(err)) return err;
      phase_ = Phase::body;
    } else if (!parse_header_line(line, line_off, err)) {
      return err;
    }
  }
  if (chunked_) return parse_chunked(input);
  if (input.size() - pos_ < content_length_) return awaiting_more();
  const auto body_len = static_cast<std::size_t>(content_length_);
  return complete(input, input.substr(pos_, body_len), pos_ + body_len);
}

ParseResult RequestParser::awaiting_more() noexcept {
  ParseResult r;
  if (expect_continue_ && !continue_sent_) {
    continue_sent_ = true;
    r.send_continue = true;
  }
  return r;
}

ParseResult RequestParser::parse_chunked(std::string_view input) {
  // pos_ and the chunk state survive between calls, and the data is copied out as it comes, so
  // no byte is parsed twice however the body is split. Every check is made on whole lines (or
  // at a bound), so the outcome does not depend on the split either.
  ParseResult err;
  for (;;) {
    switch (chunk_) {
      case Chunk::size_line: {
        std::size_t nl = 0;
        if (!find_line(input, pos_ + limits_.max_chunk_line_bytes, nl)) {
          if (input.size() - pos_ < limits_.max_chunk_line_bytes) return awaiting_more();
          return fail(400, "chunk-size line is too long");
        }
        if (nl == pos_ || input[nl - 1] != '\r') return fail(400, "line ends without CR");
        const std::string_view line = input.substr(pos_, nl - 1 - pos_);
        pos_ = nl + 1;
        if (!parse_chunk_size_line(line, err) || !framing_within_budget(err)) return err;
        if (chunk_left_ != 0) {
          chunk_ = Chunk::data;
        } else {  // the last chunk
          chunk_ = Chunk::trailer;
          trailer_start_ = pos_;
        }
        break;
      }
      case Chunk::data: {
        const std::size_t n = std::min(chunk_left_, input.size() - pos_);
        decoded_.append(input.substr(pos_, n));
        pos_ += n;
        chunk_left_ -= n;
        if (chunk_left_ != 0) return awaiting_more();
        chunk_ = Chunk::data_end;
        break;
      }
      case Chunk::data_end:
        // The CRLF after the data. A first byte that is not CR is an error now already (the
        // whole-line check would say 400 too).
        if (input.size() - pos_ < 2) {
          if (input.size() > pos_ && input[pos_] != '\r') {
            return fail(400, "chunk data not followed by CRLF");
          }
          return awaiting_more();
        }
        if (input[pos_] != '\r' || input[pos_ + 1] != '\n') {
          return fail(400, "chunk data not followed by CRLF");
        }
        pos_ += 2;
        if (!framing_within_budget(err)) return err;
        chunk_ = Chunk::size_line;
        break;
      case Chunk::trailer: {
        // The trailer section, its final CRLF included, within max_head_bytes (as the head).
        std::size_t nl = 0;
        const std::size_t end = trailer_start_ + limits_.max_head_bytes;
        if (!find_line(input, end, nl)) {
          if (input.size() < end) return awaiting_more();
          return fail(431, "trailer fields are too large");
        }
        if (nl == pos_ || input[nl - 1] != '\r') return fail(400, "line ends without CR");
        const std::string_view line = input.substr(pos_, nl - 1 - pos_);
        pos_ = nl + 1;
        if (!line.empty() && !parse_trailer_line(line, err)) return err;
        if (!framing_within_budget(err)) return err;
        if (line.empty()) return complete(input, decoded_, pos_);
        break;
      }
    }
  }
}

bool RequestParser::find_line(std::string_view input, std::size_t limit_end, std::size_t& nl_off) {
  // The LF that ends the line at pos_, searched for before `limit_end` only, and from where the
  // last search stopped (a line trickling in is scanned once).
  const std::size_t from = std::max(pos_, line_scanned_);
  const std::size_t to = std::min(input.size(), limit_end);
  const void* nl = from < to ? std::memchr(input.data() + from, '\n', to - from) : nullptr;
  if (nl == nullptr) {
    line_scanned_ = std::max(from, to);
    return false;
  }
  nl_off = static_cast<std::size_t>(static_cast<const char*>(nl) - input.data());
  return true;
}

bool RequestParser::parse_chunk_size_line(std::string_view line, ParseResult& err) {
  // chunk-size [ chunk-ext ]: 1*HEXDIG, then the extensions (RFC 9112 7.1).
  std::uint64_t size = 0;
  std::size_t digits = 0;
  for (; digits < line.size(); ++digits) {
    const int d = hex_value(line[digits]);
    if (d < 0) break;
    if (size > (std::numeric_limits<std::uint64_t>::max() >> 4)) {
      err = fail(400, "chunk size overflows");
      return false;
    }
    size = (size << 4) | static_cast<std::uint64_t>(d);
  }
  if (digits == 0) {
    err = fail(400, "malformed chunk size");
    return false;
  }
  if (!is_chunk_extensions(line.substr(digits))) {
    err = fail(400, "malformed chunk extension");
    return false;
  }
  if (size > limits_.max_body_bytes - decoded_.size()) {
    err = fail(413, "request body is too large");
    return false;
  }
  chunk_left_ = static_cast<std::size_t>(size);
  return true;
}

bool RequestParser::parse_trailer_line(std::string_view line, ParseResult& err) {
  // A field line as in the head (RFC 9112 7.1.2); its field is dropped (RFC 9110 6.5.1 lets a
  // recipient discard trailers, and none is merged into the head's fields).
  if (is_ows(line.front())) {
    err = fail(400, "obsolete line folding in the trailer section");
    return false;
  }
  const std::size_t colon = line.find(':');
  if (colon == std::string_view::npos || !is_token(line.substr(0, colon))) {
    err = fail(400, "malformed trailer field");
    return false;
  }
  if (!is_field_value(trim_ows(line.substr(colon + 1)))) {
    err = fail(400, "invalid character in trailer field value");
    return false;
  }
  if (++trailer_count_ > limits_.max_headers) {
    err = fail(431, "too many trailer fields");
    return false;
  }
  return true;
}

bool RequestParser::framing_within_budget(ParseResult& err) {
  // Checked at each line's end: the framing so far, beside the data decoded, within the budget.
  if (pos_ - body_start_ - decoded_.size() > limits_.chunk_framing_budget()) {
    err = fail(413, "chunked framing is too large (the chunks are too small)");
    return false;
  }
  return true;
}

bool RequestParser::check_partial_line(std::string_view input, std::size_t end, ParseResult& err) {
  // A byte-at-a-time recognizer of the line grammars: "method SP target SP HTTP/d.d CR" and
  // "name: value CR". It only ever finds errors that the whole-line parse below reports as 400
  // too, and it resumes where it stopped, so a line that trickles in is checked in linear time.
  static constexpr std::string_view kVersion = "HTTP/0.0\r";  // '0' stands for any digit
  if (check_.end < pos_) check_ = LineCheck{pos_};  // The state is a finished line's: start anew.
  const bool request_line = phase_ == Phase::request_line;
  auto reject = [&](std::string_view reason) {
    err = fail(400, reason);
    return false;
  };
  for (LineCheck& k = check_; k.end < end; ++k.end) {
    const auto c = static_cast<unsigned char>(input[k.end]);
    switch (k.expect) {
      case Expect::line_start:
        if (c == '\r') {
          k.expect = Expect::line_feed;  // an empty line, if LF follows
        } else if (kToken[c]) {
          k.expect = request_line ? Expect::method : Expect::name;
        } else if (request_line) {
          return reject("malformed request line");
        } else {
          return reject(is_ows(static_cast<char>(c)) ? "obsolete header line folding"
                                                     : "malformed header field");
        }
        break;
      case Expect::method:
        if (c == ' ') {
          k.expect = Expect::target_start;
        } else if (!kToken[c]) {
          return reject("malformed request line");
        }
        break;
      case Expect::target_start:
      case Expect::target:
        if (c == ' ' && k.expect == Expect::target) {
          k.expect = Expect::version;
        } else if (c <= 0x20 || c >= 0x7f) {
          return reject("malformed request target");
        } else {
          k.expect = Expect::target;
        }
        break;
      case Expect::version: {
        const char want = kVersion[k.version_at];
        if (want == '0' ? (c < '0' || c > '9') : c != static_cast<unsigned char>(want)) {
          return reject("malformed HTTP version");
        }
        if (++k.version_at == kVersion.size()) k.expect = Expect::line_feed;
        break;
      }
      case Expect::name:
        if (c == ':') {
          k.expect = Expect::value;
        } else if (!kToken[c]) {
          return reject("malformed header field");
        }
        break;
      case Expect::value:
        if (c == '\r') {
          k.expect = Expect::line_feed;
        } else if ((c < 0x20 && c != '\t') || c == 0x7f) {
          return reject("invalid character in header value");
        }
        break;
      case Expect::line_feed:  // `end` never goes past an LF, so this byte is not one
        return reject("CR not followed by LF");
    }
  }
  return true;
}

bool RequestParser::parse_request_line(std::string_view line, std::size_t line_off,
                                       ParseResult& err) {
  // method SP request-target SP HTTP-version, single spaces (RFC 9112 3).
  std::size_t sp1 = line.find(' ');
  std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) {
    err = fail(400, "malformed request line");
    return false;
  }
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  if (!is_token(method) || target.empty()) {
    err = fail(400, "malformed request line");
    return false;
  }
  for (char ch : target) {
    auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c >= 0x7f) {
      err = fail(400, "malformed request target");
      return false;
    }
  }
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || !digit(version[5]) ||
      version[6] != '.' || !digit(version[7])) {
    err = fail(400, "malformed HTTP version");
    return false;
  }
  if (version[5] != '1') {
    err = fail(505, "only HTTP/1.0 and HTTP/1.1 are supported");
    return false;
  }
  if (!lookup_method(method, request_.method)) {
    err = fail(501, "method not implemented");
    return false;
  }
  request_.version_minor = version[7] == '0' ? 0 : 1;
  target_ = {line_off + sp1 + 1, target.size()};
  return true;
}

bool RequestParser::parse_header_line(std::string_view line, std::size_t line_off,
                                      ParseResult& err) {
  if (is_ows(line.front())) {
    err = fail(400, "obsolete header line folding");
    return false;
  }
  std::size_t colon = line.find(':');
  std::string_view name = line.substr(0, colon);
  if (colon == std::string_view::npos || !is_token(name)) {
    err = fail(400, "malformed header field");
    return false;
  }
  std::string_view raw = line.substr(colon + 1);
  std::string_view value = trim_ows(raw);
  if (!is_field_value(value)) {
    err = fail(400, "invalid character in header value");
    return false;
  }
  if (spans_.size() >= limits_.max_headers) {
    err = fail(431, "too many header fields");
    return false;
  }
  std::size_t value_off = line_off + colon + 1 +
                          static_cast<std::size_t>(value.empty() ? 0 : value.data() - raw.data());
  spans_.push_back({{line_off, name.size()}, {value_off, value.size()}});

  if (iequals(name, "content-length")) {
    if (value.empty()) {
      err = fail(400, "invalid Content-Length");
      return false;
    }
    std::uint64_t n = 0;
    for (char c : value) {
      if (c < '0' || c > '9') {
        err = fail(400, "invalid Content-Length");
        return false;
      }
      auto d = static_cast<std::uint64_t>(c - '0');
      // Saturate: anything this large is refused by the body limit anyway.
      n = n > (std::numeric_limits<std::uint64_t>::max() - d) / 10
              ? std::numeric_limits<std::uint64_t>::max()
              : n * 10 + d;
    }
    if (have_length_ && n != content_length_) {
      err = fail(400, "conflicting Content-Length fields");
      return false;
    }
    have_length_ = true;
    content_length_ = n;
  } else if (iequals(name, "transfer-encoding")) {
    // The codings of every Transfer-Encoding field, in order, make one list (RFC 9110 5.3).
    have_transfer_encoding_ = true;
    for_each_list_item(value, [this](std::string_view item) {
      final_chunked_ = iequals(item, "chunked");
      if (final_chunked_) {
        ++chunked_count_;
      } else {
        other_coding_ = true;
      }
    });
  } else if (iequals(name, "host")) {
    ++host_count_;
  } else if (iequals(name, "connection")) {
    for_each_list_item(value, [this](std::string_view item) {
      if (iequals(item, "close")) conn_close_ = true;
      if (iequals(item, "keep-alive")) conn_keep_alive_ = true;
    });
  } else if (iequals(name, "expect")) {
    expect_continue_ = iequals(value, "100-continue");
  }
  return true;
}

bool RequestParser::finish_head(ParseResult& err) {
  if (have_transfer_encoding_) {
    if (have_length_) {
      // Both framings at once is the classic request-smuggling shape (RFC 9112 6.1).
      err = fail(400, "both Transfer-Encoding and Content-Length");
    } else if (request_.version_minor == 0) {
      // HTTP/1.0 has no Transfer-Encoding: a 1.0 peer may have framed it otherwise (6.1).
      err = fail(400, "Transfer-Encoding in an HTTP/1.0 request");
    } else if (!final_chunked_) {
      // The body's length cannot be known (RFC 9112 6.3): 400, whatever the codings.
      err = fail(400, chunked_count_ == 0 && !other_coding_
                          ? "empty Transfer-Encoding"
                          : "chunked is not the final transfer coding");
    } else if (other_coding_) {
      err = fail(501, "only the chunked transfer coding is implemented");
    } else if (chunked_count_ != 1) {
      err = fail(400, "chunked applied more than once");
    } else {
      chunked_ = true;
    }
    if (!chunked_) return false;
  }
  if (host_count_ > 1 || (request_.version_minor == 1 && host_count_ == 0)) {
    err = fail(400, "an HTTP/1.1 request needs exactly one Host header");  // RFC 9112 3.2
    return false;
  }
  if (content_length_ > limits_.max_body_bytes) {
    err = fail(413, "request body is too large");
    return false;
  }
  if (request_.version_minor == 0) {
    request_.keep_alive = conn_keep_alive_ && !conn_close_ && !closing_;
    expect_continue_ = false;  // 100 Continue is HTTP/1.1 only.
  } else {
    request_.keep_alive = !conn_close_ && !closing_;
  }
  if (content_length_ == 0 && !chunked_) expect_continue_ = false;
  body_start_ = pos_;
  return true;
}

ParseResult RequestParser::complete(std::string_view input, std::string_view body,
                                    std::size_t end) {
  request_.target = input.substr(target_.off, target_.len);
  request_.headers.clear();
  for (const HeaderSpan& s : spans_) {
    request_.headers.push_back(
        {input.substr(s.name.off, s.name.len), input.substr(s.value.off, s.value.len)});
  }
  request_.body = body;
  ParseResult r;
  r.status = ParseStatus::complete;
  r.consumed = end;
  start_next();
  return r;
}

}  // namespace httpd
