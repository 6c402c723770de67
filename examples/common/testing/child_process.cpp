// Test helper: child processes and raw sockets with deadlines (see child_process.hpp).
#include "child_process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/prctl.h>
#endif

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>

#include "portable_socket.hpp"

extern char** environ;

namespace example_test {
namespace {

using Clock = std::chrono::steady_clock;

int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
  return left < 0 ? 0 : static_cast<int>(left);
}

// Waits until fd is readable or the deadline passes; false on timeout.
bool wait_readable(int fd, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    int n = ::poll(&p, 1, remaining_ms(deadline));
    if (n > 0) return true;
    if (n == 0) return false;
    if (errno != EINTR) return false;
  }
}

// pipe2(O_CLOEXEC) where it exists. macOS lacks it: there the flag is set right after (the tests
// spawn their children from one thread).
int cloexec_pipe(int fds[2]) {
#ifdef __APPLE__
  if (::pipe(fds) != 0) return -1;
  ::fcntl(fds[0], F_SETFD, FD_CLOEXEC);
  ::fcntl(fds[1], F_SETFD, FD_CLOEXEC);
  return 0;
#else
  return ::pipe2(fds, O_CLOEXEC);
#endif
}

int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// `program` itself when it names a path, else the first executable of that name in PATH.
std::string resolve(const std::string& program) {
  if (program.find('/') != std::string::npos) return program;
  const char* path = std::getenv("PATH");
  std::string_view rest = path != nullptr ? path : "";
  while (!rest.empty()) {
    const std::size_t colon = rest.find(':');
    const std::string dir(rest.substr(0, colon));
    const std::string file = (dir.empty() ? "." : dir) + "/" + program;
    if (::access(file.c_str(), X_OK) == 0) return file;
    if (colon == std::string_view::npos) break;
    rest.remove_prefix(colon + 1);
  }
  return program;
}

std::vector<char*> pointers(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// In the child (async-signal-safe): `fds` to 3, 4, ..., without clobbering one still to move,
// and every other fd from 3 up closed, as systemd passes only the sockets it lists.
void place_fds(const std::vector<int>& fds) {
  constexpr std::size_t kMax = 64;
  int high[kMax];
  const std::size_t n = std::min(fds.size(), kMax);
  for (std::size_t i = 0; i < n; ++i) {
    high[i] = ::fcntl(fds[i], F_DUPFD_CLOEXEC, static_cast<int>(3 + n));
  }
  for (std::size_t i = 0; i < n; ++i) ::dup2(high[i], static_cast<int>(3 + i));  // no CLOEXEC
  for (int fd = static_cast<int>(3 + n); fd < 4096; ++fd) ::close(fd);
}

// In the child (async-signal-safe): its pid in decimal at `out` (room for 20 digits).
void write_pid(char* out) {
  char digits[24];
  int n = 0;
  for (long pid = ::getpid(); pid > 0; pid /= 10) digits[n++] = static_cast<char>('0' + pid % 10);
  for (int i = 0; i < n; ++i) out[i] = digits[n - 1 - i];
  out[n] = '\0';
}

// fork + exec with stdin/stdout/stderr redirected to the given fds (-1 = inherit), and `setup`.
pid_t spawn(const std::vector<std::string>& argv, int in_fd, int out_fd, int err_fd,
            const ChildSetup& setup = {}) {
  std::vector<std::string> arg_strings = argv;
  const std::string program = resolve(argv[0]);
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    if (!setup.listen_pid || std::string_view(*e).substr(0, 11) != "LISTEN_PID=") {
      env_strings.emplace_back(*e);
    }
  }
  env_strings.insert(env_strings.end(), setup.env.begin(), setup.env.end());
  const bool pid_of_child = setup.listen_pid && *setup.listen_pid == "self";
  if (setup.listen_pid) {
    env_strings.push_back("LISTEN_PID=" +
                          (pid_of_child ? std::string(24, ' ') : *setup.listen_pid));
  }
  // Everything the child touches is allocated before the fork.
  std::vector<char*> args = pointers(arg_strings);
  std::vector<char*> envp = pointers(env_strings);
  char* child_pid_at = pid_of_child ? env_strings.back().data() + 11 : nullptr;
  pid_t pid = ::fork();
  if (pid != 0) return pid;
  if (in_fd >= 0) ::dup2(in_fd, 0);
  if (out_fd >= 0) ::dup2(out_fd, 1);
  if (err_fd >= 0) ::dup2(err_fd, 2);
  if (!setup.fds.empty()) place_fds(setup.fds);
  if (child_pid_at != nullptr) write_pid(child_pid_at);
  ::signal(SIGPIPE, SIG_DFL);
  ::execve(program.c_str(), args.data(), envp.data());
  ::_exit(127);
}

// A child that does not exit in time is a bug to diagnose: print its threads' stacks (with gdb,
// when installed) to stderr before it is killed.
void dump_stacks(pid_t pid) {
  std::fprintf(stderr, "child %d did not exit in time; its threads:\n", static_cast<int>(pid));
  // Signal state of each thread (pending, blocked, caught masks).
  std::string task_dir = "/proc/" + std::to_string(pid) + "/task";
  ProgramResult masks =
      run_program({"sh", "-c",
                   "for t in " + task_dir +
                       "/*; do echo \"$t\"; grep -E '^(State|SigPnd|ShdPnd|SigBlk|SigCgt)' "
                       "\"$t/status\"; done"},
                  milliseconds(10'000));
  std::fprintf(stderr, "%s", masks.output.c_str());
  if (!have_program("gdb")) return;
  std::string p = std::to_string(pid);
  ProgramResult r = run_program({"gdb", "-batch", "-nx", "-p", p, "-ex", "thread apply all bt"},
                                milliseconds(30'000));
  std::fprintf(stderr, "%s\n", r.output.c_str());
}

}  // namespace

Child::Child(const std::vector<std::string>& argv, const ChildSetup& setup) {
  int fds[2];
  if (cloexec_pipe(fds) != 0) return;
  pid_ = spawn(argv, -1, fds[1], -1, setup);
  ::close(fds[1]);
  if (pid_ < 0) {
    ::close(fds[0]);
    return;
  }
  out_fd_ = fds[0];
}

Child::~Child() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
  if (out_fd_ >= 0) ::close(out_fd_);
}

std::string Child::wait_for_line(std::string_view prefix, milliseconds timeout) {
  return wait_for(prefix, true, timeout);
}

std::string Child::wait_for_line_containing(std::string_view text, milliseconds timeout) {
  return wait_for(text, false, timeout);
}

std::string Child::wait_for(std::string_view text, bool at_start, milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    std::size_t nl;
    while ((nl = buffered_.find('\n')) != std::string::npos) {
      std::string line = buffered_.substr(0, nl);
      buffered_.erase(0, nl + 1);
      const std::size_t at = line.find(text);
      if (at == 0 || (!at_start && at != std::string::npos)) return line;
    }
    if (out_fd_ < 0 || !wait_readable(out_fd_, deadline)) return {};
    char buf[4096];
    ssize_t n = ::read(out_fd_, buf, sizeof buf);
    if (n <= 0) return {};
    buffered_.append(buf, static_cast<std::size_t>(n));
  }
}

std::string Child::rest_of_output(milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::string out = std::move(buffered_);
  buffered_.clear();
  char buf[4096];
  while (out_fd_ >= 0 && wait_readable(out_fd_, deadline)) {
    const ssize_t n = ::read(out_fd_, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

void Child::signal(int sig) const {
  if (pid_ > 0) ::kill(pid_, sig);
}

int Child::wait_exit(milliseconds timeout) {
  if (pid_ <= 0) return -1;
  auto deadline = Clock::now() + timeout;
  // The pipe reaches EOF when the child exits (it is the only writer).
  char buf[4096];
  while (out_fd_ >= 0 && wait_readable(out_fd_, deadline)) {
    if (::read(out_fd_, buf, sizeof buf) <= 0) break;
  }
  // A child that closed its output may still run (or hang on its way out): its exit is waited
  // for within what is left of the deadline too, and past it the child is killed.
  const int code = wait_for_exit(pid_, milliseconds(remaining_ms(deadline)));
  pid_ = -1;
  return code;
}

int Child::wait_process(milliseconds timeout) {
  const int code = wait_for_exit(pid_, timeout);
  pid_ = -1;
  return code;
}

int wait_for_exit(pid_t pid, milliseconds timeout, bool kill_on_timeout) {
  if (pid <= 0) return -1;
  const auto deadline = Clock::now() + timeout;
  int status = 0;
  bool exited = false;
  // Exited, and reaped by us now (true, `status` set), or gone: another process, its parent,
  // reaped it (true, `status` 0: its code is its parent's to know).
  const auto ended = [pid, &status] {
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return true;
    status = 0;
    return r < 0 && errno == ECHILD && ::kill(pid, 0) < 0 && errno == ESRCH;
  };
#if defined(__linux__) && defined(SYS_pidfd_open)
  if (const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); pidfd >= 0) {
    exited = wait_readable(pidfd, deadline);  // readable once the process has exited
    ::close(pidfd);
    if (exited) {
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      // ECHILD: not our child, and its parent reaps it: its code is not ours to know.
      return decode_status(status);
    }
  } else
#endif
  {
    // No pidfd (or it has already been reaped, by its parent: ESRCH): look every few
    // milliseconds (a test helper; the kernel has no event to wait on).
    while (!(exited = ended()) && Clock::now() < deadline) {
      std::this_thread::sleep_for(milliseconds(5));
    }
    if (exited) return decode_status(status);
  }
  if (!kill_on_timeout) return -1;
  dump_stacks(pid);
  ::kill(pid, SIGKILL);
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return -1;
}

bool become_subreaper() {
#if defined(__linux__)
  return ::prctl(PR_SET_CHILD_SUBREAPER, 1) == 0;
#else
  return false;
#endif
}

std::uint16_t start_server(std::unique_ptr<Child>& child, const std::string& server_bin,
                           const std::vector<std::string>& extra, const std::string& listen,
                           const ChildSetup& setup) {
  std::vector<std::string> argv{server_bin, "--listen", listen};
  argv.insert(argv.end(), extra.begin(), extra.end());
  child = std::make_unique<Child>(argv, setup);
  if (!child->running()) return 0;
  std::string line = child->wait_for_line("listening on ", milliseconds(20'000));
  std::size_t colon = line.rfind(':');
  if (line.empty() || colon == std::string::npos) return 0;
  return static_cast<std::uint16_t>(std::atoi(line.c_str() + colon + 1));
}

Upgraded upgrade_example(Child& child, milliseconds timeout) {
  return upgrade_example(child, child.pid(), timeout);
}

Upgraded upgrade_example(Child& child, pid_t pid, milliseconds timeout) {
  Upgraded u;
  if (pid > 0) ::kill(pid, SIGUSR2);
  u.line = child.wait_for_line("upgrade", timeout);
  if (std::sscanf(u.line.c_str(), "upgraded: pid %d, %d connections moved, %d left to drain",
                  &u.pid, &u.moved, &u.draining) != 3) {
    u.pid = 0;
  }
  return u;
}

ProgramResult run_program(const std::vector<std::string>& argv, milliseconds timeout,
                          std::string_view input) {
  ProgramResult result;
  int out[2];
  int in[2];
  if (cloexec_pipe(out) != 0) return result;
  if (cloexec_pipe(in) != 0) {
    ::close(out[0]);
    ::close(out[1]);
    return result;
  }
  const auto deadline = Clock::now() + timeout;
  pid_t pid = spawn(argv, in[0], out[1], out[1]);
  ::close(out[1]);
  ::close(in[0]);
  // The input is written as the child takes it, while its output is read: a child that echoes
  // its input (cat) would otherwise fill its stdout pipe, stop reading, and block our write. The
  // write end is non-blocking, and SIGPIPE (a child that exits without reading it all) is blocked
  // in this thread and taken back below: a short input is the child's business, not a signal.
  int stdin_fd = in[1];
  if (input.empty()) {
    ::close(stdin_fd);
    stdin_fd = -1;
  } else {
    ::fcntl(stdin_fd, F_SETFL, ::fcntl(stdin_fd, F_GETFL) | O_NONBLOCK);
  }
  sigset_t pipe_signal, old_mask;
  sigemptyset(&pipe_signal);
  sigaddset(&pipe_signal, SIGPIPE);
  ::pthread_sigmask(SIG_BLOCK, &pipe_signal, &old_mask);
  sigset_t pending;
  const bool pipe_was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;
  bool broken_pipe = false;
  char buf[65536];
  bool eof = false;
  while (!eof) {
    pollfd p[2] = {{out[0], POLLIN, 0}, {stdin_fd, POLLOUT, 0}};
    const int n = ::poll(p, stdin_fd >= 0 ? 2 : 1, remaining_ms(deadline));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the deadline (or a poll error)
    if (stdin_fd >= 0 && (p[1].revents & (POLLOUT | POLLERR | POLLHUP)) != 0) {
      const ssize_t w = ::write(stdin_fd, input.data(), input.size());
      if (w > 0) input.remove_prefix(static_cast<std::size_t>(w));
      if (w < 0 && errno == EPIPE) broken_pipe = true;
      if (input.empty() || (w < 0 && errno != EINTR && errno != EAGAIN)) {
        ::close(stdin_fd);  // all written, or the child closed its stdin
        stdin_fd = -1;
      }
    }
    if ((p[0].revents & (POLLIN | POLLERR | POLLHUP)) != 0) {
      const ssize_t r = ::read(out[0], buf, sizeof buf);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        eof = true;
      } else {
        result.output.append(buf, static_cast<std::size_t>(r));
      }
    }
  }
  if (stdin_fd >= 0) ::close(stdin_fd);
  if (broken_pipe && !pipe_was_pending) {
    const timespec now{0, 0};
    while (::sigtimedwait(&pipe_signal, nullptr, &now) < 0 && errno == EINTR) {
    }
  }
  ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  ::close(out[0]);
  if (!eof) {  // the deadline: killed, and reaped (a killed process exits)
    ::kill(pid, SIGKILL);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return result;
  }
  // The output ended, but the child may go on running (or hang on its way out): its exit is
  // waited for within what is left of the deadline, and past it the child is killed.
  result.exit_code = wait_for_exit(pid, milliseconds(remaining_ms(deadline)));
  return result;
}

bool have_program(const std::string& name) {
  const std::string path = resolve(name);  // `name` itself when PATH has no such program
  return path != name && ::access(path.c_str(), X_OK) == 0;
}

std::string haproxy_server_checked(const std::string& socket, const std::string& proxy,
                                   const std::string& server, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  const std::string prefix = proxy + "," + server + ",";
  std::string line;
  for (;;) {
    if (const int fd = connect_unix(socket); fd >= 0) {
      bool closed = false;
      const std::string stat =
          send_all(fd, "show stat\n", timeout)
              ? read_until_close(fd, milliseconds(remaining_ms(deadline)), closed)
              : "";
      ::close(fd);
      const std::size_t at = stat.find("\n" + prefix);
      if (at != std::string::npos) line = stat.substr(at + 1, stat.find('\n', at + 1) - at - 1);
    }
    const bool checked =
        line.find(",UP,") != std::string::npos &&
        (line.find(",L4OK,") != std::string::npos || line.find(",L6OK,") != std::string::npos ||
         line.find(",L7OK,") != std::string::npos);
    if (checked || Clock::now() >= deadline) return line;
    std::this_thread::sleep_for(milliseconds(20));  // the next check is due within `inter`
  }
}

WrkRun run_wrk(const std::string& url, int connections) {
  const ProgramResult r = run_program(
      {"wrk", "-t1", "-c" + std::to_string(connections), "-d1s", url}, milliseconds(60'000));
  WrkRun w;
  w.exit_code = r.exit_code;
  w.output = r.output;
  w.non_2xx = r.output.find("Non-2xx") != std::string::npos;
  w.socket_errors = r.output.find("Socket errors") != std::string::npos;
  // "  12345 requests in 1.00s, ..."
  if (const std::size_t at = r.output.find(" requests in "); at != std::string::npos) {
    const std::size_t line = r.output.rfind('\n', at);
    w.requests = std::atol(r.output.c_str() + (line == std::string::npos ? 0 : line + 1));
  }
  return w;
}

std::string program_path(const std::string& name) {
  if (have_program(name)) return name;
  const std::string sbin = "/usr/sbin/" + name;
  return ::access(sbin.c_str(), X_OK) == 0 ? sbin : std::string();
}

int connect_loopback(std::uint16_t port) {
  int fd = evloop::test::open_stream_socket(AF_INET);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

int connect_unix(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return -1;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int fd = evloop::test::open_stream_socket(AF_UNIX);
  if (fd < 0) return -1;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

int listen_loopback(std::uint16_t port, bool reuseport) {
  int fd = evloop::test::open_stream_socket(AF_INET);
  if (fd < 0) return -1;
  const int on = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  if (reuseport) ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 128) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

std::uint16_t bound_port(int fd) {
  sockaddr_in addr{};
  socklen_t len = sizeof addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return 0;
  return ntohs(addr.sin_port);
}

bool send_all(int fd, std::string_view bytes, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!bytes.empty()) {
    // MSG_DONTWAIT: a blocking socket whose buffer is full must not block the send itself; poll()
    // waits for room, until the deadline.
    const ssize_t n =
        ::send(fd, bytes.data(), bytes.size(), evloop::test::kSendFlags | MSG_DONTWAIT);
    if (n > 0) {
      bytes.remove_prefix(static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) return false;
    pollfd p{fd, POLLOUT, 0};
    const int ready = ::poll(&p, 1, remaining_ms(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return false;  // the deadline passed with bytes left to send
  }
  return true;
}

std::string read_until_close(int fd, milliseconds timeout, bool& closed) {
  auto deadline = Clock::now() + timeout;
  std::string got;
  closed = false;
  char buf[65536];
  while (wait_readable(fd, deadline)) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {  // EOF, or ECONNRESET: either way the server closed.
      closed = true;
      break;
    }
    got.append(buf, static_cast<std::size_t>(n));
  }
  return got;
}

std::string read_exactly(int fd, std::size_t size, milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  std::string got(size, '\0');
  std::size_t have = 0;
  while (have < size && wait_readable(fd, deadline)) {
    ssize_t n = ::recv(fd, got.data() + have, size - have, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    have += static_cast<std::size_t>(n);
  }
  got.resize(have);
  return got;
}

std::size_t read_repeated(int fd, std::string_view unit, std::size_t count, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  const std::size_t total = count * unit.size();
  std::size_t matched = 0;
  std::string buf(256 * 1024, '\0');
  while (matched < total && !unit.empty() && wait_readable(fd, deadline)) {
    ssize_t n = ::recv(fd, buf.data(), std::min(buf.size(), total - matched), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    // Compare a run of `unit` at a time (memcmp), from where the last read stopped in it.
    for (std::size_t i = 0; i < static_cast<std::size_t>(n);) {
      const std::size_t at = matched % unit.size();
      const std::size_t run = std::min(unit.size() - at, static_cast<std::size_t>(n) - i);
      if (std::memcmp(buf.data() + i, unit.data() + at, run) != 0) {
        while (buf[i] == unit[matched % unit.size()]) ++i, ++matched;  // the first wrong byte
        return matched;
      }
      i += run;
      matched += run;
    }
  }
  return matched;
}

std::string read_until_count(int fd, std::string_view needle, int count, milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  std::string got;
  char buf[65536];
  while (count_of(got, needle) < count && wait_readable(fd, deadline)) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got.append(buf, static_cast<std::size_t>(n));
  }
  return got;
}

bool stays_silent(int fd, milliseconds wait) {
  // wait_readable() is false only when the deadline passed (or poll failed, which it does not
  // on a valid fd).
  return !wait_readable(fd, Clock::now() + wait);
}

double ms_until_closed_silently(int fd, Clock::time_point since, milliseconds timeout) {
  bool closed = false;
  const std::string got = read_until_close(fd, timeout, closed);
  const Clock::time_point now = Clock::now();
  ::close(fd);
  return closed && got.empty() ? std::chrono::duration<double, std::milli>(now - since).count()
                               : -1.0;
}

double ms_until_reset_unread(int fd, Clock::time_point since, milliseconds timeout) {
  for (;;) {
    tcp_info info{};
    socklen_t len = sizeof info;
    if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) return -1.0;
    const Clock::time_point now = Clock::now();
    if (info.tcpi_state == TCP_CLOSE) {
      return std::chrono::duration<double, std::milli>(now - since).count();
    }
    if (now - since >= timeout) return -1.0;
    std::this_thread::sleep_for(milliseconds(10));
  }
}

BusyResult keep_busy(int fd, milliseconds duration,
                     const std::function<bool(int fd, int i)>& exchange) {
  std::mt19937 rng(16);
  std::uniform_int_distribution<int> pause_ms(50, 500);
  BusyResult result;
  for (const Clock::time_point until = Clock::now() + duration; Clock::now() < until;
       ++result.exchanges) {
    if (!stays_silent(fd, milliseconds(pause_ms(rng)))) {
      result.failure = "the server sent or closed unasked after " +
                       std::to_string(result.exchanges) + " exchanges";
      break;
    }
    if (!exchange(fd, result.exchanges)) {
      result.failure = "exchange " + std::to_string(result.exchanges) + " failed";
      break;
    }
  }
  return result;
}

int count_of(std::string_view s, std::string_view needle) {
  int n = 0;
  for (std::size_t at = s.find(needle); at != std::string_view::npos;
       at = s.find(needle, at + needle.size())) {
    ++n;
  }
  return n;
}

}  // namespace example_test
