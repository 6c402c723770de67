// Example (not part of the library). The http-server's static files (--root DIR): GET and HEAD
// of regular files under one directory, with no dependency on evloop (the body is an open file
// descriptor that main.cpp hands to Conn::send_file), so it is unit-tested alone.
//
// Path resolution, and why it cannot leave the directory:
// 1. The path of the target is percent-decoded segment by segment. An encoded '/' ("%2f") or NUL
//    ("%00") is refused (403): it would hide a separator or end the name early. "." segments and
//    empty ones are dropped; ".." removes the segment before it, and one that would climb above
//    the root is refused (403), whether written as ".." or "%2e%2e".
// 2. The file is opened one segment at a time, each relative to the directory opened before it
//    (openat(2) from the root's descriptor, opened once at start), with O_NOFOLLOW: a symbolic
//    link anywhere in the path is refused (403), whether it points inside or outside the root
//    (like nginx's `disable_symlinks on`).
// 3. What is served is what was opened: its type and size come from fstat() of the descriptor.
//    A directory is served as its index.html when the path names a directory ("/sub/"); "/sub"
//    gets a 301 to "/sub/" (the query kept), so that relative links in the page resolve inside
//    it; "/file/" is 404.
//
// TOCTOU: there is no check-then-use window. A symbolic link that appears between two requests,
// or between two segments of one request, is refused by the open itself, and no path string is
// resolved twice (realpath() + open() would be: a component swapped for a link between the two
// escapes). What remains is what any server has: a hard link to an outside file is a regular file
// inside the root, and a directory already opened for a request that someone with write access
// moves out of the root during that one lookup is followed to its new place. Opening costs one
// openat() per segment, on the loop thread (files in the page cache; a disk that blocks blocks
// the loop).
#pragma once

#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

#include "http_parser.hpp"

namespace httpd {

/// What a lookup found: a file to serve, or why not (with the status to answer).
enum class Lookup {
  found,        ///< 200 (or 304): `File` holds the open file.
  moved,        ///< 301: a directory named without its trailing '/' (Location: the path + '/').
  bad_request,  ///< 400: a target that is neither "/..." nor "http[s]://host/...", or a
                ///< malformed %-escape.
  forbidden,    ///< 403: outside the root, a symbolic link, not a regular file, no permission.
  not_found,    ///< 404 (also a file named with a trailing '/', as in "/index.html/").
  unavailable,  ///< 503: the open failed otherwise (out of file descriptors, I/O error).
};

/// An open regular file (the descriptor is the caller's to close).
struct File {
  int fd = -1;
  std::uint64_t size = 0;
  std::time_t modified = 0;  ///< Last modification, whole seconds.
  std::string_view type;     ///< Its Content-Type (from the name's extension).
};

/// Splits an origin-form request target's path into decoded segments with "." and ".." resolved
/// (step 1 above). Returns found, bad_request or forbidden.
Lookup split_path(std::string_view target, std::vector<std::string>& segments);

/// The Content-Type for a file name, from its extension (a small table; application/octet-stream
/// for the rest).
std::string_view content_type_for(std::string_view name);

/// The files under one directory.
class StaticFiles {
 public:
  /// Opens `dir` (which must be a directory); false with `error` set when it cannot.
  bool open(const std::string& dir, std::string& error);
  /// True once open() succeeded.
  bool enabled() const noexcept { return root_fd_ >= 0; }

  /// Finds and opens the file for `target`, in origin form or absolute form (origin_form()). A
  /// directory named with a trailing '/' (or ending in a "." or ".." segment) stands for its
  /// index.html; named without one it is `moved` (301 to the same path with the '/', as nginx
  /// does); a file named with a trailing '/' is not_found.
  Lookup lookup(std::string_view target, File& file) const;

  /// Answers a GET or HEAD: appends the response head (and the body of an error) to `out`.
  /// Returns the file whose bytes must follow the head (fd >= 0: the caller sends `size` bytes
  /// of it and closes it), or fd -1 when `out` is the whole response.
  File respond(const Request& req, std::string& out) const;

  StaticFiles() = default;
  ~StaticFiles();
  StaticFiles(const StaticFiles&) = delete;
  StaticFiles& operator=(const StaticFiles&) = delete;

 private:
  int root_fd_ = -1;
};

}  // namespace httpd
