#include "upgrade_spawn.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "evloop/upgrade.hpp"
#include "sys_error.hpp"
#include "upgrade_protocol.hpp"

extern char** environ;

namespace evloop::detail::upgrade {
namespace {

bool names_variable(const std::string& entry, const char* name) {
  const std::size_t n = std::strlen(name);
  return entry.size() > n && entry.compare(0, n, name) == 0 && entry[n] == '=';
}

bool describes_inheritance(const std::string& entry) {
  return names_variable(entry, "LISTEN_PID") || names_variable(entry, "LISTEN_FDS") ||
         names_variable(entry, "LISTEN_FDNAMES") || names_variable(entry, kUpgradeFdVariable);
}

std::vector<char*> pointers(const std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (const std::string& s : strings) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

// The child, between fork and exec: async-signal-safe calls only.
[[noreturn]] void become_successor(char* const* argv, char* const* envp, int control_fd) {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  ::fcntl(control_fd, F_SETFD, 0);
  ::execve(argv[0], argv, envp);
  const auto error = static_cast<std::uint32_t>(errno);
  unsigned char header[kHeaderSize];
  encode_header(FrameType::exec_failed, 0, sizeof error, header);
  unsigned char frame[kHeaderSize + sizeof error];
  std::memcpy(frame, header, kHeaderSize);
  std::memcpy(frame + kHeaderSize, &error, sizeof error);
  [[maybe_unused]] const ssize_t n = ::write(control_fd, frame, sizeof frame);
  ::_exit(127);
}

}  // namespace

std::vector<std::string> successor_environment(const std::optional<std::vector<std::string>>& env,
                                               int control_fd) {
  std::vector<std::string> out;
  if (env) {
    for (const std::string& entry : *env) {
      if (!describes_inheritance(entry)) out.push_back(entry);
    }
  } else {
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
      std::string entry(*e);
      if (!describes_inheritance(entry)) out.push_back(std::move(entry));
    }
  }
  out.push_back(std::string(kUpgradeFdVariable) + "=" + std::to_string(control_fd));
  return out;
}

pid_t spawn_successor(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                      int control_fd) {
  // Everything the child needs is built before the fork: it may not allocate.
  const std::vector<char*> args = pointers(argv);
  const std::vector<char*> envp = pointers(env);
  const pid_t pid = ::fork();
  if (pid == 0) become_successor(args.data(), envp.data(), control_fd);
  return pid < 0 ? -errno : pid;
}

std::string kill_and_reap(pid_t pid) {
  ::kill(pid, SIGKILL);
  return reap(pid);
}

std::string reap(pid_t pid) {
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid, &status, 0);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return "not reaped here: " + sys_error(errno).message();
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    return sig == SIGKILL ? "killed" : "killed by signal " + std::to_string(sig);
  }
  return "ended";
}

}  // namespace evloop::detail::upgrade
