// Example (not part of the library). What the http-server answers: routing and response bytes,
// separate from the parser and from evloop.
#pragma once

#include <string>
#include <string_view>

#include "http_parser.hpp"

namespace httpd {

/// Appends the response to `req` to `out`. Routes: GET or HEAD "/" → 200 "Hello, World!";
/// POST or PUT "/echo" → 200 with the request body; other methods on those paths → 405;
/// anything else → 404. The response keeps the connection open iff `keep_alive`: req.keep_alive,
/// unless the server closes the connection after this response anyway ("Connection: close").
void append_response(const Request& req, bool keep_alive, std::string& out);

/// Appends an error response with `status` (400, 408, 413, 414, 431, 501, 505) and `reason` as
/// the body. It always says "Connection: close": the caller closes after sending it.
void append_error(int status, std::string_view reason, std::string& out);

/// The interim response a client that sent "Expect: 100-continue" waits for.
inline constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";

}  // namespace httpd
