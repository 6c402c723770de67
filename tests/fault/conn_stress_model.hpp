// The conn stress test's model: the byte streams between peers and evloop (across the
// connections a stream passes through by detach and adopt), each connection's events, what the
// loop side wrote, and the violations found. One recursive mutex guards it all (handlers that
// act on connections may end up in other handlers of the test).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "fault_support.hpp"

namespace evloop::fault::stress {

using Clock = std::chrono::steady_clock;
using Rng = std::mt19937_64;

constexpr int kPosters = 2;

enum class Target { peer_tcp, peer_unix, refused, missing };

// One byte stream between a peer socket and evloop, across the connections (epochs) it passes
// through by detach and adopt.
struct Stream {
  std::uint64_t id = 0;
  bool from_peer = false;  // the peer dialled the server; else the loop dialled (Target)
  Target target = Target::peer_tcp;
  bool unix_socket = false;
  ConnRef ref;        // the current connection
  bool live = false;  // its first bytes (a dialled peer's hello) are queued: others may follow
  unsigned epoch = 0;
  std::vector<std::uint32_t> counted;  // per epoch: records the loop side wrote (source 0)
  std::vector<std::array<std::uint32_t, kPosters>> posted;  // per epoch: ConnRef::write seqs
  std::uint64_t input_consumed = 0;  // the peer's bytes `data` consumed (after the hello)
  std::int64_t input_at_eof = -1;    // consumed + unconsumed tail when `eof` came
  bool dial_started = false, dial_empty = false, opened = false, failed = false;
  bool dial_opened = false, dial_failed = false;  // the first connection's (epoch 0) outcome
  std::string excused;                            // why a clean EOF need not bring every byte
  std::error_code failed_error;
  std::string log;  // what happened to it, printed when a check fails

  void note(const std::string& what) {
    if (log.size() < 6000) log += what + "; ";
  }

  std::uint32_t& counted_at(unsigned e) {
    if (counted.size() <= e) counted.resize(e + 1);
    return counted[e];
  }
  std::uint32_t& posted_at(unsigned e, int poster) {
    if (posted.size() <= e) posted.resize(e + 1);
    return posted[e][static_cast<std::size_t>(poster)];
  }
};

struct ConnEvents {
  int opened = 0, closed = 0, failed = 0, eofs = 0;
};

// Per connection (by id, so also while a dial connects, before `opened`).
struct ConnCtx {
  std::uint64_t stream = 0;  // 0 until an accepted connection's hello arrives
  unsigned epoch = 0;
  bool shut_write = false;  // shutdown_write() called: later writes are ignored
  bool detaching = false;   // detach() said yes: close, abort, shutdown_write are ignored
  bool paused = false;      // pause_reading() without resume_reading() since: no `data`
  std::size_t tail = 0;     // bytes the last `data` left unconsumed (handed again next time)
};

struct Config {
  std::uint64_t seed;
  int max_ops;              // loop-side operations before the stop
  Clock::duration run_cap;  // the stop comes by then at the latest
  std::size_t large_max;    // largest payload of a large write
  int max_peers, max_dials;
  std::size_t stream_budget;  // bytes the loop side writes to one stream at most
};

struct Model {
  explicit Model(const Config& c) : cfg(c) {}
  const Config cfg;
  std::recursive_mutex mu;
  std::map<std::uint64_t, Stream> streams;
  std::map<std::uint64_t, ConnEvents> conns;
  std::map<std::uint64_t, ConnCtx> info;  // by connection id
  std::vector<std::uint64_t> adoptions;   // ids of the adoptions started (non-empty refs)
  std::map<std::string, int> endings;     // how connections ended: `closed` and `connect_failed`
  std::vector<std::string> violations;
  std::uint64_t next_stream = 1;
  std::map<std::uint64_t, std::uint64_t> written;  // bytes the loop side wrote per stream
  Loop* loops[2] = {nullptr, nullptr};
  std::function<void()> stop_loops;  // the Server's or the LoopGroup's stop()
  int file_fd = -1;
  std::string tcp_peer, tcp_peer_by_name, unix_peer, refused, missing;
  // Detached connections a receiver left for a poster thread to adopt.
  struct Handoff {
    DetachedConn conn;
    std::uint64_t stream;
    unsigned epoch;
    ConnOptions options;
    bool eof_handler;
  };
  std::vector<Handoff> handoffs;
  std::atomic<bool> stop_called{false}, after_wait{false};
  std::atomic<int> ops{0};
  EventCounter stop_wanted;
  EventCounter ticks;  // loop-side operations: the posters keep pace with them
  std::atomic<long> dials{0}, posts_ran{0}, detaches{0}, adopts{0}, files{0}, aborts{0};

  void violation(std::string what) {
    std::lock_guard lock(mu);
    if (violations.size() < 50) violations.push_back(std::move(what));
  }
  void stop() {
    stop_called = true;
    stop_loops();
  }
  Stream& new_stream(bool from_peer, Target target) {
    Stream& s = streams[next_stream];
    s.id = next_stream++;
    s.from_peer = from_peer;
    s.target = target;
    s.unix_socket = target == Target::peer_unix;
    return s;
  }
  // A handler ran for connection `c`: not after wait(), not after its `closed`.
  ConnEvents& event(Conn& c, const char* what) {
    if (after_wait) violation(std::string(what) + " after wait() returned");
    ConnEvents& e = conns[c.id()];
    if (e.closed > 0 || e.failed > 0) {
      violation(std::string(what) + " after closed/connect_failed, conn " + std::to_string(c.id()));
    }
    return e;
  }
};

inline ConnCtx* ctx_of(Model& m, Conn& c) {
  auto it = m.info.find(c.id());
  return it == m.info.end() ? nullptr : &it->second;
}

inline void half_close(Conn& c, ConnCtx& x) {
  if (!x.detaching) x.shut_write = true;  // ignored after a detach that said yes
  c.shutdown_write();
}

// The random operations (conn_stress_ops.cpp).

/// The loop thread's random generator (seeded by the loop_started hook); null elsewhere.
extern thread_local Rng* t_rng;
/// The handlers of a connection of `stream` (0: an accepted one, named by its peer's hello).
Handlers make_handlers(Model& m, std::uint64_t stream, unsigned epoch, bool eof_handler);
/// Limits and socket options at random.
ConnOptions random_options(Rng& rng);
/// One random operation on a random connection of `loop`, on its thread.
void loop_op(Model& m, Loop& loop, Rng& rng, int depth);
/// A poster thread: random operations through ConnRef and Loop until wait() has returned.
void poster(Model& m, int index, std::uint64_t seed);

}  // namespace evloop::fault::stress
