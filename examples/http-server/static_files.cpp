// Example. Static files under one directory (see static_files.hpp for the path rules).
#include "static_files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include "http_handler.hpp"

namespace httpd {
namespace {

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decodes one segment (no '/' in it). found, bad_request or forbidden.
Lookup decode_segment(std::string_view raw, std::string& out) {
  out.clear();
  for (std::size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] != '%') {
      out += raw[i];
      continue;
    }
    const int hi = i + 2 < raw.size() ? hex_value(raw[i + 1]) : -1;
    const int lo = hi >= 0 ? hex_value(raw[i + 2]) : -1;
    if (lo < 0) return Lookup::bad_request;
    const char c = static_cast<char>(hi * 16 + lo);
    if (c == '\0' || c == '/') return Lookup::forbidden;
    out += c;
    i += 2;
  }
  return Lookup::found;
}

// What a failed open of `name` in `dir` means. A symbolic link fails an O_NOFOLLOW open with
// ELOOP on Linux, EMLINK on FreeBSD, and ENOTDIR when a directory was asked for: look at it.
Lookup failed_open(int dir, const char* name, int error) {
  switch (error) {
    case ENOENT:
    case ENAMETOOLONG:
      return Lookup::not_found;
    case EACCES:
    case EPERM:
    case ELOOP:
    case EMLINK:
      return Lookup::forbidden;
    case ENOTDIR: {
      struct stat st {};
      if (::fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) {
        return Lookup::forbidden;
      }
      return Lookup::not_found;  // a file where the path wants a directory
    }
    default:
      return Lookup::unavailable;
  }
}

// Opens `name` in `dir` without following a link; the descriptor, or -1 with `result` set.
int open_in(int dir, const std::string& name, int flags, Lookup& result) {
  int fd;
  do {
    fd = ::openat(dir, name.c_str(), flags | O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) result = failed_open(dir, name.c_str(), errno);
  return fd;
}

// A regular file at `fd`, whose status is `st` (closed otherwise): found, or forbidden.
Lookup take_regular(int fd, const struct stat& st, File& file) {
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Lookup::forbidden;
  }
  file.fd = fd;
  file.size = static_cast<std::uint64_t>(st.st_size);
  file.modified = st.st_mtime;
  return Lookup::found;
}

struct TypeOf {
  std::string_view extension;
  std::string_view type;
};

constexpr TypeOf kTypes[] = {
    {"html", "text/html; charset=utf-8"},
    {"htm", "text/html; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"json", "application/json"},
    {"txt", "text/plain; charset=utf-8"},
    {"md", "text/markdown; charset=utf-8"},
    {"xml", "application/xml"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"ico", "image/x-icon"},
    {"pdf", "application/pdf"},
    {"wasm", "application/wasm"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"mp4", "video/mp4"},
    {"webm", "video/webm"},
    {"mp3", "audio/mpeg"},
    {"zip", "application/zip"},
    {"gz", "application/gzip"},
    {"tar", "application/x-tar"},
};

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const char x = (a[i] >= 'A' && a[i] <= 'Z') ? static_cast<char>(a[i] + 32) : a[i];
    if (x != b[i]) return false;
  }
  return true;
}

// True when the path (origin form, without its query) names a directory: it ends in '/', or its
// last segment is "." or ".." (written plainly or %-encoded).
bool names_directory(std::string_view path) {
  if (path.empty() || path.back() == '/') return true;
  std::string last;
  if (decode_segment(path.substr(path.rfind('/') + 1), last) != Lookup::found) return false;
  return last == "." || last == "..";
}

// The Location of the 301 for a directory named without its trailing '/': the path as the client
// wrote it (leading slashes made one, so that it cannot read as "//host/..."), a '/', then the
// query, if any.
std::string directory_location(std::string_view target) {
  const std::size_t end = target.find_first_of("?#");
  std::string_view path = target.substr(0, end);
  while (path.size() > 1 && path[1] == '/') path.remove_prefix(1);
  std::string location(path);
  location += '/';
  if (end != std::string_view::npos && target[end] == '?') {
    location += target.substr(end, target.find('#', end) - end);
  }
  return location;
}

// The answer to a lookup that found nothing to serve: its status and a one-line body.
void append_refusal(Lookup why, const Request& req, std::string& out) {
  const int status = why == Lookup::bad_request ? 400
                     : why == Lookup::forbidden ? 403
                     : why == Lookup::not_found ? 404
                                                : 503;
  const std::string_view body = status == 400   ? "bad request\n"
                                : status == 403 ? "forbidden\n"
                                : status == 404 ? "not found\n"
                                                : "unavailable\n";
  append_head(status, "text/plain", body.size(), req.keep_alive, req.version_minor, {}, out);
  if (req.method != Method::head) out += body;
}

}  // namespace

Lookup split_path(std::string_view target, std::vector<std::string>& segments) {
  segments.clear();
  std::string_view path = target.substr(0, target.find_first_of("?#"));
  if (path.empty() || path.front() != '/') return Lookup::bad_request;
  std::string segment;
  while (!path.empty()) {
    path.remove_prefix(1);  // the '/'
    const std::string_view raw = path.substr(0, path.find('/'));
    path.remove_prefix(raw.size());
    if (const Lookup decoded = decode_segment(raw, segment); decoded != Lookup::found) {
      return decoded;
    }
    if (segment.empty() || segment == ".") continue;
    if (segment == "..") {
      if (segments.empty()) return Lookup::forbidden;  // above the root
      segments.pop_back();
      continue;
    }
    segments.push_back(segment);
  }
  return Lookup::found;
}

std::string_view content_type_for(std::string_view name) {
  const std::size_t dot = name.rfind('.');
  if (dot != std::string_view::npos) {
    const std::string_view extension = name.substr(dot + 1);
    for (const TypeOf& t : kTypes) {
      if (iequals(extension, t.extension)) return t.type;
    }
  }
  return "application/octet-stream";
}

bool StaticFiles::open(const std::string& dir, std::string& error) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    error = dir + ": " + std::generic_category().message(errno);
    return false;
  }
  if (root_fd_ >= 0) ::close(root_fd_);
  root_fd_ = fd;
  return true;
}

StaticFiles::~StaticFiles() {
  if (root_fd_ >= 0) ::close(root_fd_);
}

Lookup StaticFiles::lookup(std::string_view request_target, File& file) const {
  thread_local std::vector<std::string> segments;
  thread_local std::string storage;
  const std::string_view target = origin_form(request_target, storage);
  if (const Lookup split = split_path(target, segments); split != Lookup::found) return split;
  const bool directory_wanted = names_directory(target.substr(0, target.find_first_of("?#")));
  int dir = root_fd_;
  Lookup result = Lookup::found;
  // Every segment but the last must be a directory; the last may be a file or a directory.
  for (std::size_t i = 0; i + 1 < segments.size(); ++i) {
    const int next = open_in(dir, segments[i], O_DIRECTORY, result);
    if (dir != root_fd_) ::close(dir);
    if (next < 0) return result;
    dir = next;
  }
  static const std::string kHere = ".";
  static const std::string kIndex = "index.html";
  const std::string& last = segments.empty() ? kHere : segments.back();
  // O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below).
  int fd = open_in(dir, last, O_NONBLOCK, result);
  if (dir != root_fd_) ::close(dir);
  if (fd < 0) return result;
  file.type = content_type_for(last);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return Lookup::unavailable;
  }
  if (S_ISDIR(st.st_mode) && !directory_wanted) {
    ::close(fd);
    return Lookup::moved;
  }
  if (!S_ISDIR(st.st_mode) && directory_wanted) {
    ::close(fd);
    return Lookup::not_found;  // "/index.html/": a file is not a directory
  }
  if (S_ISDIR(st.st_mode)) {
    const int index = open_in(fd, kIndex, O_NONBLOCK, result);
    ::close(fd);
    if (index < 0) return result == Lookup::not_found ? Lookup::forbidden : result;  // no listing
    fd = index;
    file.type = content_type_for(kIndex);
    if (::fstat(fd, &st) != 0) {
      ::close(fd);
      return Lookup::unavailable;
    }
  }
  return take_regular(fd, st, file);
}

File StaticFiles::respond(const Request& req, std::string& out) const {
  File file;
  if (const Lookup found = lookup(req.target, file); found == Lookup::moved) {
    thread_local std::string storage;
    const std::string location = directory_location(origin_form(req.target, storage));
    const std::string_view body = "moved permanently\n";
    append_head(301, "text/plain", body.size(), req.keep_alive, req.version_minor,
                "Location: " + location + "\r\n", out);
    if (req.method != Method::head) out += body;
    return {};
  } else if (found != Lookup::found) {
    append_refusal(found, req, out);
    return {};
  }
  // "Last-Modified: <date>\r\n", formatted again only for another time than the last one.
  thread_local std::string extra;
  thread_local std::time_t extra_for = -1;
  if (file.modified != extra_for || extra.empty()) {
    extra.assign("Last-Modified: ");
    append_http_date(file.modified, extra);
    extra += "\r\n";
    extra_for = file.modified;
  }
  std::time_t since = 0;
  if (parse_http_date(req.header("If-Modified-Since"), since) && file.modified <= since) {
    append_head(304, {}, 0, req.keep_alive, req.version_minor, extra, out);
    ::close(file.fd);
    return {};
  }
  append_head(200, file.type, static_cast<std::size_t>(file.size), req.keep_alive,
              req.version_minor, extra, out);
  if (req.method == Method::head || file.size == 0) {
    ::close(file.fd);
    return {};
  }
  return file;
}

}  // namespace httpd
