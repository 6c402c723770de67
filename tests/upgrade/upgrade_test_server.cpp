// The server the live-upgrade tests drive (tests/upgrade/upgrade_test.cpp): a few line commands,
// each chosen by a connection's first line, so that a test can see which process serves it.
//
//   PID        -> "<pid>\n", close             (a short connection)
//   LOOP       -> "<loop index>\n", close
//   FDS        -> "<open fds but TCP connections>\n", close: the server's own fds (listeners,
//                 pollers, control sockets, pipes) back to baseline; connections come and go
//                 with clients (the test's own, and with tests run in parallel, a stray one
//                 that reaches a port freed by another test and bound again by this server)
//   UDPPORT    -> "<port of the first --udp address>\n", close
//   INHERIT    -> "env=<set|unset> cloexec=<1|0 FD...>\n", close: are LISTEN_* and
//                 EVLOOP_UPGRADE_FD still set, and is every fd from 3 up close-on-exec
//   ECHO       -> every byte after the line comes back (a long-lived connection); moves in an
//                 upgrade, its state "echo"
//   HOLD       -> each later line gets "<pid>\n" ("WAITS": "<its loop's waits>\n"); never moves:
//                 it drains in the old process
//   STALL      -> like HOLD, but its `handover` handler prints "handover stalled pid=<pid>" and
//                 blocks its loop until SIGUSR1 (60 s at most): a predecessor stuck mid-handover
//   UPGRADE [ARG...] -> runs Server::upgrade() with this program's own command line plus ARGs
//                 (--crash-before-start, --never-ready, --stop-after-ready,
//                 --stop-server-after-ready, --start-on-sigusr1, --no-task-to-spare,
//                 --ready-ms N, --drain-ms N;
//                 --fail-listener-rearm is for this process: see below),
//                 replies
//                 "OK <successor pid> <moved> <draining>\n" or "FAIL <message>\n", and closes
//
// Flags: --listen ADDR (repeatable), --udp ADDR (repeatable: a UDP echo), --loops N, --reuseport,
// --state-bytes N (each moved connection's state padded to that: frames larger than the socket
// buffers), and the ARGs above.
// Prints
// "listening on URL" per address, then "serving pid=<pid> successor=<0|1>", and "stopped pid=<pid>"
// once its loops have stopped. SIGTERM/SIGINT stop it; SIGUSR1 releases STALL handlers; after a
// successful upgrade it exits (0) once its connections drained.
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#ifdef __linux__
#include <sys/epoll.h>
#endif
#include <unistd.h>

#include <algorithm>
#include <any>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <evloop/evloop.hpp>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace {

enum class Mode { unknown, echo, hold, stall, upgrade };

// --no-task-to-spare: from now on this process may make `more` threads and no more. It becomes a
// user of its own (3,000,000 + its pid), whose tasks RLIMIT_NPROC limits to those it has plus
// `more` (root is not limited). False, with errno, where that cannot be done (not root).
bool limit_tasks_to(unsigned more) {
  DIR* tasks = ::opendir("/proc/self/task");
  if (tasks == nullptr) return false;
  rlim_t now = 0;
  while (const dirent* entry = ::readdir(tasks)) now += entry->d_name[0] != '.';
  ::closedir(tasks);
  const auto uid = static_cast<uid_t>(3'000'000 + ::getpid());
  const rlimit limit{now + more, now + more};
  return ::setgid(uid) == 0 && ::setuid(uid) == 0 && ::setrlimit(RLIMIT_NPROC, &limit) == 0;
}

struct Request {
  std::vector<std::string> args;
  evloop::ConnRef reply_to;
};

// Upgrade requests from the loops, and the end of the server, for the main thread.
struct Events {
  std::mutex mutex;
  std::condition_variable cv;
  std::deque<Request> requests;
  bool stopped = false;
};

struct Config {
  evloop::Options options;
  std::vector<std::string> udp;   // --udp addresses
  std::vector<std::string> argv;  // this program's own command line, argv[0] absolute
  bool crash_before_start = false;
  bool never_ready = false;
  bool stop_after_ready = false;
  bool stop_when_serving = false;
  bool stop_server_after_ready = false;
  bool start_on_sigusr1 = false;
  bool no_task_to_spare = false;
  std::size_t state_bytes = 0;  // padding of each handed-over state: frames larger than buffers
  std::chrono::milliseconds ready{5000};
  std::chrono::milliseconds drain{10'000};
};

Config parse(int argc, char** argv) {
  Config c;
  char resolved[4096];
  c.argv.push_back(::realpath(argv[0], resolved) != nullptr ? resolved : argv[0]);
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (a == "--crash-before-start") {
      c.crash_before_start = true;
      continue;  // not passed on: a successor starts normally unless asked again
    }
    if (a == "--never-ready") {
      c.never_ready = true;
      continue;
    }
    if (a == "--stop-after-ready") {
      c.stop_after_ready = true;
      continue;
    }
    if (a == "--stop-when-serving") {  // stop() from the `serving` callback, as start() ends
      c.stop_when_serving = true;
      continue;
    }
    if (a == "--stop-server-after-ready") {  // stop() once ready, the process still running
      c.stop_server_after_ready = true;
      continue;
    }
    if (a == "--no-task-to-spare") {  // a successor's start() is one thread short (as root)
      c.no_task_to_spare = true;
      continue;
    }
    if (a == "--start-on-sigusr1") {  // prints "waiting pid=N", starts once SIGUSR1 arrives
      c.start_on_sigusr1 = true;
      continue;
    }
    c.argv.push_back(a);
    if (a == "--listen") {
      c.options.listen.push_back(value());
      c.argv.push_back(c.options.listen.back());
    } else if (a == "--udp") {
      c.udp.push_back(value());
      c.argv.push_back(c.udp.back());
    } else if (a == "--loops") {
      c.options.loops = static_cast<unsigned>(std::stoul(value()));
      c.argv.push_back(std::to_string(c.options.loops));
    } else if (a == "--reuseport") {
      c.options.reuseport = true;
    } else if (a == "--ready-ms") {
      c.ready = std::chrono::milliseconds(std::stol(value()));
      c.argv.push_back(std::to_string(c.ready.count()));
    } else if (a == "--state-bytes") {
      c.state_bytes = std::stoul(value());
      c.argv.push_back(std::to_string(c.state_bytes));
    } else if (a == "--drain-ms") {
      c.drain = std::chrono::milliseconds(std::stol(value()));
      c.argv.push_back(std::to_string(c.drain.count()));
    } else {
      std::fprintf(stderr, "upgrade_test_server: unknown flag %s\n", a.c_str());
      std::exit(2);
    }
  }
  return c;
}

// Whether `fd`, listed in /proc/self/fd a moment ago, is one of the server's own: not a TCP
// connection, and still open. A connection (a stray one from a test run in parallel, say) can
// close on another loop between the listing and this check: EBADF then, not counted.
bool own_fd(int fd) {
  int domain = 0, type = 0, listening = 0;
  socklen_t len = sizeof domain;
  if (::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0) return errno == ENOTSOCK;
  len = sizeof type;
  ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len);
  len = sizeof listening;
  ::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len);
  return !((domain == AF_INET || domain == AF_INET6) && type == SOCK_STREAM && listening == 0);
}

// UBSan's vptr check opens a pipe (without close-on-exec) for a moment the first time it meets a
// type: on another loop thread, that pipe can be open while a scan of fds runs (FDS, INHERIT).
// Its pipes are passed over in UBSan builds; evloop itself opens no pipe on Linux (eventfd wakes
// its loops).
bool sanitizer_pipe(int fd) {
#if defined(__has_feature)
#if __has_feature(undefined_behavior_sanitizer)
  struct stat st {};
  return ::fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode);
#endif
#endif
  (void)fd;
  return false;
}

int count_fds() {
  int n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (const dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      const int fd = std::atoi(e->d_name);
      n += fd != ::dirfd(d) && own_fd(fd) && !sanitizer_pipe(fd);
    }
    ::closedir(d);
  }
  return n;
}

std::string inheritance_report() {
  const bool env = std::getenv("LISTEN_FDS") || std::getenv("LISTEN_PID") ||
                   std::getenv("LISTEN_FDNAMES") || std::getenv(evloop::kUpgradeFdVariable);
  std::string inheritable;  // fds from 3 up without close-on-exec
  for (int fd = 3; fd < 1024; ++fd) {
    const int flags = ::fcntl(fd, F_GETFD);
    if (flags >= 0 && !(flags & FD_CLOEXEC) && !sanitizer_pipe(fd)) {
      inheritable += " " + std::to_string(fd);
    }
  }
  return std::string("env=") + (env ? "set" : "unset") +
         " cloexec=" + (inheritable.empty() ? "1" : "0" + inheritable) + "\n";
}

std::vector<std::string> split(const std::string& line) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while (at < line.size()) {
    const std::size_t space = line.find(' ', at);
    const std::size_t end = space == std::string::npos ? line.size() : space;
    if (end > at) out.push_back(line.substr(at, end - at));
    at = end + 1;
  }
  return out;
}

// Set while an upgrade asked for a successor stopped once ready (--stop-after-ready) runs. Such a
// successor sends `ready` and then stops itself, but its receiver thread starts as it sends, and
// could adopt a connection in between: the handover waits for the stop instead (handover below).
std::atomic<bool> successor_will_stop{false};

// Set while an upgrade asked for a successor that stops its server once ready
// (--stop-server-after-ready): that successor stops its loops, then itself (SIGSTOP); the first
// handover handler waits for that and continues it (SIGCONT), so every connection reaches it
// after its stop() (the others wait for the first).
std::atomic<bool> successor_stops_server{false};
std::once_flag successor_continued;

// Set while an upgrade asked with --fail-listener-rearm runs (an UPGRADE argument for this
// process, not passed to the successor): the first EPOLL_CTL_ADD of a listening Unix socket then
// fails with ENOMEM, as when the kernel is short of memory or fs.epoll.max_user_watches is
// reached, and "injected a failed listener re-arm" is printed. No limit a test can set makes
// one registration fail: this stands in for the kernel. Only the epoll backend registers that
// way (io_uring's poll is queued, not refused at once).
std::atomic<bool> fail_unix_listener_add{false};

bool is_listening_unix_socket(int fd) {
  int listening = 0;
  socklen_t len = sizeof listening;
  sockaddr_storage addr{};
  socklen_t addr_len = sizeof addr;
  return ::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 && listening != 0 &&
         ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &addr_len) == 0 &&
         addr.ss_family == AF_UNIX;
}

}  // namespace

#ifdef __linux__
extern "C" int epoll_ctl(int epfd, int op, int fd, epoll_event* event) {
  using Real = int (*)(int, int, int, epoll_event*);
  static const Real real = reinterpret_cast<Real>(::dlsym(RTLD_NEXT, "epoll_ctl"));
  if (op == EPOLL_CTL_ADD && fail_unix_listener_add.load() && is_listening_unix_socket(fd) &&
      fail_unix_listener_add.exchange(false)) {
    std::printf("injected a failed listener re-arm pid=%d\n", static_cast<int>(::getpid()));
    std::fflush(stdout);
    errno = ENOMEM;
    return -1;
  }
  return real(epfd, op, fd, event);
}
#endif

namespace {

// STALL handlers block until SIGUSR1 releases them.
std::mutex stall_mutex;
std::condition_variable stall_cv;
bool stall_released = false;

void release_stalls() {
  std::lock_guard lock(stall_mutex);
  stall_released = true;
  stall_cv.notify_all();
}

void stall() {
  std::printf("handover stalled pid=%d\n", static_cast<int>(::getpid()));
  std::fflush(stdout);
  std::unique_lock lock(stall_mutex);
  stall_cv.wait_for(lock, std::chrono::seconds(60), [] { return stall_released; });
}

// The port of the first --udp address, set as the server starts serving.
std::atomic<std::uint16_t> udp_port{0};

// Waits (up to 10 s) until a child of this process, the successor, is stopped; a stopped child
// stays stopped and waitable (WNOWAIT), so every later call returns at once. Its pid, or 0.
pid_t await_a_stopped_child() {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    siginfo_t info{};
    if (::waitid(P_ALL, 0, &info, WSTOPPED | WNOHANG | WNOWAIT) == 0 && info.si_pid != 0 &&
        info.si_code == CLD_STOPPED) {
      return info.si_pid;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::fprintf(stderr, "upgrade_test_server: the successor did not stop within 10 s\n");
  return 0;
}

Mode& mode_of(evloop::Conn& conn) { return *std::any_cast<Mode>(&conn.context()); }

// The first line of a connection: what it is for.
void on_first_line(evloop::Conn& conn, const std::string& line, Events& events) {
  const std::vector<std::string> words = split(line);
  const std::string command = words.empty() ? "" : words[0];
  if (command == "PID") {
    conn.write(std::to_string(::getpid()) + "\n");
    conn.close();
  } else if (command == "LOOP") {
    conn.write(std::to_string(conn.loop().index()) + "\n");
    conn.close();
  } else if (command == "FDS") {
    conn.write(std::to_string(count_fds()) + "\n");
    conn.close();
  } else if (command == "UDPPORT") {
    conn.write(std::to_string(udp_port.load()) + "\n");
    conn.close();
  } else if (command == "INHERIT") {
    conn.write(inheritance_report());
    conn.close();
  } else if (command == "ECHO") {
    mode_of(conn) = Mode::echo;
  } else if (command == "HOLD") {
    mode_of(conn) = Mode::hold;
  } else if (command == "STALL") {
    mode_of(conn) = Mode::stall;
  } else if (command == "UPGRADE") {
    mode_of(conn) = Mode::upgrade;
    std::lock_guard lock(events.mutex);
    events.requests.push_back({{words.begin() + 1, words.end()}, conn.ref()});
    events.cv.notify_one();
  } else {
    conn.write("unknown command\n");
    conn.close();
  }
}

std::size_t on_data(evloop::Conn& conn, std::string_view bytes, Events& events) {
  std::size_t used = 0;
  while (used < bytes.size() && !conn.closing()) {
    Mode& mode = mode_of(conn);
    if (mode == Mode::echo) {
      conn.write(bytes.substr(used));
      return bytes.size();
    }
    const std::size_t nl = bytes.find('\n', used);
    if (nl == std::string_view::npos) return used;  // a partial line waits for the rest
    const std::string line(bytes.substr(used, nl - used));
    used = nl + 1;
    if (mode == Mode::unknown) {
      on_first_line(conn, line, events);
    } else if (mode == Mode::hold && line == "WAITS") {
      conn.write(std::to_string(conn.loop().stats().waits) + "\n");
    } else if (mode == Mode::hold || mode == Mode::stall) {
      conn.write(std::to_string(::getpid()) + "\n");
    }
  }
  return bytes.size();
}

void run_upgrade(evloop::Server& server, const Config& config, const Request& request) {
  evloop::UpgradeOptions o;
  o.argv = config.argv;
  for (const std::string& arg : request.args) {
    if (arg != "--fail-listener-rearm") o.argv.push_back(arg);  // for this process only
  }
  o.ready_timeout = config.ready;
  o.drain_timeout = config.drain;
  for (std::size_t i = 0; i + 1 < request.args.size(); ++i) {
    if (request.args[i] == "--ready-ms") {
      o.ready_timeout = std::chrono::milliseconds(std::stol(request.args[i + 1]));
    }
  }
  successor_will_stop.store(std::ranges::find(request.args, "--stop-after-ready") !=
                            request.args.end());
  successor_stops_server.store(std::ranges::find(request.args, "--stop-server-after-ready") !=
                               request.args.end());
  fail_unix_listener_add.store(std::ranges::find(request.args, "--fail-listener-rearm") !=
                               request.args.end());
  evloop::UpgradeReport report;
  const evloop::Status s = server.upgrade(o, &report);
  fail_unix_listener_add.store(false);
  successor_will_stop.store(false);
  successor_stops_server.store(false);
  std::string reply = s ? "OK " + std::to_string(report.successor_pid) + " " +
                              std::to_string(report.moved) + " " + std::to_string(report.draining) +
                              "\n"
                        : "FAIL " + s.message() + "\n";
  request.reply_to.post([reply](evloop::Conn& conn) {
    conn.write(reply);
    conn.close();
  });
}

}  // namespace

int main(int argc, char** argv) {
  Config config = parse(argc, argv);
  Events events;

  evloop::Callbacks cb;
  evloop::Server* serving_server = nullptr;  // set before start()
  cb.serving = [&config, &serving_server](const evloop::ServingInfo& info) {
    if (config.stop_when_serving) serving_server->stop();
    // Called once the loops exist, before their threads: one thread short of what start() makes.
    if (config.no_task_to_spare && !limit_tasks_to(config.options.loops)) {
      std::printf("cannot limit the tasks (errno %d)\n", errno);
    }
    // Before the lines that say it serves. The UDP addresses come last (listen_udp), after the
    // TCP ones (a systemd:// address may stand for several).
    if (!config.udp.empty() && info.addresses.size() >= config.udp.size()) {
      udp_port.store(info.addresses[info.addresses.size() - config.udp.size()].port());
    }
    for (const auto& url : info.urls) std::printf("listening on %s\n", url.c_str());
    std::printf("serving pid=%d successor=%d\n", static_cast<int>(::getpid()), info.successor);
    std::fflush(stdout);
  };
  cb.opened = [](evloop::Conn& conn) { conn.context() = Mode::unknown; };
  cb.data = [&events](evloop::Conn& conn, std::string_view bytes) {
    return on_data(conn, bytes, events);
  };
  cb.handover = [&config](evloop::Conn& conn) -> std::optional<std::string> {
    const Mode mode = mode_of(conn);
    if (successor_will_stop.load()) await_a_stopped_child();
    if (successor_stops_server.load()) {
      std::call_once(successor_continued, [] {
        if (const pid_t pid = await_a_stopped_child()) ::kill(pid, SIGCONT);
      });
    }
    if (mode == Mode::stall) stall();
    if (mode == Mode::echo) return "echo" + std::string(config.state_bytes, '.');
    if (mode == Mode::unknown) return "new";  // its partial first line moves with it
    return std::nullopt;                      // HOLD and UPGRADE stay here
  };
  cb.adopted = [](evloop::Conn& conn, std::string_view state) {
    conn.context() = state.starts_with("echo") ? Mode::echo : Mode::unknown;
  };
  config.options.shutdown_grace = std::chrono::milliseconds(500);

  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  sigset_t handled_signals = stop_signals;
  sigaddset(&handled_signals, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &handled_signals, nullptr);
  if (config.crash_before_start) std::abort();
  if (config.never_ready) {
    for (;;) ::pause();
  }
  if (config.start_on_sigusr1) {
    std::printf("waiting pid=%d\n", static_cast<int>(::getpid()));
    std::fflush(stdout);
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    int sig = 0;
    sigwait(&usr1, &sig);
  }
  // --stop-server-after-ready: its loops say when they have stopped.
  std::mutex stopped_mutex;
  std::condition_variable stopped_cv;
  unsigned loops_stopped = 0;
  if (config.stop_server_after_ready) {
    cb.loop_stopping = [&](evloop::Loop&) {
      std::lock_guard lock(stopped_mutex);
      ++loops_stopped;
      stopped_cv.notify_all();
    };
  }
  evloop::Server server(config.options, cb);
  serving_server = &server;
  evloop::DatagramHandlers udp_echo;
  udp_echo.datagram = [](evloop::Udp& udp, const evloop::SocketAddress& peer,
                         std::string_view bytes) { udp.send_to(peer, bytes); };
  for (const std::string& address : config.udp) {
    if (const evloop::Status s = server.listen_udp(address, udp_echo); !s) {
      std::fprintf(stderr, "upgrade_test_server: %s\n", s.message().c_str());
      return 1;
    }
  }
  if (const evloop::Status s = server.start(); !s) {
    std::fprintf(stderr, "upgrade_test_server: %s\n", s.message().c_str());
    return 1;
  }
  // Ready (the predecessor was told), then stopped: the handover finds nobody reading. The pause
  // first is a preemption made certain: the predecessor's handover must wait for the stop
  // (await_a_stopped_child), never race the receiver thread that began with ready.
  if (config.stop_after_ready) {
    ::usleep(50'000);
    ::raise(SIGSTOP);
  }
  // Ready, then its server stopped while the process runs on: once its loops have stopped it
  // stops itself (the predecessor's handover waits for that, then continues it), and it stays
  // until SIGTERM/SIGINT, so that only the library decides what becomes of the connections the
  // predecessor then hands over.
  if (config.stop_server_after_ready) {
    server.stop();
    {
      std::unique_lock lock(stopped_mutex);
      stopped_cv.wait_for(lock, std::chrono::seconds(30),
                          [&] { return loops_stopped == server.loop_count(); });
    }
    ::raise(SIGSTOP);
    int sig = 0;
    sigwait(&stop_signals, &sig);
  }
  evloop::Status result;
  std::thread waiter([&] {
    result = server.wait();
    std::printf("stopped pid=%d\n", static_cast<int>(::getpid()));
    std::fflush(stdout);
    std::lock_guard lock(events.mutex);
    events.stopped = true;
    events.cv.notify_one();
  });
  std::thread signals([&] {
    for (;;) {
      int sig = 0;
      sigwait(&handled_signals, &sig);
      if (sig != SIGUSR1) break;
      release_stalls();
    }
    server.stop();
  });
  std::vector<std::thread> upgrades;  // one thread per request: two may ask at once
  for (;;) {
    std::unique_lock lock(events.mutex);
    events.cv.wait(lock, [&] { return events.stopped || !events.requests.empty(); });
    if (events.requests.empty()) break;
    Request request = std::move(events.requests.front());
    events.requests.pop_front();
    lock.unlock();
    upgrades.emplace_back(
        [&server, &config, request = std::move(request)] { run_upgrade(server, config, request); });
  }
  for (std::thread& t : upgrades) t.join();
  waiter.join();
  pthread_kill(signals.native_handle(), SIGTERM);  // ends its sigwait
  signals.join();
  return result ? 0 : 1;
}
