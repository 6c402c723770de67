// Internal. One connection's state machine: the read path, the output buffer, back-pressure and
// closing. Loop thread only. User callbacks never see this class, only its Conn handle.
//
// Closing is always deferred out of user callbacks: close()/abort()/an over-limit write only
// mark the connection and schedule it; the loop then flushes and calls finalize(), which is the
// one place that closes the fd and fires `closed` (exactly once, only after `opened`).
#pragma once

#include <any>
#include <cstdint>
#include <string>
#include <system_error>

#include "evloop/conn.hpp"
#include "output_buffer.hpp"
#include "pollable.hpp"
#include "poller.hpp"
#include "socket.hpp"

namespace evloop::detail {

class EventLoop;

class Connection final : public Pollable {
 public:
  Connection(EventLoop& loop, UniqueFd fd, std::uint64_t id, const SocketAddress& peer);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  /// Registers with the poller and fires `opened`.
  void start();
  /// Handles one readiness report.
  void on_event(const PollEvent& event);
  /// After callbacks: sends pending output, applies back-pressure, completes a requested close.
  void service();
  /// Server stopping: stop reading; close once pending output is sent (errc::server_stopped).
  void begin_shutdown();
  /// Closes the fd and fires `closed` once. Not from inside this connection's callbacks.
  void finalize(std::error_code error);

  // The Conn API.
  void write(const void* bytes, std::size_t size);
  void close();
  void abort();
  bool closing() const noexcept { return closing_; }
  bool closed() const noexcept { return closed_; }
  std::size_t output_pending() const noexcept { return out_.size(); }
  bool reading_paused() const noexcept { return paused_; }
  std::any& context() noexcept { return context_; }
  const SocketAddress& peer() const noexcept { return peer_; }
  int fd() const noexcept { return fd_.get(); }
  std::uint64_t id() const noexcept { return id_; }
  EventLoop& loop() const noexcept { return loop_; }
  Conn& handle() noexcept { return handle_; }

 private:
  void schedule();
  void discard_output();
  void read_once();
  void on_peer_eof();
  void deliver(const char* bytes, std::size_t size);
  void flush();
  void update_backpressure();
  void update_interest();
  void arm_idle_timer(std::chrono::steady_clock::duration after);
  void check_idle();

  EventLoop& loop_;
  UniqueFd fd_;
  const std::uint64_t id_;
  SocketAddress peer_;
  OutputBuffer out_;
  std::string in_;  // unconsumed input; empty (and unallocated) for protocols that consume all
  std::any context_;
  Conn handle_{*this};
  unsigned interest_ = kNone;  // what the poller has registered
  bool opened_ = false;
  bool scheduled_ = false;  // in the loop's scheduled list
  bool closing_ = false;    // no more reading; close when output is sent
  bool peer_eof_ = false;   // the peer sent FIN: no more reading
  bool aborted_ = false;    // close now, output discarded
  bool closed_ = false;
  bool paused_ = false;            // output passed the high-water mark; reading paused until low
  std::error_code close_reason_;   // reported by `closed` after a graceful close
  std::error_code pending_error_;  // close with this at the next service()
  std::uint64_t close_timer_ = 0;
  std::uint64_t idle_timer_ = 0;
  std::chrono::steady_clock::time_point last_progress_{};
};

}  // namespace evloop::detail
