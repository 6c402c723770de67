// Internal. The successor's side of a live upgrade. A process that Server::upgrade() started finds
// its control socket in EVLOOP_UPGRADE_FD; its Server's start() takes the listening sockets the
// predecessor sends instead of binding, then tells the predecessor it is ready (or why it could
// not start), and adopts the connections handed over, on a thread of its own, until the
// predecessor says it is done. Once its Server is stopped it adopts no more: it answers each
// batch saying which connections it took (none then), and the predecessor keeps the others.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "evloop/error.hpp"
#include "profile.hpp"
#include "socket.hpp"
#include "upgrade_protocol.hpp"

namespace evloop::detail {

class EventLoop;

class UpgradeSuccessor {
 public:
  /// The listening sockets the predecessor served one listen address with, in its loop order.
  struct Listeners {
    std::vector<UniqueFd> fds;
    // The predecessor bound the Unix socket: remove its file at the end.
    bool owns_unix_path = false;
  };

  /// True when EVLOOP_UPGRADE_FD is set: a live upgrade started this process.
  static bool requested();

  UpgradeSuccessor() = default;
  ~UpgradeSuccessor() { stop(); }
  UpgradeSuccessor(const UpgradeSuccessor&) = delete;
  UpgradeSuccessor& operator=(const UpgradeSuccessor&) = delete;

  /// Takes the control socket (and unsets the variable), and reads the predecessor's listening
  /// sockets. errc::upgrade_failed when the variable or what arrives is not what it should be.
  Status open();
  /// Moves the sockets the predecessor served `text` with (the first listen address so written
  /// not taken yet) to `out`; false when there are none.
  bool take_listeners(const std::string& text, Listeners& out);
  /// start() failed: tells the predecessor why, and closes everything.
  void report_failure(const Status& status);
  /// Before the loops start: starts the thread that will adopt what the predecessor hands over
  /// on `loops` (a connection with the profile `profiles` has at the predecessor's index for
  /// it), waiting until report_ready() or report_failure(). Made first so that a thread that
  /// cannot start fails start() with its reason, as a loop thread does.
  Status start_receiver(const std::vector<std::unique_ptr<EventLoop>>& loops,
                        std::vector<ProfilePtr> profiles);
  /// start() succeeded: closes the sockets no listen address took (the predecessor holds its own
  /// until it exits), tells the predecessor, and lets the receiver adopt what it hands over
  /// (on `loops`, start_receiver()'s).
  void report_ready(const std::vector<std::unique_ptr<EventLoop>>& loops);
  /// Waits, at most `timeout`, until the predecessor has handed over everything (or is gone): an
  /// upgrade of this process then moves those connections too. False when it has not yet.
  bool finish_receiving(std::chrono::milliseconds timeout);
  /// Stops receiving and waits for the receiving thread (not from that thread). The frames
  /// already on their way are still answered (as refused: the loops have stopped by then).
  void stop();

 private:
  void receive(std::vector<EventLoop*> loops, std::vector<ProfilePtr> profiles);
  void end_receiving();  // the receiver has ended, or will not run: wakes finish_receiving()
  bool adopt_batch(upgrade::Frame& frame, const std::vector<EventLoop*>& loops,
                   const std::vector<ProfilePtr>& profiles, std::string& answer);
  Status read_listeners();
  void close_control();

  std::mutex mutex_;        // guards control_ against stop() while the receiver closes it
  bool shut_down_ = false;  // guarded by mutex_: stop() ended the stream, not the predecessor
  std::mutex join_mutex_;   // stop() and finish_receiving() may be called from two threads
  UniqueFd control_;
  std::unique_ptr<upgrade::FrameReader> reader_;
  std::vector<std::pair<std::string, Listeners>> listeners_;  // by listen address text
  bool answers_ = false;  // the predecessor reads an `adopted` answer to each batch (hello flag 2)
  std::thread receiver_;
  std::mutex receiving_mutex_;
  std::condition_variable received_all_;  // and the receiver's wait for `gate_`
  bool receiving_ = false;                // guarded by receiving_mutex_: receiver_ runs
  // Guarded by receiving_mutex_: whether the receiver may receive (the predecessor was told the
  // successor is ready) or must end (start() failed), once report_ready() or report_failure().
  enum class Gate { closed, open, shut } gate_ = Gate::closed;
  void set_gate(Gate gate);
};

}  // namespace evloop::detail
