#include "inherited_listeners.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string_view>

#include "sys_error.hpp"

namespace evloop::detail {
namespace {

Status bad_environment(const std::string& why) {
  return {make_error_code(errc::bad_address), "systemd socket activation: " + why};
}

bool parse_long(std::string_view text, long& out) {
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc{} && end == text.data() + text.size();
}

// The process's systemd sockets, read from the environment once (and again if it is set again).
struct Registry {
  std::mutex mutex;
  bool read = false;
  SystemdEnvironment environment;  // guarded by mutex
  std::vector<bool> claimed;       // guarded by mutex: served by a Server that started
};

Registry& registry() {
  static Registry r;
  return r;
}

// Reads and unsets the variables unless they were read before and not set again since.
Status read_environment(Registry& r) {
  const char* fds = std::getenv("LISTEN_FDS");
  if (r.read && fds == nullptr) return {};
  SystemdEnvironment parsed;
  const Status s = parse_systemd_environment(std::getenv("LISTEN_PID"), fds,
                                             std::getenv("LISTEN_FDNAMES"), ::getpid(), parsed);
  // As sd_listen_fds(1): unset whether they were ours or not, so no child inherits them.
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_FDNAMES");
  r.read = true;
  if (!s) return s;
  for (const SystemdSocket& socket : parsed.sockets) ::fcntl(socket.fd, F_SETFD, FD_CLOEXEC);
  r.claimed.assign(parsed.sockets.size(), false);
  r.environment = std::move(parsed);
  return {};
}

std::string names_of(const std::vector<SystemdSocket>& sockets) {
  std::string names;
  for (const SystemdSocket& s : sockets) {
    if (names.find("'" + s.name + "'") != std::string::npos) continue;
    names += (names.empty() ? "'" : ", '") + s.name + "'";
  }
  return names;
}

}  // namespace

Status parse_systemd_environment(const char* listen_pid, const char* listen_fds,
                                 const char* listen_fdnames, long self, SystemdEnvironment& out) {
  out = {};
  if (listen_fds == nullptr || listen_pid == nullptr) {
    out.note = "LISTEN_FDS and LISTEN_PID are not set: the process was not socket-activated";
    return {};
  }
  long pid = 0;
  long count = 0;
  if (!parse_long(listen_pid, pid) || pid <= 0) {
    return bad_environment("LISTEN_PID='" + std::string(listen_pid) + "' is not a process id");
  }
  if (!parse_long(listen_fds, count) || count < 0 || count > 65536) {
    return bad_environment("LISTEN_FDS='" + std::string(listen_fds) + "' is not a count of fds");
  }
  if (pid != self) {
    out.note = "LISTEN_PID=" + std::to_string(pid) + " names another process (this one is " +
               std::to_string(self) + "): the sockets were not passed to it";
    return {};
  }
  std::vector<std::string> names;
  if (listen_fdnames != nullptr) {
    std::string_view rest = listen_fdnames;
    for (;;) {
      const std::size_t colon = rest.find(':');
      names.emplace_back(rest.substr(0, colon));
      if (colon == std::string_view::npos) break;
      rest.remove_prefix(colon + 1);
    }
    if (static_cast<long>(names.size()) != count) {
      return bad_environment("LISTEN_FDNAMES names " + std::to_string(names.size()) +
                             " fds but LISTEN_FDS is " + std::to_string(count));
    }
  }
  for (long i = 0; i < count; ++i) {
    const auto at = static_cast<std::size_t>(i);
    out.sockets.push_back(
        {kSystemdFirstFd + static_cast<int>(i), names.empty() ? "unknown" : names[at]});
  }
  if (count == 0) out.note = "LISTEN_FDS=0";
  return {};
}

Status select_systemd_sockets(const ListenAddress& address, std::vector<int>& fds) {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  if (Status s = read_environment(r); !s)
    return {s.code(), "listen " + address.text + ": " + s.message()};
  const std::vector<SystemdSocket>& sockets = r.environment.sockets;
  if (sockets.empty()) {
    return {make_error_code(errc::bad_address),
            "listen " + address.text + ": systemd passed no socket (" + r.environment.note + ")"};
  }
  bool named = false;
  for (std::size_t i = 0; i < sockets.size(); ++i) {
    if (!address.name.empty() && sockets[i].name != address.name) continue;
    named = true;
    if (!r.claimed[i]) fds.push_back(sockets[i].fd);
  }
  if (!fds.empty()) return {};
  return {
      make_error_code(errc::bad_address),
      "listen " + address.text + ": " +
          (named ? std::string("every such socket is already served by a running Server")
                 : "systemd passed no socket named '" + address.name +
                       "' (FileDescriptorName= of the sockets passed: " + names_of(sockets) + ")")};
}

void claim_systemd_sockets(const std::vector<int>& fds) {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  for (std::size_t i = 0; i < r.environment.sockets.size(); ++i) {
    for (const int fd : fds) {
      if (r.environment.sockets[i].fd == fd) r.claimed[i] = true;
    }
  }
}

Status check_inherited_listener(int fd, const std::string& text, SocketAddress& bound) {
  int type = 0;
  int listening = 0;
  socklen_t len = sizeof type;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0) {
    const int e = errno;
    return {sys_error(e), "listen " + text + ": fd " + std::to_string(fd) + ": " +
                              (e == ENOTSOCK ? "not a socket" : sys_error(e).message())};
  }
  len = sizeof listening;
  if (type != SOCK_STREAM || ::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0 ||
      listening == 0) {
    return {make_error_code(errc::bad_address),
            "listen " + text + ": fd " + std::to_string(fd) + " is not a listening stream socket"};
  }
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 ||
      ::fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
    const int e = errno;
    return {sys_error(e), "listen " + text + ": fcntl: " + sys_error(e).message()};
  }
  bound = local_address(fd);
  return {};
}

std::vector<std::vector<InheritedSocket>> group_by_address(
    const std::vector<InheritedSocket>& sockets) {
  std::vector<std::vector<InheritedSocket>> groups;
  for (const InheritedSocket& socket : sockets) {
    auto same = [&](const std::vector<InheritedSocket>& g) {
      const SocketAddress& a = g.front().bound;
      return a.size() == socket.bound.size() &&
             std::memcmp(a.data(), socket.bound.data(), a.size()) == 0;
    };
    auto it = groups.begin();
    while (it != groups.end() && !same(*it)) ++it;
    if (it == groups.end()) {
      groups.push_back({socket});
    } else {
      it->push_back(socket);
    }
  }
  return groups;
}

}  // namespace evloop::detail
