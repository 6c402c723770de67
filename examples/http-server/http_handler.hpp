// Example (not part of the library). What the http-server answers: routing and response bytes,
// separate from the parser and from evloop.
#pragma once

#include <ctime>
#include <string>
#include <string_view>

#include "http_parser.hpp"

namespace httpd {

/// Appends the response to `req` to `out`. Routes: GET or HEAD "/" → 200 "Hello, World!";
/// POST or PUT "/echo" → 200 with the request body; other methods on those paths → 405;
/// anything else → 404. An absolute-form target is routed by its path (origin_form()). The response
/// keeps the connection open iff req.keep_alive.
void append_response(const Request& req, std::string& out);

/// The origin form ("/path?query") of a request target. An origin-form target is returned as it
/// is; an absolute-form one ("http://host:port/path?query", which a server MUST accept: RFC 9112
/// 3.2.2) without its "scheme://authority" (case-insensitive http or https), with "/" for an
/// empty path ("http://host?q" is "/?q", built in `storage`). Empty for anything else ("*", an
/// authority-form target, another scheme): the caller answers 400 or 404.
std::string_view origin_form(std::string_view target, std::string& storage);

/// Appends an error response with `status` (400, 408, 413, 414, 431, 501, 505) and `reason` as
/// the body. It always says "Connection: close": the caller closes after sending it.
void append_error(int status, std::string_view reason, std::string& out);

/// Appends a response head: the status line, Server, Date, Content-Type and Content-Length (not
/// for 304, which has no body), the header lines in `extra` (each ending in CRLF), and Connection
/// as `keep_alive` and the request's HTTP version need; then the empty line.
void append_head(int status, std::string_view content_type, std::size_t length, bool keep_alive,
                 int version_minor, std::string_view extra, std::string& out);

/// Appends `time` as an HTTP date (RFC 9110 5.6.7 IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT").
void append_http_date(std::time_t time, std::string& out);
/// Parses an IMF-fixdate; false for anything else (the obsolete formats included).
bool parse_http_date(std::string_view text, std::time_t& time);

/// The interim response a client that sent "Expect: 100-continue" waits for.
inline constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";

}  // namespace httpd
