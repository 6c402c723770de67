// Example (not part of the library). An incremental HTTP/1.0 and HTTP/1.1 request parser with no
// dependency on evloop, so it can be unit-tested and fuzzed on its own.
//
// How it meets evloop's `data` callback: the parser never copies. A request that is not complete
// yet is left *unconsumed*: the callback returns the bytes of the complete requests only, evloop
// keeps the tail and hands it back, followed by the new bytes, on the next call. The parser
// remembers how far it has already parsed (as offsets from the start of the unconsumed tail), so
// a request that arrives one byte at a time is still parsed in linear time. We chose this over
// copying into a parser-owned buffer because the common case (whole requests in one read, wrk
// and pipelining) then costs no copy and no allocation, and evloop already bounds the tail
// (Options::input_limit), which the server sets to the header limit plus the body limit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace httpd {

/// Request methods the parser accepts. Any other syntactically valid method gets 501.
enum class Method { get, head, post, put, del, options, patch };

/// Returns the method's name as sent on the wire ("GET", ...).
std::string_view method_name(Method m) noexcept;

/// One header field: views into the input passed to RequestParser::parse().
struct Header {
  std::string_view name;   ///< Field name as sent (case preserved).
  std::string_view value;  ///< Field value without surrounding whitespace.
};

/// A parsed request. Every view points into the input given to the parse() call that returned
/// ParseStatus::complete, and is valid as long as those bytes are.
struct Request {
  Method method = Method::get;  ///< The method.
  std::string_view target;      ///< The request target, e.g. "/index.html?x=1".
  int version_minor = 1;        ///< 0 for HTTP/1.0, 1 for HTTP/1.1 (and later 1.x).
  std::vector<Header> headers;  ///< Header fields in order.
  std::string_view body;        ///< The body (Content-Length bytes), possibly empty.
  bool keep_alive = true;       ///< Whether the connection may stay open after the response.

  /// The first header named `name` (case-insensitive), or an empty view.
  std::string_view header(std::string_view name) const noexcept;
};

/// Size limits. Exceeding one is an error with the status code the RFCs name.
struct Limits {
  /// Request line plus headers, CRLFs included: 414 while still in the request line, 431 in the
  /// headers. Refused as soon as that many bytes arrive without the line's end, not when it ends.
  std::size_t max_head_bytes = 8 * 1024;
  std::size_t max_headers = 100;             ///< Number of header fields (431).
  std::size_t max_body_bytes = 1024 * 1024;  ///< Content-Length above this is refused (413).
};

/// What one parse() call found.
enum class ParseStatus {
  complete,    ///< A whole request: see RequestParser::request(); `consumed` is its length.
  incomplete,  ///< More bytes are needed; consume nothing and call again with more.
  error,       ///< The request is bad; answer `error_status` and close the connection.
};

/// The result of RequestParser::parse().
struct ParseResult {
  ParseStatus status = ParseStatus::incomplete;  ///< See ParseStatus.
  std::size_t consumed = 0;       ///< Bytes of the complete request (0 unless complete).
  int error_status = 0;           ///< 400, 413, 414, 431, 501 or 505 when status == error.
  std::string_view error_reason;  ///< A short explanation for the error response body.
  bool send_continue = false;     ///< Headers done, body pending, client sent
                                  ///< "Expect: 100-continue": answer "100 Continue" now.
};

/// Parses requests one at a time from the front of a byte stream.
///
/// Contract: after `incomplete`, the next call must pass the same bytes again followed by more
/// (that is exactly what evloop's unconsumed tail gives). After `complete`, the next call starts
/// at the byte after the request. After `error` the parser stays in error until reset().
///
/// Rules: lines end in CRLF (a bare LF is an error); empty lines before a request line are
/// skipped; methods are case-sensitive tokens; HTTP/1.x only (505 otherwise); an HTTP/1.1
/// request needs exactly one Host; no whitespace before a header colon and no obs-fold (400);
/// Content-Length is digits only, duplicates must agree (400). Transfer-Encoding (chunked bodies)
/// is not supported: 501 (400 if Content-Length is present too, as that is a smuggling attempt).
///
/// Early rejection: the bytes of a line that has not ended yet are checked as they arrive, so a
/// stream that cannot be HTTP (a control character or a space where a method should start, a
/// non-token byte in the method, a bad byte in the target, anything but "HTTP/d.d" after it, a
/// non-token byte in a field name, a control character in a field value) gets its 400 at the
/// first byte that shows it, without waiting for a line end. Such a prefix gets 400 whatever
/// follows it, so the answer does not depend on how the input was split into reads.
class RequestParser {
 public:
  /// A parser with the given limits.
  explicit RequestParser(Limits limits = {}) : limits_(limits) {}

  /// Parses the request at the front of `input` (see the class comment for the contract).
  ParseResult parse(std::string_view input);
  /// The request found by the last parse() that returned complete.
  const Request& request() const noexcept { return request_; }
  /// True after `incomplete` once the head of the request is complete and its body is awaited.
  bool awaiting_body() const noexcept { return phase_ == Phase::body; }
  /// Forgets all progress (e.g. to reuse the parser for a new connection).
  void reset() noexcept;
  /// The server closes the connection after the request in progress (a live upgrade leaves the
  /// connection here to finish it): that request, and any later one, completes with keep_alive
  /// false, so its response says "Connection: close". reset() forgets it.
  void close_after_current() noexcept {
    closing_ = true;
    request_.keep_alive = false;
  }

 private:
  enum class Phase { request_line, headers, body, failed };
  // Where the check of an unfinished line stands (see check_partial_line).
  enum class Expect : std::uint8_t {
    line_start,    // the first byte of a line
    method,        // request line: more method (token) bytes or SP
    target_start,  // request line: the first byte of the target
    target,        // request line: more target bytes or SP
    version,       // request line: byte `version_at` of "HTTP/d.d"
    name,          // header line: more field-name (token) bytes or ':'
    value,         // header line: field-value bytes or CR
    line_feed,     // after the CR that should end the line: only LF may follow
  };
  struct LineCheck {
    std::size_t end = 0;  // Offset of the first byte not checked yet.
    Expect expect = Expect::line_start;
    std::uint8_t version_at = 0;
  };
  // A header field as offsets into the input, since the input moves between calls.
  struct Span {
    std::size_t off = 0;
    std::size_t len = 0;
  };
  struct HeaderSpan {
    Span name;
    Span value;
  };

  ParseResult fail(int status, std::string_view reason) noexcept;
  bool check_partial_line(std::string_view input, std::size_t end, ParseResult& err);
  bool parse_request_line(std::string_view line, std::size_t line_off, ParseResult& err);
  bool parse_header_line(std::string_view line, std::size_t line_off, ParseResult& err);
  bool finish_head(ParseResult& err);
  ParseResult complete(std::string_view input);
  void start_next() noexcept;

  Limits limits_;
  Phase phase_ = Phase::request_line;
  std::size_t pos_ = 0;  // Offset of the next unparsed line (or of the body).
  LineCheck check_;      // How far the unfinished line at pos_ has been checked (a state that
                         // ends before pos_ is a finished line's, and void).
  Span target_;
  std::vector<HeaderSpan> spans_;
  std::uint64_t content_length_ = 0;
  bool have_length_ = false;
  bool have_transfer_encoding_ = false;
  int host_count_ = 0;
  bool conn_close_ = false;
  bool conn_keep_alive_ = false;
  bool closing_ = false;  // close_after_current()
  bool expect_continue_ = false;
  bool continue_sent_ = false;
  int error_status_ = 0;           // Kept after an error, for later calls.
  std::string_view error_reason_;  // Always a string literal.
  Request request_;
};

}  // namespace httpd
