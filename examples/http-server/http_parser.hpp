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
// (Options::input_limit), which the server sets to Limits::max_request_bytes().
//
// The one exception is a chunked body (Transfer-Encoding: chunked), which is not contiguous in
// the input: its data is decoded into a parser-owned buffer as it arrives (each byte copied once,
// the chunk being read kept as offsets like the rest), and Request::body points there. The raw
// request is still left unconsumed until it is complete, so its framing is bounded too
// (Limits::chunk_framing_budget()).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
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
/// ParseStatus::complete, and is valid as long as those bytes are; except the body of a chunked
/// request, which points into the parser and is valid until its next parse() or reset().
struct Request {
  Method method = Method::get;  ///< The method.
  std::string_view target;      ///< The request target, e.g. "/index.html?x=1".
  int version_minor = 1;        ///< 0 for HTTP/1.0, 1 for HTTP/1.1 (and later 1.x).
  std::vector<Header> headers;  ///< Header fields in order.
  std::string_view body;        ///< The body (Content-Length bytes, or the decoded chunks).
  bool keep_alive = true;       ///< Whether the connection may stay open after the response.

  /// The first header named `name` (case-insensitive), or an empty view.
  std::string_view header(std::string_view name) const noexcept;
};

/// Size limits. Exceeding one is an error with the status code the RFCs name.
struct Limits {
  /// Request line plus headers, CRLFs included: 414 while still in the request line, 431 in the
  /// headers. Refused as soon as that many bytes arrive without the line's end, not when it ends.
  std::size_t max_head_bytes = 8 * 1024;
  std::size_t max_headers = 100;  ///< Number of header fields (431).
  /// The decoded body: a larger Content-Length, or a chunk that would make a chunked body
  /// larger, is refused (413) before the body (or that chunk) is read.
  std::size_t max_body_bytes = 1024 * 1024;
  /// A chunk-size line, its extensions and CRLF included (400 as soon as that many bytes arrive
  /// without its end).
  std::size_t max_chunk_line_bytes = 1024;

  /// The framing a chunked body may carry besides its data: size lines, extensions, the CRLFs
  /// and the trailer section; more is refused (413). max_head_bytes + max_body_bytes / 8: a body
  /// of max_body_bytes fits in chunks of 48 bytes or more on average, a small body in smaller
  /// ones, and a peer sending 1-byte chunks (5 bytes of framing per data byte) cannot make the
  /// server hold more than this on top of the data.
  std::size_t chunk_framing_budget() const noexcept { return max_head_bytes + max_body_bytes / 8; }
  /// The most bytes one request can take on the wire before the parser completes or refuses it:
  /// its head, its body and, for a chunked body, the framing and the line in progress. What the
  /// server must let evloop hold of one unconsumed partial request (Options::input_limit).
  std::size_t max_request_bytes() const noexcept {
    return max_head_bytes + max_body_bytes + chunk_framing_budget() +
           (max_head_bytes > max_chunk_line_bytes ? max_head_bytes : max_chunk_line_bytes);
  }
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
/// Content-Length is digits only, duplicates must agree (400).
///
/// Transfer-Encoding (RFC 9112 6.1, 6.3, 7.1): `chunked` (any case), once, is decoded; a list
/// whose last coding is not chunked is 400 (the body's length cannot be known); another coding
/// before chunked is 501; chunked twice or an empty field 400; with Content-Length too 400 (the
/// request-smuggling shape), and in an HTTP/1.0 request 400. A chunked body: chunk-size in hex
/// (400 if it overflows 64 bits), extensions (`;name[=token or quoted-string]`, checked and
/// ignored) and CRLF on a line of at most max_chunk_line_bytes (400); each chunk's data followed
/// by CRLF (400); the decoded size over max_body_bytes is 413 at the end of the size line that
/// shows it, before that chunk is read; the last chunk `0`, then trailer fields (syntax as header
/// fields, 400; at most max_headers of them and max_head_bytes in all, 431; read and dropped), and
/// CRLF. All framing beyond the data must fit in Limits::chunk_framing_budget() (413).
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
  // Where a chunked body stands (in Phase::body).
  enum class Chunk : std::uint8_t { size_line, data, data_end, trailer };
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
  ParseResult parse_chunked(std::string_view input);
  bool find_line(std::string_view input, std::size_t limit_end, std::size_t& nl_off);
  bool parse_chunk_size_line(std::string_view line, ParseResult& err);
  bool parse_trailer_line(std::string_view line, ParseResult& err);
  bool framing_within_budget(ParseResult& err);
  ParseResult awaiting_more() noexcept;
  ParseResult complete(std::string_view input, std::string_view body, std::size_t end);
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
  bool other_coding_ = false;   // a transfer coding other than chunked was listed
  bool final_chunked_ = false;  // the last coding listed is chunked
  int chunked_count_ = 0;       // how many times chunked was listed
  bool chunked_ = false;        // the body is chunked (decided at the end of the head)
  // A chunked body in progress: offsets into the input, like pos_. pos_ is the next byte not
  // parsed; the data of a chunk is copied out as it arrives.
  Chunk chunk_ = Chunk::size_line;
  std::size_t body_start_ = 0;     // Offset of the first byte of the chunked body.
  std::size_t chunk_left_ = 0;     // Data bytes of the current chunk not arrived yet.
  std::size_t line_scanned_ = 0;   // The line at pos_ has no LF before this offset.
  std::size_t trailer_start_ = 0;  // Offset of the trailer section.
  std::size_t trailer_count_ = 0;
  std::string decoded_;  // The decoded chunked body (Request::body points here).
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
