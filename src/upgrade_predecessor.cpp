#include "upgrade_predecessor.hpp"

#include <fcntl.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>

#include "connection.hpp"
#include "event_loop.hpp"
#include "listener.hpp"
#include "loop_group_core.hpp"
#include "platform.hpp"
#include "sys_error.hpp"
#include "timeouts.hpp"
#include "udp_socket.hpp"
#include "upgrade_protocol.hpp"
#include "upgrade_spawn.hpp"

namespace evloop::detail {
namespace {

using upgrade::Clock;
using upgrade::FrameType;
using upgrade::kMaxFdsPerFrame;
using upgrade::PayloadWriter;

Status failure(const std::string& why) {
  return {make_error_code(errc::upgrade_failed), "upgrade: " + why};
}

std::string error_text(int e) { return sys_error(e).message(); }

// Runs `task` on every loop's thread and returns once each loop has run it, or refused it (a
// loop that has stopped; one that stops meanwhile runs it as it stops, its listeners and
// connections closed). Either way no loop touches `task` after this returns.
void on_every_loop(LoopGroupCore& group, const std::function<void(EventLoop&)>& task) {
  struct Countdown {
    std::mutex mutex;
    std::condition_variable cv;
    std::size_t left = 0;
  };
  auto countdown = std::make_shared<Countdown>();
  countdown->left = group.loops().size();
  for (const auto& loop : group.loops()) {
    std::shared_ptr<void> done(nullptr, [countdown](void*) {
      std::lock_guard lock(countdown->mutex);
      --countdown->left;
      countdown->cv.notify_all();
    });
    loop->post([&task, l = loop.get(), done] { task(*l); });
  }
  std::unique_lock lock(countdown->mutex);
  countdown->cv.wait(lock, [&] { return countdown->left == 0; });
}

// --- 1. the listening sockets -------------------------------------------------------------------

struct SharedListener {
  std::uint32_t endpoint = 0;
  std::uint32_t loop = 0;
  bool owns_unix_path = false;
  UniqueFd fd;  // a duplicate: the loop's own stays where it is
};

// The Unix socket files of the listeners being handed over. Their listeners give them up as the
// upgrade begins, so that nothing here (a stop() while the successor starts, say) removes a file
// the successor will serve. A failed upgrade gives each back to its listener if that still
// serves; a file whose listener is gone meanwhile is removed when this ends, as its listener
// would have removed it. A successful one lets them go: the successor removes them.
class UnixPathLoans {
 public:
  UnixPathLoans() = default;
  UnixPathLoans(const UnixPathLoans&) = delete;
  UnixPathLoans& operator=(const UnixPathLoans&) = delete;
  ~UnixPathLoans() = default;

  // On `loop`'s thread.
  void borrow(EventLoop& loop, Listener& listener) {
    if (!listener.unix_path.owns()) return;
    std::lock_guard lock(mutex_);
    loans_.push_back({loop.index(), &listener, std::move(listener.unix_path)});
    listener.unix_path = UnixPathOwner();
  }
  // The upgrade failed: each file to its listener, where that still serves.
  void give_back(LoopGroupCore& group) {
    if (loans_.empty()) return;
    on_every_loop(group, [this](EventLoop& loop) {
      std::lock_guard lock(mutex_);
      for (Loan& loan : loans_) {
        if (loan.loop != loop.index()) continue;
        for (const auto& listener : loop.listeners()) {
          if (listener.get() == loan.listener) listener->unix_path = std::move(loan.path);
        }
      }
    });
  }
  // The upgrade succeeded: the files are the successor's.
  void let_go() {
    for (Loan& loan : loans_) loan.path.release();
  }

 private:
  struct Loan {
    std::size_t loop = 0;
    const Listener* listener = nullptr;  // compared, never followed: it may be gone
    UnixPathOwner path;
  };
  std::mutex mutex_;
  std::vector<Loan> loans_;
};

Status duplicate_listeners(LoopGroupCore& group, std::vector<SharedListener>& out,
                           UnixPathLoans& paths) {
  std::mutex mutex;
  int error = 0;
  on_every_loop(group, [&](EventLoop& loop) {
    const auto share = [&](int original, std::size_t endpoint, bool owns_unix_path) {
      UniqueFd fd(::fcntl(original, F_DUPFD_CLOEXEC, 0));
      std::lock_guard lock(mutex);
      if (fd.get() < 0) {
        error = errno;
        return;
      }
      out.push_back({static_cast<std::uint32_t>(endpoint), static_cast<std::uint32_t>(loop.index()),
                     owns_unix_path, std::move(fd)});
    };
    for (const auto& listener : loop.listeners()) {
      share(listener->fd.get(), listener->endpoint, listener->unix_path.owns());
      paths.borrow(loop, *listener);
      // From now on another process holds it: should this upgrade fail, the listener accepts
      // again by readiness (listener.hpp), never behind the successor's accepts.
      listener->shared = true;
    }
    // The server's UDP sockets go the same way: the successor reads the same sockets (their
    // queued datagrams included), so nothing is lost and no port is bound twice.
    for (const UdpSocket* socket : loop.server_udp_sockets()) {
      share(socket->fd(), socket->endpoint(), false);
    }
  });
  if (error != 0) return failure("duplicating the listening sockets: " + error_text(error));
  if (out.empty()) return failure("the server is stopping: no listening socket to hand over");
  std::sort(out.begin(), out.end(), [](const SharedListener& a, const SharedListener& b) {
    return a.endpoint != b.endpoint ? a.endpoint < b.endpoint : a.loop < b.loop;
  });
  return {};
}

// hello frames: u32 total, u32 in this frame, then per socket {u32 endpoint, u32 loop, u32 flags
// (1: this process bound its Unix socket file; 2, on every record: it reads `adopted` answers),
// bytes listen address}, its fd attached.
int send_listeners(int control, const std::vector<SharedListener>& listeners,
                   const std::vector<std::string>& endpoints, Clock::time_point deadline) {
  for (std::size_t first = 0; first < listeners.size(); first += kMaxFdsPerFrame) {
    const std::size_t count = std::min(kMaxFdsPerFrame, listeners.size() - first);
    std::string payload;
    PayloadWriter out(payload);
    out.u32(static_cast<std::uint32_t>(listeners.size()));
    out.u32(static_cast<std::uint32_t>(count));
    std::vector<int> fds;
    for (std::size_t i = first; i < first + count; ++i) {
      const SharedListener& l = listeners[i];
      out.u32(l.endpoint);
      out.u32(l.loop);
      out.u32((l.owns_unix_path ? upgrade::kOwnsUnixPath : 0) | upgrade::kReadsAnswers);
      out.bytes(endpoints.at(l.endpoint));
      fds.push_back(l.fd.get());
    }
    if (const int e = upgrade::send_frame(control, FrameType::hello, payload, fds, deadline)) {
      return e;
    }
  }
  return 0;
}

// --- 2, 3. the successor ------------------------------------------------------------------------

Status start_successor(const UpgradeOptions& options, UniqueFd& control, pid_t& pid) {
  int pair[2];
  if (platform::socket_pair_nonblocking(pair) < 0) {
    return failure("socketpair: " + error_text(errno));
  }
  control = UniqueFd(pair[0]);
  const UniqueFd child_end(pair[1]);  // the child's copy stays open across its exec
  pid = upgrade::spawn_successor(
      options.argv, upgrade::successor_environment(options.env, child_end.get()), child_end.get());
  if (pid < 0) return failure("fork: " + error_text(static_cast<int>(-pid)));
  return {};
}

// Waits for `ready` until `deadline`. Anything else (the reason the successor sent, the end of
// the stream, the timeout) kills and reaps it.
Status await_ready(upgrade::FrameReader& reader, pid_t pid, const UpgradeOptions& options,
                   Clock::time_point deadline, bool& answers) {
  upgrade::Frame frame;
  const int e = reader.next(frame, deadline);
  if (e == 0 && frame.type == FrameType::ready) {
    // ready: u64 pid, then (from a successor that answers each batch) u32 flags.
    upgrade::PayloadReader in(frame.payload);
    std::uint64_t its_pid = 0;
    std::uint32_t flags = 0;
    answers = in.u64(its_pid) && in.u32(flags) && (flags & upgrade::kAnswers) != 0;
    return {};
  }
  std::string why;
  std::uint32_t exec_errno = 0;
  if (e == ETIMEDOUT) {
    why = "was not ready within " + std::to_string(options.ready_timeout.count()) + " ms";
  } else if (e == 0 && frame.type == FrameType::start_failed) {
    why = "could not start: " + frame.payload;
  } else if (e == 0 && frame.type == FrameType::exec_failed &&
             upgrade::PayloadReader(frame.payload).u32(exec_errno)) {
    why = "could not execute " + options.argv[0] + ": " + error_text(static_cast<int>(exec_errno));
  } else if (e == ECONNRESET) {
    why = "ended before it was ready";
  } else {
    why = "broke the upgrade protocol before it was ready (" + error_text(e ? e : EPROTO) + ")";
  }
  return failure("the successor (pid " + std::to_string(pid) + ") " + why + "; it " +
                 upgrade::kill_and_reap(pid) + ". This process serves on");
}

// --- 5. the connections -------------------------------------------------------------------------

// A connection detached for the successor.
struct Moved {
  DetachedConn conn;
  std::uint32_t profile = 0;
  std::uint32_t loop = 0;
  std::string state;
};

// Batches of detached connections, from the loops to the thread that sends them.
class HandoverQueue {
 public:
  explicit HandoverQueue(std::size_t loops) : loops_left_(loops) {}

  void push(std::vector<Moved> batch) {
    std::lock_guard lock(mutex_);
    batches_.push_back(std::move(batch));
    cv_.notify_one();
  }
  void loop_done() {
    std::lock_guard lock(mutex_);
    --loops_left_;
    cv_.notify_one();
  }
  // The successor is lost: the loops offer no more connections (those detached come back).
  void give_up() { given_up_.store(true, std::memory_order_relaxed); }
  bool given_up() const { return given_up_.load(std::memory_order_relaxed); }
  // The next batch; false once every loop is done and everything was taken.
  bool pop(std::vector<Moved>& out) {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return !batches_.empty() || loops_left_ == 0; });
    if (batches_.empty()) return false;
    out = std::move(batches_.front());
    batches_.pop_front();
    return true;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::vector<Moved>> batches_;
  std::size_t loops_left_;
  std::atomic<bool> given_up_{false};
};

// One loop's part of step 5, on its thread, a frame's worth of connections at a time: each slice
// asks their `handover` handlers, detaches the ones they let go, hands what is detached to the
// sending thread, and posts the next slice, so that this loop serves the connections still
// waiting their turn in between (they see no stall meanwhile). A detach is carried out when the
// loop settles the connection: at once with readiness backends, once the kernel has given back
// its requests with completions (io_uring). Whoever holds the last reference (the last slice,
// or the last detach carried out) ends this loop's part: what is left goes, and the sending
// thread learns this loop is done.
struct LoopHandover {
  LoopHandover(EventLoop& l, const std::vector<ProfilePtr>& p, HandoverQueue& q,
               std::atomic<std::size_t>& d)
      : loop(l), profiles(p), queue(q), draining(d) {}
  ~LoopHandover() {
    push();
    queue.loop_done();
  }
  LoopHandover(const LoopHandover&) = delete;
  LoopHandover& operator=(const LoopHandover&) = delete;

  void push() {
    if (!batch.empty()) queue.push(std::move(batch));
    batch.clear();
  }

  EventLoop& loop;
  const std::vector<ProfilePtr>& profiles;
  HandoverQueue& queue;
  std::atomic<std::size_t>& draining;
  std::vector<std::uint64_t> ids;  // the connections open when the handover began
  std::size_t next = 0;
  std::vector<Moved> batch;  // detached, not yet handed to the sending thread
};

// Asks the connection's `handover` handler and, if it lets the connection go, detaches it into
// `h->batch`. False: the connection stays and drains here.
bool offer(Connection& conn, const std::shared_ptr<LoopHandover>& h) {
  const std::vector<ProfilePtr>& profiles = h->profiles;
  const auto it = std::find(profiles.begin(), profiles.end(), conn.profile());
  if (it == profiles.end() || !conn.profile()->handlers.handover) return false;  // not a listener's
  std::optional<std::string> state = conn.profile()->handlers.handover(conn);
  if (!state || conn.state() != ConnState::open) return false;
  const auto profile = static_cast<std::uint32_t>(it - profiles.begin());
  const auto loop = static_cast<std::uint32_t>(h->loop.index());
  return conn.detach([h, profile, loop, state = std::move(*state)](DetachedConn d) mutable {
    h->batch.push_back({std::move(d), profile, loop, std::move(state)});
    if (h->batch.size() >= kMaxFdsPerFrame) h->push();
  });
}

void hand_over_slice(const std::shared_ptr<LoopHandover>& h) {
  if (h->queue.given_up()) h->next = h->ids.size();  // the rest stay here
  std::size_t offered = 0;
  while (h->next < h->ids.size() && offered < kMaxFdsPerFrame) {
    Connection* conn = h->loop.find(h->ids[h->next++]);
    if (conn == nullptr || conn->state() != ConnState::open) continue;  // it ended meanwhile
    ++offered;
    if (!offer(*conn, h)) h->draining.fetch_add(1, std::memory_order_relaxed);
  }
  h->loop.settle_scheduled();  // carries out the detaches (those it can now): `batch` fills
  h->push();
  if (h->next < h->ids.size()) h->loop.post([h] { hand_over_slice(h); });
}

void start_handover(LoopGroupCore& group, const std::vector<ProfilePtr>& profiles,
                    HandoverQueue& queue, std::atomic<std::size_t>& draining) {
  for (const auto& loop : group.loops()) {
    auto h = std::make_shared<LoopHandover>(*loop, profiles, queue, draining);
    loop->post([h] {  // refused by a stopped loop, or run as it stops (no connection left):
                      // either way `h` ends, and says this loop is done
      h->loop.settle_scheduled();  // fds handed to this loop as the listeners stopped open now
      for (Connection* conn : h->loop.open_connections()) h->ids.push_back(conn->id());
      hand_over_slice(h);
    });
  }
}

// connections frames: u32 count, then per connection {u32 profile, u32 loop, bytes peer (a
// sockaddr), bytes input, bytes output, bytes state}, its fd attached.
int send_batch(int control, const std::vector<Moved>& batch, Clock::time_point deadline) {
  std::string payload;
  PayloadWriter out(payload);
  out.u32(static_cast<std::uint32_t>(batch.size()));
  std::vector<int> fds;
  for (const Moved& m : batch) {
    out.u32(m.profile);
    out.u32(m.loop);
    out.bytes({static_cast<const char*>(m.conn.peer.data()), m.conn.peer.size()});
    out.bytes(m.conn.input);
    out.bytes(m.conn.output);
    out.bytes(m.state);
    fds.push_back(m.conn.fd());
  }
  return upgrade::send_frame(control, FrameType::connections, payload, fds, deadline);
}

// How the connections went.
struct Sent {
  std::size_t moved = 0;    // the successor has them
  std::vector<Moved> back;  // not sent, or left here by the successor: adopted here again
  int error = 0;            // the errno that lost the successor
  bool stopped = false;     // the successor said it was stopped: it takes no more
};

// Reads the successor's answer to `batch`: the connections it left here go to `sent.back`, the
// others stay in `batch`. Returns 0, or the errno (EPROTO: a malformed answer).
int read_answer(upgrade::FrameReader& reader, std::vector<Moved>& batch, Sent& sent,
                Clock::time_point deadline) {
  // adopted: u32 flags (1: stopped), u32 count, then per connection u32 1 (taken) or 0 (left).
  upgrade::Frame frame;
  if (const int e = reader.next(frame, deadline)) return e;
  upgrade::PayloadReader in(frame.payload);
  std::uint32_t flags = 0, count = 0;
  std::vector<std::uint32_t> taken(batch.size(), 0);
  if (frame.type != FrameType::adopted || !in.u32(flags) || !in.u32(count) ||
      count != batch.size()) {
    return EPROTO;
  }
  for (std::uint32_t& t : taken) in.u32(t);
  if (!in.finished()) return EPROTO;
  std::vector<Moved> kept;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    (taken[i] != 0 ? kept : sent.back).push_back(std::move(batch[i]));
  }
  batch = std::move(kept);
  if ((flags & upgrade::kStopped) != 0) sent.stopped = true;
  return 0;
}

// Sends what the loops hand over until every loop is done; with a successor that answers, each
// batch waits for its answer. A batch not sent whole is taken back (the successor cannot have
// it); a batch sent whose answer does not come is the successor's (it may have begun serving
// it): lost with it. Our fds of what the successor has close here. Once the successor is lost or
// stopped the loops offer no more.
Sent send_connections(int control, upgrade::FrameReader* answers, HandoverQueue& queue,
                      Clock::duration timeout) {
  Sent sent;
  std::vector<Moved> batch;
  while (queue.pop(batch)) {  // to the end even after a failure: every loop must be done
    if (sent.error != 0 || sent.stopped) {
      std::move(batch.begin(), batch.end(), std::back_inserter(sent.back));
    } else {
      const auto deadline = Clock::now() + timeout;
      sent.error = send_batch(control, batch, deadline);
      if (sent.error != 0) {
        std::move(batch.begin(), batch.end(), std::back_inserter(sent.back));
      } else {
        if (answers != nullptr) sent.error = read_answer(*answers, batch, sent, deadline);
        sent.moved += batch.size();
      }
      if (sent.error != 0 || sent.stopped) queue.give_up();
    }
    batch.clear();
  }
  return sent;
}

// Connections the successor did not take: adopted here again (`adopted` fires with their state);
// they drain with the others that stayed.
void adopt_back(const UpgradeSource& source, std::vector<Moved>& back) {
  const auto& loops = source.group.loops();
  for (Moved& m : back) {
    loops[m.loop]->adopt(m.conn.release(), source.profiles[m.profile], std::move(m.conn.input),
                         std::move(m.conn.output), MovedState{m.conn.peer, std::move(m.state)});
  }
}

// The successor was lost during the handover: it is killed, what it did not get is adopted here
// again, and the listeners accept again.
Status take_back(const UpgradeSource& source, pid_t pid, const Sent& sent,
                 std::vector<Moved>& back) {
  const std::string how = upgrade::kill_and_reap(pid);
  adopt_back(source, back);
  on_every_loop(source.group, [](EventLoop& loop) { loop.accept_again(); });
  return failure("the successor (pid " + std::to_string(pid) + ") was lost during the handover (" +
                 error_text(sent.error) + "; it " + how + "): " + std::to_string(sent.moved) +
                 " connections it had were lost, " + std::to_string(back.size()) +
                 " were taken back; this process serves on");
}

// The successor was stopped during the handover (`why` says how it showed): it keeps the
// connections it took (its stop closes them as it closes its own), what it did not take is
// adopted here again, and the listeners accept again. It ends on its own; a thread of ours reaps
// it then.
Status serve_on(const UpgradeSource& source, pid_t pid, const std::string& why,
                std::vector<Moved>& back) {
  adopt_back(source, back);
  on_every_loop(source.group, [](EventLoop& loop) { loop.accept_again(); });
  try {
    std::thread([pid] { upgrade::reap(pid); }).detach();
  } catch (const std::system_error&) {  // no thread to spare: it stays unreaped until we exit
  }
  return failure("the successor (pid " + std::to_string(pid) + ") " + why + ", " +
                 std::to_string(back.size()) + " were taken back; this process serves on");
}

// Step 6: tells the successor that the handover has ended; 0, or the errno. By then every
// connection sent is the successor's (it answered for each batch, or received it whole).
int say_done(int control, std::size_t moved, Clock::time_point deadline) {
  std::string count;
  PayloadWriter(count).u64(moved);
  return upgrade::send_frame(control, FrameType::done, count, {}, deadline);
}

}  // namespace

Status check_upgrade_options(const UpgradeOptions& options) {
  if (options.argv.empty() || options.argv[0].empty()) {
    return {make_error_code(errc::bad_option), "upgrade: argv must name the program to execute"};
  }
  if (options.ready_timeout.count() <= 0 || options.drain_timeout.count() < 0) {
    return {make_error_code(errc::bad_option),
            "upgrade: ready_timeout must be positive and drain_timeout not negative"};
  }
  return {};
}

namespace {

Status run_handover(const UpgradeSource& source, const UpgradeOptions& options,
                    UpgradeReport& report, UnixPathLoans& paths) {
  std::vector<SharedListener> listeners;
  if (Status s = duplicate_listeners(source.group, listeners, paths); !s) return s;
  UniqueFd control;
  pid_t pid = -1;
  if (Status s = start_successor(options, control, pid); !s) return s;
  upgrade::FrameReader reader(control.get());
  const auto ready_timeout = capped(options.ready_timeout);
  const auto deadline = Clock::now() + ready_timeout;
  // Should this fail (the successor is gone already, or does not read), what it says, or its
  // end, or the timeout tells why: await_ready() reads it.
  send_listeners(control.get(), listeners, source.endpoints, deadline);
  listeners.clear();  // the successor has its own now
  bool answers = false;
  if (Status s = await_ready(reader, pid, options, deadline, answers); !s) return s;

  // From here on the successor serves too: stop accepting everywhere before handing over, so no
  // connection arrives after its loop's handover. (On io_uring, what a cancelled accept left in
  // the backlog is still taken, and served here while this process drains: listener.cpp.)
  on_every_loop(source.group, [](EventLoop& loop) { loop.stop_accepting(); });
  HandoverQueue queue(source.group.loops().size());
  std::atomic<std::size_t> draining{0};
  start_handover(source.group, source.profiles, queue, draining);
  Sent sent = send_connections(control.get(), answers ? &reader : nullptr, queue, ready_timeout);
  std::vector<Moved> back = std::move(sent.back);
  if (sent.error != 0) return take_back(source, pid, sent, back);
  const std::string took = "it took " + std::to_string(sent.moved) + " connections";
  if (sent.stopped) return serve_on(source, pid, "was stopped during the handover: " + took, back);
  // `done` fails only once the successor has stopped reading after its last answer: its stop()
  // shuts its end for reading, and its end closes it. What it took stays its own (killing it
  // would only cut short its stop's closing of them), and nothing serves the listeners there:
  // this process serves on, as when the successor says it was stopped.
  if (const int e = say_done(control.get(), sent.moved, Clock::now() + ready_timeout)) {
    return serve_on(source, pid,
                    "stopped reading before it was told that the handover had ended (" +
                        error_text(e) + "): " + took + ", which stay its own",
                    back);
  }
  control.reset();
  adopt_back(source, back);  // those it left here (a profile it lacks) drain here
  report.successor_pid = pid;
  report.moved = sent.moved;
  report.draining = draining.load() + back.size();
  source.group.begin_drain(options.drain_timeout);
  return {};
}

}  // namespace

Status hand_over(const UpgradeSource& source, const UpgradeOptions& options,
                 UpgradeReport& report) {
  if (Status s = check_upgrade_options(options); !s) return s;
  UnixPathLoans paths;
  Status s = run_handover(source, options, report, paths);
  if (s) {
    paths.let_go();
  } else {
    paths.give_back(source.group);
  }
  return s;
}

}  // namespace evloop::detail
