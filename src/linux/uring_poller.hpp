// Internal. The io_uring backend's poller: the same readiness contract as epoll, plus
// completion-based receives and sends for connections. Loop thread only.
//
// Readiness: a one-shot POLL_ADD per registered fd, re-armed before each wait for as long as the
// fd has interest, so readiness is level-triggered as the core expects (a multishot poll would
// report edges). An fd without interest (a connection with no receive in the kernel) has a
// multishot poll that reports only errors and hang-ups: see arm(); so has a connection waiting
// for write space after a send found none (watch_write_space()). Each fd has a generation: a
// completion from an fd removed (or closed and reused) since is recognised and dropped.
//
// Completions: one RECV in flight per reading connection (re-armed after each completion),
// taking a buffer from one of the loop's two provided-buffer rings, small or large as the core
// asks (recycled at the next wait, after the core has copied what it keeps), and a SEND (SENDMSG
// for several pieces) per connection with output, and a multishot ACCEPT per listener that only
// this process holds (src/listener.hpp says why a shared one takes readiness). Their
// user_data is the token with the operation in its low bits (tokens are 8-aligned), so a request
// can be cancelled by token.
//
// Everything prepared during an iteration is submitted by the next wait, in the same
// io_uring_enter that waits: that is where io_uring saves system calls.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <vector>

#include "uring.hpp"

namespace evloop::detail {

struct PollEvent;

class UringPoller {
 public:
  /// Completion operations, as tagged into user_data.
  enum Op : unsigned char { kPoll = 1, kReceive = 2, kSend = 3, kInternal = 4, kAccept = 5 };

  /// `buffers` small provided buffers (0: kDefaultBuffers) and buffers / 8 large ones (at
  /// least 1); a power of two (LoopOptions::uring_buffers). `submit_refusals`, if not null, is
  /// bumped for each submission the kernel refuses.
  std::error_code open(unsigned buffers, std::atomic<std::uint64_t>* submit_refusals);
  static constexpr unsigned kDefaultBuffers = 512;
  std::error_code add(int fd, unsigned interest, void* token);
  /// add(fd, kWrite) as a multishot poll: each wake-up reported once, not again at every wait.
  /// For a send that the peer's FIN woke without room (see arm()).
  std::error_code watch_write_space(int fd, void* token);
  std::error_code modify(int fd, unsigned from, unsigned to, void* token);
  /// Ends the fd's poll; one in the kernel is cancelled at once, so the file is let go of when
  /// this returns (a close(fd) after it closes the socket).
  void remove(int fd, unsigned interest);
  int wait(PollEvent* out, int capacity, int timeout_ms);

  /// A receive into a provided buffer: a large one (64 KiB) if `large`, else a small one (16 KiB).
  void receive(int fd, void* token, bool large);
  void send(int fd, const msghdr* msg, void* token);
  /// A multishot accept on listener `fd`: one completion per accepted connection (its fd) while
  /// armed, until an error or a cancel ends it.
  void accept(int fd, void* token);
  void cancel(void* token, Op op);
  /// True while a removed poll has not reported its end: until then it holds its file open.
  bool polls_ending() const noexcept { return ending_ > 0; }

 private:
  struct FdState {
    void* token = nullptr;
    std::uint32_t generation = 0;  // bumped whenever a poll in the kernel becomes stale
    unsigned char want = 0;        // interest the core asked for
    bool multishot = false;        // one poll reporting each wake-up: kNone, watch_write_space
    bool registered = false;       // added and not removed
    bool armed = false;            // a poll for `want` is in the kernel
    bool queued = false;           // in rearm_
  };
  FdState& state(int fd);
  std::error_code register_fd(int fd, unsigned interest, void* token, bool multishot);
  void queue_rearm(int fd);
  void rearm_all();
  void arm(int fd, FdState& st);
  void disarm(int fd, FdState& st);
  bool translate(const io_uring_cqe& cqe, PollEvent& out);

  Uring ring_;
  bool enabled_ = false;
  std::vector<FdState> fds_;         // by fd
  std::vector<int> rearm_;           // fds whose poll ended and that still have interest
  std::size_t ending_ = 0;           // polls cancelled by disarm() that have not reported their end
  std::vector<std::uint16_t> used_;  // provided buffers handed out by the last wait
};

}  // namespace evloop::detail
