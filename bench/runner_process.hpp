// Internal to bench/. The runner's child processes: spawn pinned to one CPU with stdout (and
// optionally stdin) on pipes, read stdout lines with a deadline, signal, wait with a deadline.
// Every wait is bounded, so a hung server or load generator fails a run instead of the suite.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

namespace bench {

/// A child process whose stdout the runner reads line by line.
class Child {
 public:
  Child() = default;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() { kill_and_reap(); }

  /// Starts argv[0] (a path) pinned to `cpu` (-1: not pinned). With `stdin_pipe`, its stdin is a
  /// pipe the runner holds (close_stdin() gives it end of file); otherwise /dev/null. With a
  /// `stderr_log` path, its stderr is appended there instead of going to the runner's stderr.
  /// A non-zero `nice` sets the child's nice value (negative needs privilege).
  bool spawn(const std::vector<std::string>& argv, int cpu, bool stdin_pipe,
             const std::string& stderr_log = {}, int nice = 0) {
    int out[2], in[2] = {-1, -1};
    if (pipe2(out, O_CLOEXEC) != 0) return false;
    if (stdin_pipe && pipe2(in, O_CLOEXEC) != 0) return false;
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_ = fork();
    if (pid_ < 0) return false;
    if (pid_ == 0) {
      if (cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        sched_setaffinity(0, sizeof set, &set);
      }
      if (nice != 0) setpriority(PRIO_PROCESS, 0, nice);
      dup2(out[1], STDOUT_FILENO);
      if (!stderr_log.empty()) {
        const int log = open(stderr_log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (log >= 0) dup2(log, STDERR_FILENO);
      }
      if (stdin_pipe) {
        dup2(in[0], STDIN_FILENO);
      } else {
        const int null = open("/dev/null", O_RDONLY);
        dup2(null, STDIN_FILENO);
      }
      execv(args[0], args.data());
      std::fprintf(stderr, "runner: cannot run %s: %s\n", args[0], std::strerror(errno));
      _exit(127);
    }
    close(out[1]);
    out_ = out[0];
    if (stdin_pipe) {
      close(in[0]);
      in_ = in[1];
    }
    return true;
  }

  pid_t pid() const noexcept { return pid_; }

  /// The next stdout line (without the newline), or nothing at EOF or when `timeout` passes.
  std::optional<std::string> read_line(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const auto nl = buf_.find('\n');
      if (nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return line;
      }
      if (out_ < 0) return std::nullopt;
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{out_, POLLIN, 0};
      const int rc = poll(&p, 1, static_cast<int>(left.count()));
      if (rc < 0 && errno == EINTR) continue;
      if (rc <= 0) return std::nullopt;
      char chunk[4096];
      const ssize_t n = read(out_, chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        close(out_);
        out_ = -1;
        if (!buf_.empty()) {  // a last line without a newline
          std::string line;
          line.swap(buf_);
          return line;
        }
        return std::nullopt;
      }
      buf_.append(chunk, static_cast<std::size_t>(n));
    }
  }

  /// Reads lines until one starts with `prefix`; returns it, or nothing on EOF or timeout.
  std::optional<std::string> read_until(const std::string& prefix,
                                        std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      auto line = read_line(left);
      if (!line) return std::nullopt;
      if (line->compare(0, prefix.size(), prefix) == 0) return line;
    }
  }

  /// Gives the child end of file on stdin.
  void close_stdin() {
    if (in_ >= 0) close(in_);
    in_ = -1;
  }

  void signal(int sig) const {
    if (pid_ > 0) ::kill(pid_, sig);
  }

  /// Waits for the child to exit; returns its exit status (128+signal if killed), or nothing if
  /// it is still running after `timeout`.
  std::optional<int> wait(std::chrono::milliseconds timeout) {
    if (pid_ <= 0) return status_;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      int st = 0;
      const pid_t r = waitpid(pid_, &st, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        return status_;
      }
      if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
      const timespec ts{0, 5'000'000};  // 5 ms between checks
      nanosleep(&ts, nullptr);
    }
  }

  /// SIGKILLs the child if it is still running and reaps it; closes the pipes.
  void kill_and_reap() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int st = 0;
      waitpid(pid_, &st, 0);
      pid_ = -1;
    }
    close_stdin();
    if (out_ >= 0) close(out_);
    out_ = -1;
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  int in_ = -1;
  std::string buf_;
  std::optional<int> status_;
};

}  // namespace bench
