#include "upgrade_test_support.hpp"

#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#ifdef __linux__
#include <linux/io_uring.h>
#endif

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <evloop/upgrade.hpp>
#include <fstream>
#include <thread>

namespace example_test {

pid_t pid_in(const std::string& message) {
  const std::size_t at = message.find("(pid ");
  return at == std::string::npos ? 0 : static_cast<pid_t>(std::atol(message.c_str() + at + 5));
}

StuckAccept::~StuckAccept() {
  if (sqes_ != nullptr) ::munmap(sqes_, sqes_size_);
  if (sq_ != nullptr) ::munmap(sq_, sq_size_);
  if (ring_ >= 0) ::close(ring_);  // the kernel cancels the accept
}

#if defined(__linux__) && defined(SYS_pidfd_getfd)
bool StuckAccept::arm(int listener) {
  io_uring_params p{};
  p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  ring_ = static_cast<int>(::syscall(__NR_io_uring_setup, 4, &p));
  if (ring_ < 0) return false;
  sq_size_ = p.sq_off.array + p.sq_entries * sizeof(unsigned);
  sq_ = ::mmap(nullptr, sq_size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring_,
               IORING_OFF_SQ_RING);
  sqes_size_ = p.sq_entries * sizeof(io_uring_sqe);
  sqes_ = ::mmap(nullptr, sqes_size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring_,
                 IORING_OFF_SQES);
  if (sq_ == MAP_FAILED || sqes_ == MAP_FAILED) {
    if (sq_ == MAP_FAILED) sq_ = nullptr;
    if (sqes_ == MAP_FAILED) sqes_ = nullptr;
    return false;
  }
  auto* sqe = static_cast<io_uring_sqe*>(sqes_);
  *sqe = io_uring_sqe{};
  sqe->opcode = IORING_OP_ACCEPT;
  sqe->ioprio = IORING_ACCEPT_MULTISHOT;  // stays in line: it takes every wake-up that reaches it
  sqe->fd = listener;
  sqe->accept_flags = SOCK_NONBLOCK | SOCK_CLOEXEC;
  char* ring = static_cast<char*>(sq_);
  unsigned* array = reinterpret_cast<unsigned*>(ring + p.sq_off.array);
  unsigned* tail = reinterpret_cast<unsigned*>(ring + p.sq_off.tail);
  array[*tail & (p.sq_entries - 1)] = 0;
  __atomic_store_n(tail, *tail + 1, __ATOMIC_RELEASE);
  // Submitted, not waited for: with an empty backlog the accept goes to wait on the socket.
  return ::syscall(__NR_io_uring_enter, ring_, 1, 0, 0, nullptr, 0) == 1;
}

int listener_of(pid_t pid, std::uint16_t port) {
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) return -1;
  int found = -1;
  const std::string dir_path = "/proc/" + std::to_string(pid) + "/fd";
  DIR* dir = ::opendir(dir_path.c_str());
  while (dir != nullptr && found < 0) {
    const dirent* e = ::readdir(dir);
    if (e == nullptr) break;
    const int target = std::atoi(e->d_name);
    if (e->d_name[0] == '.' || target < 0) continue;
    const int fd = static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd, target, 0));
    if (fd < 0) continue;
    int listening = 0;
    socklen_t len = sizeof listening;
    sockaddr_storage addr{};
    socklen_t addr_len = sizeof addr;
    if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 && listening != 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &addr_len) == 0 &&
        addr.ss_family == AF_INET &&
        ntohs(reinterpret_cast<const sockaddr_in*>(&addr)->sin_port) == port) {
      found = fd;
    } else {
      ::close(fd);
    }
  }
  if (dir != nullptr) ::closedir(dir);
  ::close(pidfd);
  return found;
}

int control_socket_of(pid_t pid) {
  // The environment it started with: its unsetenv() leaves /proc/PID/environ as it was.
  std::ifstream in("/proc/" + std::to_string(pid) + "/environ", std::ios::binary);
  const std::string prefix = std::string(evloop::kUpgradeFdVariable) + "=";
  int target = -1;
  for (std::string entry; std::getline(in, entry, '\0');) {
    if (entry.starts_with(prefix)) target = std::atoi(entry.c_str() + prefix.size());
  }
  if (target < 0) {
    errno = ENOENT;
    return -1;
  }
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) return -1;
  const int fd = static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd, target, 0));
  const int e = errno;
  ::close(pidfd);
  errno = e;
  return fd;
}
#else
bool StuckAccept::arm(int /*listener*/) { return false; }
int listener_of(pid_t /*pid*/, std::uint16_t /*port*/) { return -1; }
int control_socket_of(pid_t /*pid*/) {
  errno = ENOSYS;
  return -1;
}
#endif

BackendForChildren::BackendForChildren(const char* backend) {
  if (const char* v = std::getenv("EVLOOP_BACKEND")) was_ = v;
  ::setenv("EVLOOP_BACKEND", backend, 1);
}

BackendForChildren::~BackendForChildren() {
  if (was_) {
    ::setenv("EVLOOP_BACKEND", was_->c_str(), 1);
  } else {
    ::unsetenv("EVLOOP_BACKEND");
  }
}

void UpgradeTest::SetUp() {
  if (!become_subreaper()) GTEST_SKIP() << "needs a subreaper (Linux) to see successors exit";
}

void UpgradeTest::TearDown() {
  if (server_pid_ > 0 && live_.count(server_pid_)) {
    ::kill(server_pid_, SIGTERM);
    EXPECT_EQ(wait_generation_exit(server_pid_), 0) << "the last generation stops cleanly";
  }
  for (const pid_t pid : std::set<pid_t>(live_)) {  // whatever a failed test left
    ::kill(pid, SIGKILL);
    wait_generation_exit(pid);
  }
}

void UpgradeTest::start(const std::vector<std::string>& extra, const ChildSetup& setup,
                        const std::string& listen, const std::vector<std::string>& wrapper,
                        const std::string& connect_to) {
  std::vector<std::string> argv = wrapper;
  argv.push_back(UPGRADE_TEST_SERVER_BIN);
  if (!listen.empty()) argv.insert(argv.end(), {"--listen", listen});
  argv.insert(argv.end(), extra.begin(), extra.end());
  unix_path_ = connect_to;
  child_ = std::make_unique<Child>(argv, setup);
  ASSERT_TRUE(child_->running());
  live_.insert(child_->pid());
  int first = -1;
  if (unix_path_.empty()) {
    const std::string line = child_->wait_for_line("listening on ", kTimeout);
    ASSERT_NE(line, "") << "the server did not print its address";
    port_ = static_cast<std::uint16_t>(std::atoi(line.c_str() + line.rfind(':') + 1));
  } else {
    // The socket file appears when the wrapper listens; nothing tells us when but the file.
    const auto deadline = std::chrono::steady_clock::now() + kTimeout;
    while ((first = connect_unix(unix_path_)) < 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(milliseconds(10));
    }
    ASSERT_GE(first, 0) << "nothing listens on " << unix_path_;
  }
  server_pid_ = expect_serving_line();
  if (first >= 0) ::close(first);
  ASSERT_EQ(server_pid_, child_->pid());
}

int UpgradeTest::connect() const {
  return unix_path_.empty() ? connect_loopback(port_) : connect_unix(unix_path_);
}

std::string UpgradeTest::command(const std::string& line, milliseconds timeout) const {
  const int fd = connect();
  if (fd < 0) return "(connect failed)";
  bool closed = false;
  std::string reply = send_all(fd, line + "\n") ? read_until_close(fd, timeout, closed) : "";
  ::close(fd);
  return reply;
}

UpgradeReply UpgradeTest::upgrade(const std::string& args) {
  UpgradeReply r;
  r.message = command(args.empty() ? "UPGRADE" : "UPGRADE " + args);
  if (r.message.starts_with("OK ")) {
    char* end = nullptr;
    r.successor = static_cast<pid_t>(std::strtol(r.message.c_str() + 3, &end, 10));
    r.moved = std::strtoul(end, &end, 10);
    r.draining = std::strtoul(end, &end, 10);
    r.ok = r.successor > 0;
    if (r.ok) live_.insert(r.successor);
  } else if (r.message.starts_with("FAIL ")) {
    r.message.erase(0, 5);
  }
  return r;
}

pid_t UpgradeTest::expect_serving_line() {
  const std::string line = child_->wait_for_line("serving pid=", kTimeout);
  return line.empty() ? 0 : static_cast<pid_t>(std::atol(line.c_str() + 12));
}

int UpgradeTest::wait_generation_exit(pid_t pid) {
  const int code =
      pid == child_->pid() ? child_->wait_process(kTimeout) : wait_for_exit(pid, kTimeout);
  live_.erase(pid);
  return code;
}

bool UpgradeTest::process_stays(pid_t pid, milliseconds wait) {
  const bool stays = wait_for_exit(pid, wait, /*kill_on_timeout=*/false) == -1;
  if (!stays) live_.erase(pid);
  return stays;
}

}  // namespace example_test
