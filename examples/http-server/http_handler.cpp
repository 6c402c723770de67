// Example. Responses of the http-server. The hot path (GET / with keep-alive) copies one
// preformatted response that is rebuilt once a second, when the Date header changes.
#include "http_handler.hpp"

#include <ctime>

namespace httpd {
namespace {

constexpr std::string_view kHello = "Hello, World!";
constexpr std::string_view kTextPlain = "text/plain";

std::string_view status_text(int status) noexcept {
  switch (status) {
    case 200:
      return "OK";
    case 301:
      return "Moved Permanently";
    case 304:
      return "Not Modified";
    case 403:
      return "Forbidden";
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
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Error";
  }
}

constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

void append_digits(int value, int width, std::string& out) {
  char text[8];
  for (int i = width - 1; i >= 0; --i, value /= 10) text[i] = static_cast<char>('0' + value % 10);
  out.append(text, static_cast<std::size_t>(width));
}

// The current Date header value, formatted at most once a second per thread; `second` is the
// second it shows.
std::string_view http_date(std::time_t& second) {
  thread_local std::time_t last = 0;
  thread_local std::string text;
  second = std::time(nullptr);
  if (second != last) {
    last = second;
    text.clear();
    append_http_date(second, text);
  }
  return text;
}

// The whole "GET / HTTP/1.1" keep-alive response, cached per thread and rebuilt when its Date
// is no longer this second's (whichever response formatted the new Date first).
std::string_view hello_response() {
  thread_local std::string cached;
  thread_local std::time_t cached_second = 0;
  std::time_t second = 0;
  http_date(second);
  if (second != cached_second || cached.empty()) {
    cached.clear();
    append_head(200, kTextPlain, kHello.size(), true, 1, {}, cached);
    cached += kHello;
    cached_second = second;
  }
  return cached;
}

}  // namespace

void append_http_date(std::time_t time, std::string& out) {
  std::tm tm{};
  gmtime_r(&time, &tm);
  out += kDays[tm.tm_wday % 7];
  out += ", ";
  append_digits(tm.tm_mday, 2, out);
  out += ' ';
  out += kMonths[tm.tm_mon % 12];
  out += ' ';
  append_digits(tm.tm_year + 1900, 4, out);
  out += ' ';
  append_digits(tm.tm_hour, 2, out);
  out += ':';
  append_digits(tm.tm_min, 2, out);
  out += ':';
  append_digits(tm.tm_sec, 2, out);
  out += " GMT";
}

bool parse_http_date(std::string_view text, std::time_t& time) {
  // IMF-fixdate only ("Sun, 06 Nov 1994 08:49:37 GMT", 29 bytes), which every current client
  // sends; anything else is ignored, as RFC 9110 13.1.3 allows for an invalid date.
  auto number = [&text](std::size_t at, std::size_t width, int& value) {
    value = 0;
    for (std::size_t i = at; i < at + width; ++i) {
      if (text[i] < '0' || text[i] > '9') return false;
      value = value * 10 + (text[i] - '0');
    }
    return true;
  };
  if (text.size() != 29 || text.substr(3, 2) != ", " || text[7] != ' ' || text[11] != ' ' ||
      text[16] != ' ' || text[19] != ':' || text[22] != ':' || text.substr(25) != " GMT") {
    return false;
  }
  std::tm tm{};
  int month = 0;
  while (month < 12 && text.substr(8, 3) != kMonths[month]) ++month;
  if (month == 12 || !number(5, 2, tm.tm_mday) || !number(12, 4, tm.tm_year) ||
      !number(17, 2, tm.tm_hour) || !number(20, 2, tm.tm_min) || !number(23, 2, tm.tm_sec) ||
      tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60) {
    return false;
  }
  tm.tm_mon = month;
  tm.tm_year -= 1900;
  time = timegm(&tm);
  return time != static_cast<std::time_t>(-1);
}

void append_head(int status, std::string_view content_type, std::size_t length, bool keep_alive,
                 int version_minor, std::string_view extra, std::string& out) {
  std::time_t unused = 0;
  out += "HTTP/1.1 ";
  out += std::to_string(status);
  out += ' ';
  out += status_text(status);
  out += "\r\nServer: evloop\r\nDate: ";
  out += http_date(unused);
  if (status != 304) {  // a 304 has no body: it describes the one the client has
    out += "\r\nContent-Type: ";
    out += content_type;
    out += "\r\nContent-Length: ";
    out += std::to_string(length);
  }
  out += "\r\n";
  out += extra;
  if (!keep_alive) {
    out += "Connection: close\r\n";
  } else if (version_minor == 0) {
    out += "Connection: keep-alive\r\n";  // HTTP/1.0 closes unless told otherwise.
  }
  out += "\r\n";
}

std::string_view origin_form(std::string_view target, std::string& storage) {
  if (!target.empty() && target.front() == '/') return target;
  const auto starts_with_nocase = [&](std::string_view prefix) {
    if (target.size() < prefix.size()) return false;
    for (std::size_t i = 0; i < prefix.size(); ++i) {
      const char c = target[i];
      if ((c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c) != prefix[i]) return false;
    }
    return true;
  };
  std::string_view rest;
  if (starts_with_nocase("http://")) {
    rest = target.substr(7);
  } else if (starts_with_nocase("https://")) {
    rest = target.substr(8);
  } else {
    return {};
  }
  const std::size_t end = rest.find_first_of("/?#");  // the end of the authority
  if (end == 0 || rest.empty()) return {};            // no host
  if (end == std::string_view::npos) return "/";
  rest.remove_prefix(end);
  if (rest.front() == '/') return rest;
  storage.resize(rest.size() + 1);
  storage[0] = '/';
  rest.copy(storage.data() + 1, rest.size());
  return storage;
}

void append_response(const Request& req, std::string& out) {
  thread_local std::string storage;
  const std::string_view target = origin_form(req.target, storage);
  std::string_view path = target.substr(0, target.find('?'));
  bool head_only = req.method == Method::head;
  if (path == "/") {
    if (req.method == Method::get && req.keep_alive && req.version_minor == 1) {
      out += hello_response();
      return;
    }
    if (req.method == Method::get || head_only) {
      append_head(200, kTextPlain, kHello.size(), req.keep_alive, req.version_minor, {}, out);
      if (!head_only) out += kHello;
      return;
    }
    std::string_view body = "method not allowed\n";
    append_head(405, kTextPlain, body.size(), req.keep_alive, req.version_minor,
                "Allow: GET, HEAD\r\n", out);
    out += body;
    return;
  }
  if (path == "/echo") {
    if (req.method == Method::post || req.method == Method::put) {
      append_head(200, kTextPlain, req.body.size(), req.keep_alive, req.version_minor, {}, out);
      out += req.body;
      return;
    }
    std::string_view body = "method not allowed\n";
    append_head(405, kTextPlain, body.size(), req.keep_alive, req.version_minor,
                "Allow: POST, PUT\r\n", out);
    if (!head_only) out += body;
    return;
  }
  std::string_view body = "not found\n";
  append_head(404, kTextPlain, body.size(), req.keep_alive, req.version_minor, {}, out);
  if (!head_only) out += body;
}

void append_error(int status, std::string_view reason, std::string& out) {
  append_head(status, kTextPlain, reason.size() + 1, false, 1, {}, out);
  out += reason;
  out += '\n';
}

}  // namespace httpd
