// Example. Responses of the http-server. The hot path (GET / with keep-alive) copies one
// preformatted response that is rebuilt once a second, when the Date header changes.
#include "http_handler.hpp"

#include <ctime>

namespace httpd {
namespace {

constexpr std::string_view kHello = "Hello, World!";

std::string_view status_text(int status) noexcept {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 431:
      return "Request Header Fields Too Large";
    case 501:
      return "Not Implemented";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Error";
  }
}

// The current Date header value (RFC 9110 5.6.7 IMF-fixdate), formatted at most once a second
// per thread. Returns true in `changed` when the second moved on.
std::string_view http_date(bool& changed) {
  thread_local std::time_t last = 0;
  thread_local char text[40] = {};
  std::time_t now = std::time(nullptr);
  changed = now != last;
  if (changed) {
    last = now;
    std::tm tm{};
    gmtime_r(&now, &tm);
    std::strftime(text, sizeof text, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  }
  return text;
}

void append_head(int status, std::size_t length, bool keep_alive, int version_minor,
                 std::string_view extra, std::string& out) {
  bool unused = false;
  out += "HTTP/1.1 ";
  out += std::to_string(status);
  out += ' ';
  out += status_text(status);
  out += "\r\nServer: evloop\r\nDate: ";
  out += http_date(unused);
  out += "\r\nContent-Type: text/plain\r\nContent-Length: ";
  out += std::to_string(length);
  out += "\r\n";
  out += extra;
  if (!keep_alive) {
    out += "Connection: close\r\n";
  } else if (version_minor == 0) {
    out += "Connection: keep-alive\r\n";  // HTTP/1.0 closes unless told otherwise.
  }
  out += "\r\n";
}

// The whole "GET / HTTP/1.1" keep-alive response, cached per thread.
std::string_view hello_response() {
  thread_local std::string cached;
  bool changed = false;
  http_date(changed);
  if (changed || cached.empty()) {
    cached.clear();
    append_head(200, kHello.size(), true, 1, {}, cached);
    cached += kHello;
  }
  return cached;
}

}  // namespace

void append_response(const Request& req, bool keep_alive, std::string& out) {
  std::string_view path = req.target.substr(0, req.target.find('?'));
  bool head_only = req.method == Method::head;
  if (path == "/") {
    if (req.method == Method::get && keep_alive && req.version_minor == 1) {
      out += hello_response();
      return;
    }
    if (req.method == Method::get || head_only) {
      append_head(200, kHello.size(), keep_alive, req.version_minor, {}, out);
      if (!head_only) out += kHello;
      return;
    }
    std::string_view body = "method not allowed\n";
    append_head(405, body.size(), keep_alive, req.version_minor, "Allow: GET, HEAD\r\n", out);
    out += body;
    return;
  }
  if (path == "/echo") {
    if (req.method == Method::post || req.method == Method::put) {
      append_head(200, req.body.size(), keep_alive, req.version_minor, {}, out);
      out += req.body;
      return;
    }
    std::string_view body = "method not allowed\n";
    append_head(405, body.size(), keep_alive, req.version_minor, "Allow: POST, PUT\r\n", out);
    out += body;
    return;
  }
  std::string_view body = "not found\n";
  append_head(404, body.size(), keep_alive, req.version_minor, {}, out);
  if (!head_only) out += body;
}

void append_error(int status, std::string_view reason, std::string& out) {
  append_head(status, reason.size() + 1, false, 1, {}, out);
  out += reason;
  out += '\n';
}

}  // namespace httpd
