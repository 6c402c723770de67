// A Server::start() whose loop threads cannot all be created (pthread_create fails with EAGAIN)
// gives back what it does not own: an inherited listening fd stays open and listening, and the
// addresses it reported are forgotten. The failure is real: a child process switches to a user
// of its own and limits that user's tasks (RLIMIT_NPROC, which is not enforced for root).
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <evloop/evloop.hpp>
#include <string>

namespace {

int listening_loopback_socket() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(fd, 16) != 0) {
    return -1;
  }
  return fd;
}

bool is_listening(int fd) {
  int listening = 0;
  socklen_t len = sizeof listening;
  return ::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 && listening != 0;
}

// In the child: start a server with 4 loops while its user may run only 2 tasks (this thread
// and one loop thread). Writes what it saw to `out`; the exit code says whether it could test.
[[noreturn]] void child(int inherited, int out) {
  auto say = [out](const std::string& s) { (void)!::write(out, s.data(), s.size()); };
  const auto uid = static_cast<uid_t>(3'000'000 + ::getpid());  // a user of this child alone
  const rlimit two{2, 2};
  if (::setgid(uid) != 0 || ::setuid(uid) != 0 || ::setrlimit(RLIMIT_NPROC, &two) != 0) {
    ::_exit(3);  // not root: nothing to test with
  }
  evloop::Options o;
  o.loops = 4;
  o.listen = {"fd://" + std::to_string(inherited), "tcp://127.0.0.1:0"};
  evloop::Server server(o, {});
  const evloop::Status s = server.start();
  if (s) {
    say("started");
    server.stop();
    server.wait();
    ::_exit(0);
  }
  std::string seen = "failed: " + s.message() + "\n";
  seen += "addresses=" + std::to_string(server.addresses().size()) + "\n";
  seen += std::string("inherited=") + (is_listening(inherited) ? "listening" : "gone") + "\n";
  say(seen);
  ::_exit(0);
}

TEST(StartFailure, ALoopThreadThatCannotStartLeavesInheritedFdsOpenAndForgetsTheAddresses) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to switch to a user with a task limit";
  const int inherited = listening_loopback_socket();
  ASSERT_GE(inherited, 0) << std::strerror(errno);
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(pipe_fds[0]);
    child(inherited, pipe_fds[1]);
  }
  ::close(pipe_fds[1]);
  std::string seen;
  char buf[512];
  for (ssize_t n; (n = ::read(pipe_fds[0], buf, sizeof buf)) > 0;) seen.append(buf, n);
  ::close(pipe_fds[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 3) GTEST_SKIP() << "could not switch user or limit its tasks";
  ASSERT_NE(seen, "started") << "the task limit did not stop a loop thread from starting";
  // libkqueue (the kqueue suite on Linux) runs a thread of its own per kqueue: there the poller
  // is what cannot be created, with the same outcome.
  EXPECT_TRUE(seen.find("start loop thread") != std::string::npos ||
              seen.find("create poller") != std::string::npos)
      << seen;
  EXPECT_NE(seen.find("addresses=0\n"), std::string::npos) << seen;
  EXPECT_NE(seen.find("inherited=listening\n"), std::string::npos) << seen;
  EXPECT_TRUE(is_listening(inherited));
  ::close(inherited);
}

}  // namespace
