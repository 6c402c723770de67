// A seeded, randomized stress of the connection API, checked against a model. Two loops serve
// TCP and Unix peers (plain sockets driven by one thread of the test, reading fast, slowly or not
// for a while, sending, half-closing, resetting) and dial peers (some dials cancelled, some to a
// port nobody serves or a path that does not exist). On the loop threads (a timer per loop,
// `data` and `eof`) and from two poster threads (ConnRef, Loop::post, run_after) the test mixes
// writes (small, large enough to go straight to the kernel, SharedBuffer, send_file), pauses and
// resumes, half-closes, closes, aborts, detaches adopted on either loop, dials, and a stop of the
// group at a random point. Then it checks what matters:
// - `closed` exactly once per `opened`, after it and nothing after it; `connect_failed` at most
//   once, never with `opened`, exactly once for each dial that did not open; nothing after wait().
// - Every byte a peer receives is where it belongs: records framed in order, each record's bytes
//   those written (another connection's bytes, a gap or a duplicate fail), per writer in order.
//   A peer that reads to a clean EOF has everything the loop side wrote (a clean end is a FIN
//   after every byte), across detaches.
// - What a peer sends reaches `data` in order, across detaches (the unconsumed tail and the input
//   a detach hands over).
// - A post never runs for another or a closed connection; a post is refused only after stop().
// - Every peer sees its connection end (EOF or reset) once wait() has returned; no fd or thread is
//   left (AccountedTest); nothing hangs (a watchdog aborts, naming the seed).
//
// The seed is printed; EVLOOP_STRESS_SEED=<n> runs that seed alone. Thread scheduling is not
// reproduced, so a seed gives the same choices, not the same interleaving: run it a few times.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <mutex>
#include <random>
#include <thread>

#include "fault_support.hpp"

namespace evloop::fault {
namespace {

using Clock = std::chrono::steady_clock;
using Rng = std::mt19937_64;

constexpr int kPosters = 2;
// Every record starts with this header; the peer parses the stream as records.
enum Kind : std::uint8_t { kWrite = 1, kFileHead = 2, kFiller = 3 };
struct Header {
  std::uint8_t kind;
  std::uint8_t source;  // 0: the loop side (its writes are counted); 1..kPosters: ConnRef::write
  std::uint16_t epoch;  // how many times the stream was detached and adopted before this write
  std::uint32_t seq;    // per (epoch, source), from 0, with no gap
  std::uint32_t len;    // payload bytes that follow
  std::uint32_t param;  // kFileHead: offset in the file of the raw bytes that follow
};
static_assert(sizeof(Header) == 16);
constexpr std::size_t kFillerSize = 4096;  // the file is kFileRecords filler records
constexpr std::size_t kFileRecords = 256;
constexpr std::size_t kFileSize = kFillerSize * kFileRecords;

std::uint8_t mix_byte(std::uint64_t key, std::uint64_t i) {
  std::uint64_t x = (key ^ (i * 0x9E3779B97F4A7C15ull)) * 0xBF58476D1CE4E5B9ull;
  return static_cast<std::uint8_t>(x >> 56);
}
std::uint64_t record_key(std::uint64_t stream, unsigned epoch, unsigned source, std::uint32_t seq) {
  return (stream << 40) ^ (std::uint64_t{epoch} << 32) ^ (std::uint64_t{source} << 28) ^ seq ^
         0x5bd1e995ull;
}
// What peer `stream` sends after its 8-byte hello, at offset `i`.
std::uint8_t input_byte(std::uint64_t stream, std::uint64_t i) { return mix_byte(~stream, i); }

std::string header_bytes(const Header& h) {
  return std::string(reinterpret_cast<const char*>(&h), sizeof h);
}
std::string make_record(std::uint64_t stream, unsigned epoch, unsigned source, std::uint32_t seq,
                        std::size_t len) {
  const Header h{kWrite, static_cast<std::uint8_t>(source), static_cast<std::uint16_t>(epoch), seq,
                 static_cast<std::uint32_t>(len), 0};
  std::string r = header_bytes(h);
  r.resize(sizeof h + len);
  const std::uint64_t key = record_key(stream, epoch, source, seq);
  for (std::size_t i = 0; i < len; ++i) r[sizeof h + i] = static_cast<char>(mix_byte(key, i));
  return r;
}
// The file sent with send_file: filler records, so that any whole number of them is a valid
// piece of the stream (what a poster sends with ConnRef::send_file).
std::string make_file_content() {
  std::string f(kFileSize, '\0');
  for (std::size_t k = 0; k < kFileRecords; ++k) {
    const Header h{kFiller, 0, 0, static_cast<std::uint32_t>(k), kFillerSize - sizeof(Header), 0};
    std::memcpy(&f[k * kFillerSize], &h, sizeof h);
    for (std::size_t i = sizeof h; i < kFillerSize; ++i) {
      f[k * kFillerSize + i] = static_cast<char>(mix_byte(k * 7919 + 13, i));
    }
  }
  return f;
}

enum class Target { peer_tcp, peer_unix, refused, missing };

// One byte stream between a peer socket and evloop, across the connections (epochs) it passes
// through by detach and adopt.
struct Stream {
  std::uint64_t id = 0;
  bool from_peer = false;  // the peer dialled the server; else the loop dialled (Target)
  Target target = Target::peer_tcp;
  bool unix_socket = false;
  ConnRef ref;  // the current connection
  bool live = false;  // its first bytes (a dialled peer's hello) are queued: others may follow
  unsigned epoch = 0;
  std::vector<std::uint32_t> counted;  // per epoch: records the loop side wrote (source 0)
  std::vector<std::array<std::uint32_t, kPosters>> posted;  // per epoch: ConnRef::write seqs
  std::uint64_t input_consumed = 0;  // the peer's bytes `data` consumed (after the hello)
  std::int64_t input_at_eof = -1;    // consumed + unconsumed tail when `eof` came
  bool dial_started = false, dial_empty = false, opened = false, failed = false;
  bool dial_opened = false, dial_failed = false;  // the first connection's (epoch 0) outcome
  std::string excused;  // why a clean EOF need not bring every byte
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
  bool shut_write = false;   // shutdown_write() called: later writes are ignored
  bool detaching = false;    // detach() said yes: close, abort, shutdown_write are ignored
  bool paused = false;       // pause_reading() without resume_reading() since: no `data`
  std::size_t tail = 0;      // bytes the last `data` left unconsumed (handed again next time)
};

struct Config {
  std::uint64_t seed;
  int max_ops;             // loop-side operations before the stop
  Clock::duration run_cap;  // the stop comes by then at the latest
  std::size_t large_max;   // largest payload of a large write
  int max_peers, max_dials;
  std::size_t stream_budget;  // bytes the loop side writes to one stream at most
};

struct Model;
thread_local Rng* t_rng = nullptr;
Handlers make_handlers(Model& m, std::uint64_t stream, unsigned epoch, bool eof_handler);

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

ConnCtx* ctx_of(Model& m, Conn& c) {
  auto it = m.info.find(c.id());
  return it == m.info.end() ? nullptr : &it->second;
}

void half_close(Conn& c, ConnCtx& x) {
  if (!x.detaching) x.shut_write = true;  // ignored after a detach that said yes
  c.shutdown_write();
}

std::size_t pick_size(Model& m, Rng& rng) {
  switch (rng() % 4) {
    case 0: return rng() % 64;
    case 1: return rng() % 4096;
    case 2: return 16 * 1024 + rng() % (m.cfg.large_max - 16 * 1024);  // write-through sizes
    default: return rng() % 40000;
  }
}

// A write on the loop thread, recorded as counted when the connection takes writes.
void loop_write(Model& m, Stream& s, Conn& c, ConnCtx& x, Rng& rng) {
  if (m.written[s.id] > m.cfg.stream_budget) return;
  const bool takes = (c.state() == ConnState::open || c.state() == ConnState::connecting) &&
                     !x.shut_write;
  std::uint32_t& next = s.counted_at(x.epoch);
  const std::uint32_t seq = next;  // an ignored write reuses it: if it arrived, it would show
  const int how = static_cast<int>(rng() % 6);
  if (how == 5 && rng() % 40 == 0) {  // a pipe cannot be read at an offset: reset with ESPIPE
    int p[2];
    if (::pipe2(p, O_CLOEXEC) == 0) {
      (void)!::write(p[1], "pipe", 4);
      ::close(p[1]);
      c.send_file(TakeFd{p[0]}, 0, rng() % 2 ? 4 : 64 * 1024);
    }
    s.note("c" + std::to_string(c.id()) + " send_file of a pipe");
    return;
  }
  if (how == 5) {  // a file range, announced by a header record
    const std::size_t len = 1 + rng() % (rng() % 2 ? 16 * 1024 : m.cfg.large_max);
    // Now and then a range past the file's end: the connection resets (file_truncated), and the
    // peer gets a prefix of the file's bytes, never a byte past its end or a clean EOF.
    const std::size_t off = rng() % 40 == 0 ? kFileSize - len / 2 : rng() % (kFileSize - len);
    const Header h{kFileHead, 0, static_cast<std::uint16_t>(x.epoch), seq,
                   static_cast<std::uint32_t>(len), static_cast<std::uint32_t>(off)};
    c.write(header_bytes(h));
    if (rng() % 2) {
      c.send_file(m.file_fd, off, len);
    } else {
      c.send_file(TakeFd{::fcntl(m.file_fd, F_DUPFD_CLOEXEC, 0)}, off, len);
    }
    m.written[s.id] += len;
    ++m.files;
  } else {
    std::string r = make_record(s.id, x.epoch, 0, seq, pick_size(m, rng));
    m.written[s.id] += r.size();
    if (how == 4) {
      c.write(SharedBuffer(std::move(r)));
    } else if (how == 3) {
      c.write(std::span<const std::byte>(reinterpret_cast<const std::byte*>(r.data()), r.size()));
    } else {
      c.write(r);
    }
  }
  if (takes) ++next;
  s.note("c" + std::to_string(c.id()) + " write#" + std::to_string(seq) + " kind" +
         std::to_string(how) + (takes ? "" : " ignored") + " st" +
         std::to_string(static_cast<int>(c.state())));
}

void dial(Model& m, Loop& loop, Rng& rng);

// Per-connection options at random: small buffers and water marks, and now and then a limit or
// a timeout that this run's traffic can reach.
ConnOptions random_options(Rng& rng) {
  ConnOptions o;
  o.close_timeout = 2s;
  const unsigned w = rng() % 3;
  o.write_through = w == 0 ? 1 : w == 1 ? 16 * 1024 : 32 * 1024;
  if (rng() % 4 == 0) o.socket_send_buffer = 4096;
  if (rng() % 4 == 0) o.socket_receive_buffer = 4096;
  if (rng() % 4 == 0) o.output_high_water = 64 * 1024, o.output_low_water = 16 * 1024;
  if (rng() % 12 == 0) {
    o.output_limit = 256 * 1024;
    o.output_high_water = std::min<std::size_t>(o.output_high_water, 128 * 1024);
    o.output_low_water = std::min<std::size_t>(o.output_low_water, 32 * 1024);
  }
  if (rng() % 12 == 0) o.input_limit = 8 * 1024;
  if (rng() % 12 == 0) o.idle_timeout = std::chrono::milliseconds(50 + rng() % 300);
  if (rng() % 12 == 0) o.idle_counts_sends = true;
  if (rng() % 12 == 0) o.send_timeout = std::chrono::milliseconds(50 + rng() % 300);
  if (rng() % 20 == 0) o.close_timeout = std::chrono::milliseconds(20 + rng() % 200);
  return o;
}

void detach_to_other_loop(Model& m, Stream& s, Conn& c, ConnCtx& x, Rng& rng) {
  const std::size_t to = rng() % 4 == 0 ? c.loop().index() : 1 - c.loop().index();
  Loop* target = m.loops[to] != nullptr ? m.loops[to] : &c.loop();
  const bool eof_handler = rng() % 2 == 0;
  const ConnOptions options = random_options(rng);
  const bool off_loop = rng() % 3 == 0;
  const bool ok = c.detach([&m, id = s.id, epoch = x.epoch + 1, target, eof_handler, options,
                            off_loop](DetachedConn d) {
    std::lock_guard lock(m.mu);
    if (off_loop) {  // adopted later by a poster thread
      m.handoffs.push_back({std::move(d), id, epoch, options, eof_handler});
      return;
    }
    AdoptOptions o;
    static_cast<ConnOptions&>(o) = options;
    o.input = std::move(d.input);
    o.output = std::move(d.output);
    const ConnRef r = target->adopt(d.release(), make_handlers(m, id, epoch, eof_handler), o);
    if (!r) m.streams[id].excused = "adopt refused (loop stopping): its output was dropped";
    if (r) m.adoptions.push_back(r.id());
    ++m.adopts;
  });
  if (ok) ++m.detaches, x.detaching = true;
  s.note("c" + std::to_string(c.id()) + (ok ? " detach" : " detach refused"));
}

// One random operation on a random connection of `loop`, on its thread.
void loop_op(Model& m, Loop& loop, Rng& rng, int depth) {
  std::lock_guard lock(m.mu);
  const int n = ++m.ops;
  m.ticks.add();
  if (n == m.cfg.max_ops) {
    if (rng() % 3 == 0) {
      m.stop();  // from a loop thread
    } else {
      m.stop_wanted.add();
    }
  }
  if (rng() % 10 == 0) return dial(m, loop, rng);
  std::vector<Stream*> mine;
  for (auto& [id, s] : m.streams) {
    if (s.live && s.ref.loop() == &loop && s.ref.get() != nullptr) mine.push_back(&s);
  }
  if (mine.empty()) return;
  Stream& s = *mine[rng() % mine.size()];
  Conn& c = *s.ref.get();
  ConnCtx* x = ctx_of(m, c);
  if (x == nullptr || x->stream != s.id || c.id() != s.ref.id()) {
    return m.violation("ref of stream " + std::to_string(s.id) + " names another connection");
  }
  const unsigned r = rng() % 100;
  if (r < 50) {
    loop_write(m, s, c, *x, rng);
  } else if (r < 60) {
    c.pause_reading();
    x->paused = true;
    if (!c.reading_paused()) m.violation("reading_paused() false after pause_reading()");
  } else if (r < 72) {
    c.resume_reading();
    x->paused = false;
  } else if (r < 75) {
    s.note("c" + std::to_string(c.id()) + " shutdown_write");
    half_close(c, *x);
  } else if (r < 78) {
    s.note("c" + std::to_string(c.id()) + " close");
    c.close();
  } else if (r < 80) {
    s.note("c" + std::to_string(c.id()) + " abort");
    if (s.unix_socket) s.excused = "aborted (a Unix peer sees an EOF)";
    ++m.aborts;
    c.abort();
  } else if (r < 87) {
    detach_to_other_loop(m, s, c, *x, rng);
  } else if (r < 89 && depth == 0) {
    for (int i = 0; i < 8; ++i) loop_op(m, loop, rng, depth + 1);  // a burst in one handler
  } else if (r < 90) {
    const auto delay = std::chrono::microseconds(rng() % 3000);
    loop.run_after(delay, [&m, &loop] {
      if (t_rng != nullptr) loop_op(m, loop, *t_rng, 0);
    });
  }
}

void dial(Model& m, Loop& loop, Rng& rng) {
  std::lock_guard lock(m.mu);
  if (m.dials >= m.cfg.max_dials) return;
  ++m.dials;
  const unsigned r = rng() % 10;
  const Target t = r < 4 ? Target::peer_tcp : r < 7 ? Target::peer_unix : r < 9 ? Target::refused
                                                                                 : Target::missing;
  Stream& s = m.new_stream(false, t);
  const std::string& address = t == Target::peer_tcp && rng() % 4 == 0 ? m.tcp_peer_by_name
                               : t == Target::peer_tcp  ? m.tcp_peer
                               : t == Target::peer_unix ? m.unix_peer
                               : t == Target::refused   ? m.refused
                                                        : m.missing;
  ConnectOptions o;
  static_cast<ConnOptions&>(o) = random_options(rng);
  o.connect_timeout = 3s;
  const bool after_wait = m.after_wait;
  const ConnRef ref = loop.connect(address, make_handlers(m, s.id, 0, rng() % 2 == 0), o);
  if (ref && after_wait) m.violation("a dial was accepted after wait() returned");
  s.dial_started = true;
  s.dial_empty = !ref;
  if (!ref) return;
  m.info[ref.id()] = ConnCtx{s.id, 0};
  if (t == Target::peer_tcp || t == Target::peer_unix) {
    // The peer learns its stream from a hello, the first bytes: written while connecting, on the
    // loop thread at once, from another thread in a task (which runs after the dial started).
    s.ref = ref;
    const std::uint64_t id = s.id;
    s.note("dial " + address + ": c" + std::to_string(ref.id()));
    if (loop.in_loop_thread()) {
      if (Conn* c = ref.get()) c->write(&id, sizeof id), s.live = true;
    } else {
      ref.post([&m, id](Conn& c) {
        std::lock_guard hold(m.mu);
        c.write(&id, sizeof id);
        m.streams[id].live = true;
        m.streams[id].note("hello written, state " + std::to_string(static_cast<int>(c.state())));
      });
    }
  }
  if (rng() % 6 == 0) {
    if (rng() % 2) {
      ref.close();  // cancels while connecting (or closes an open connection)
    } else {
      loop.run_after(std::chrono::microseconds(rng() % 2000), [ref] { ref.abort(); });
      if (s.unix_socket) s.excused = "aborted (a Unix peer sees an EOF)";
    }
  }
}

Handlers make_handlers(Model& m, std::uint64_t stream, unsigned epoch, bool eof_handler) {
  Handlers h;
  h.opened = [&m, stream, epoch](Conn& c) {
    std::lock_guard lock(m.mu);
    ConnEvents& e = m.event(c, "opened");
    if (e.opened++ > 0) m.violation("opened twice, conn " + std::to_string(c.id()));
    if (c.state() != ConnState::open) {
      m.violation("state " + std::to_string(static_cast<int>(c.state())) + " in opened");
    }
    ConnCtx& x = m.info[c.id()];
    x.stream = stream;
    x.epoch = epoch;
    if (stream == 0) return;
    Stream& s = m.streams[stream];
    if (s.target == Target::refused || s.target == Target::missing) {
      m.violation("a dial to nowhere opened, stream " + std::to_string(stream));
    }
    s.ref = c.ref();
    s.epoch = epoch;
    s.opened = true;
    s.note("c" + std::to_string(c.id()) + " opened, epoch " + std::to_string(epoch));
    if (epoch == 0) s.dial_opened = true;
    if (epoch > 0) s.live = true;  // adopted
  };
  h.data = [&m](Conn& c, std::string_view bytes) -> std::size_t {
    std::lock_guard lock(m.mu);
    const ConnEvents& e = m.event(c, "data");
    ConnCtx* x = ctx_of(m, c);
    if (x == nullptr || e.opened == 0) {
      m.violation("data before opened");
      return bytes.size();
    }
    if (e.eofs > 0) m.violation("data after eof, conn " + std::to_string(c.id()));
    if (x->paused) m.violation("data while reading is paused, conn " + std::to_string(c.id()));
    std::size_t used = 0;
    if (x->stream == 0) {  // an accepted connection: the peer's hello names its stream
      if (bytes.size() < sizeof(std::uint64_t)) return 0;
      std::uint64_t id = 0;
      std::memcpy(&id, bytes.data(), sizeof id);
      auto it = m.streams.find(id);
      if (it == m.streams.end() || !it->second.from_peer || it->second.ref) {
        m.violation("a hello names no waiting stream: " + std::to_string(id));
        c.abort();
        return bytes.size();
      }
      x->stream = id;
      it->second.ref = c.ref();
      it->second.opened = true;
      it->second.live = true;
      used = sizeof id;
    }
    Stream& s = m.streams[x->stream];
    for (std::size_t i = used; i < bytes.size(); ++i) {
      const std::uint64_t at = s.input_consumed + (i - used);
      if (static_cast<std::uint8_t>(bytes[i]) != input_byte(s.id, at)) {
        m.violation("stream " + std::to_string(s.id) + ": input byte " + std::to_string(at) +
                    " is wrong (epoch " + std::to_string(x->epoch) + ")");
        c.abort();
        return bytes.size();
      }
    }
    Rng& rng = *t_rng;
    std::size_t take = bytes.size();
    const unsigned keep = rng() % 30;
    if (keep < 10) take -= std::min<std::size_t>(take - used, rng() % 100);  // keep a tail
    if (keep == 10) take = used;  // keep everything (input_limit may end it)
    const std::size_t returned = keep == 11 ? bytes.size() + 100 : take;  // counts as all
    s.input_consumed += take - used;
    x->tail = bytes.size() - take;
    if (rng() % 8 == 0) loop_op(m, c.loop(), rng, 0);
    return returned;
  };
  if (eof_handler) {
    h.eof = [&m](Conn& c) {
      std::lock_guard lock(m.mu);
      if (m.event(c, "eof").eofs++ > 0) m.violation("eof twice, conn " + std::to_string(c.id()));
      ConnCtx* x = ctx_of(m, c);
      const unsigned r = (*t_rng)() % 3;
      if (x != nullptr && x->stream != 0) {
        Stream& s = m.streams[x->stream];
        s.input_at_eof = static_cast<std::int64_t>(s.input_consumed + x->tail);
        m.streams[x->stream].note("c" + std::to_string(c.id()) + " eof, then " +
                                  (r == 0 ? "close" : r == 1 ? "shutdown_write" : "nothing"));
      }
      if (r == 0) c.close();
      if (r == 1 && x != nullptr) half_close(c, *x);
      if (r == 2 && x != nullptr && x->stream != 0) {
        Stream& s = m.streams[x->stream];
        if ((*t_rng)() % 2 && s.ref == c.ref()) detach_to_other_loop(m, s, c, *x, *t_rng);
      }
    };
  }
  // What a handler may call on a connection that has ended: every call is ignored, nothing runs.
  const auto poke_ended = [&m](Conn& c) {
    const unsigned r = (*t_rng)() % 8;
    if (r == 0) c.write("ignored");
    if (r == 1) c.write(SharedBuffer(std::string(20000, 'x')));
    if (r == 2) c.send_file(TakeFd{::fcntl(m.file_fd, F_DUPFD_CLOEXEC, 0)}, 0, 100);
    if (r == 3) c.close(), c.abort(), c.shutdown_write();
    if (r == 4) c.pause_reading(), c.resume_reading();
    if (r == 5 && c.detach([](DetachedConn) {})) m.violation("detach() said yes in closed");
    if (r == 6) {
      c.ref().post([&m](Conn&) { m.violation("a post to an ended connection ran"); });
    }
  };
  h.all_sent = [&m](Conn& c) {
    std::lock_guard lock(m.mu);
    m.event(c, "all_sent");
    if (c.output_pending() != 0) {
      m.violation("all_sent with " + std::to_string(c.output_pending()) + " bytes pending");
    }
  };
  h.low_water = [&m](Conn& c) {
    std::lock_guard lock(m.mu);
    m.event(c, "low_water");
  };
  h.closed = [&m, poke_ended](Conn& c, std::error_code error) {
    std::lock_guard lock(m.mu);
    ConnEvents& e = m.event(c, "closed");
    if (e.opened != 1) m.violation("closed without opened, conn " + std::to_string(c.id()));
    ++e.closed;
    const ConnState want = error == errc::detached ? ConnState::detached : ConnState::closed;
    if (c.state() != want) {
      m.violation("state " + std::to_string(static_cast<int>(c.state())) + " in closed (" +
                  error.message() + ")");
    }
    if (c.ref().get() != nullptr && c.ref().get() != &c) m.violation("ref names another conn");
    poke_ended(c);
    ConnCtx* x = ctx_of(m, c);
    if (x == nullptr || x->stream == 0) return;
    Stream& s = m.streams[x->stream];
    s.note("c" + std::to_string(c.id()) + " closed: " + (error ? error.message() : "clean"));
    ++m.endings[error ? error.message() : "clean"];
    static const std::error_code documented[] = {
        {},
        make_error_code(errc::output_limit),
        make_error_code(errc::input_limit),
        make_error_code(errc::server_stopped),
        make_error_code(errc::close_timeout),
        make_error_code(errc::idle_timeout),
        make_error_code(errc::send_timeout),
        make_error_code(errc::shutdown_timeout),
        make_error_code(errc::file_truncated),
        make_error_code(errc::detached)};
    if (std::find(std::begin(documented), std::end(documented), error) == std::end(documented) &&
        error != std::errc::connection_reset && error != std::errc::broken_pipe &&
        error != std::errc::invalid_seek) {
      m.violation("stream " + std::to_string(s.id) + ": closed with " + error.message());
    }
    // A Unix socket shows a reset as an EOF: only a clean close or a stop promises every byte.
    if (s.unix_socket && error && error != errc::detached && error != errc::server_stopped) {
      s.excused = "a Unix socket closed with " + error.message();
    }
  };
  h.connect_failed = [&m, stream, epoch, poke_ended](Conn& c, std::error_code error) {
    std::lock_guard lock(m.mu);
    ConnEvents& e = m.event(c, "connect_failed");
    if (e.opened > 0) m.violation("connect_failed after opened, conn " + std::to_string(c.id()));
    ++e.failed;
    if (c.state() != ConnState::closed) {
      m.violation("state " + std::to_string(static_cast<int>(c.state())) + " in connect_failed");
    }
    poke_ended(c);
    Stream& s = m.streams[stream];
    s.failed = true;
    s.failed_error = error;
    s.note("c" + std::to_string(c.id()) + " connect_failed: " + error.message());
    ++m.endings["failed: " + error.message()];
    if (epoch == 0) s.dial_failed = true;
    if (epoch > 0) s.excused = "adoption failed (" + error.message() + "): its output dropped";
    // A peer may reset a connection before it has opened: a dial's handshake done, or a
    // detached socket waiting to be adopted (which fails with ENOTCONN or ECONNRESET then). A
    // reset that follows the peer's FIN reads as EPIPE (Linux's tcp_reset() in CLOSE_WAIT).
    const bool peer = s.target == Target::peer_tcp || s.target == Target::peer_unix;
    const bool expected = error == errc::cancelled || error == errc::server_stopped ||
                          error == errc::output_limit ||    // written while connecting
                          error == errc::file_truncated ||  // a file range queued then
                          error == std::errc::invalid_seek ||  // ... or a pipe
                          (peer && (error == std::errc::connection_reset ||
                                    error == std::errc::broken_pipe)) ||  // EPIPE: a reset
                                                                          // after its FIN
                          (epoch > 0 && error == std::errc::not_connected) ||
                          (s.target == Target::refused && error == std::errc::connection_refused) ||
                          (s.target == Target::missing && error == std::errc::no_such_file_or_directory);
    if (!expected) {
      m.violation("stream " + std::to_string(stream) + ", epoch " + std::to_string(epoch) +
                  ", target " + std::to_string(static_cast<int>(s.target)) +
                  ": connect_failed with " + error.message() + "; log: " + s.log);
    }
  };
  return h;
}

// ----- the peers: plain non-blocking sockets, one thread.

struct Peer {
  int fd = -1;
  bool from_peer = false;
  std::uint64_t stream = 0;  // for a peer the loop dialled: 0 until the hello
  std::string hello;         // the first 8 bytes of what evloop sends a dialled peer
  unsigned char head[sizeof(Header)];
  std::size_t head_got = 0;
  Header cur{};
  std::size_t body_pos = 0;
  bool in_body = false;
  unsigned epoch_seen = 0;
  std::map<std::pair<unsigned, unsigned>, std::uint32_t> next_seq;  // (epoch, source) -> next
  std::uint64_t received = 0;
  std::string out;          // hello still to send
  std::uint64_t sent = 0;   // pattern bytes sent
  std::uint64_t send_budget = 0;
  int slow = 0;             // bytes per read when > 0
  int deaf = 0;             // rounds left without reading
  bool eof = false, reset = false, gone = false, shut = false, broken = false;
};

class Peers {
 public:
  Peers(Model& m, std::uint64_t seed, const std::string& file)
      : m_(m), rng_(seed ^ 0x77), file_(file) {}
  ~Peers() {
    for (Peer& p : peers_) {
      if (p.fd >= 0) ::close(p.fd);
    }
    if (tcp_listener_ >= 0) ::close(tcp_listener_);
    if (unix_listener_ >= 0) ::close(unix_listener_);
    if (!unix_path_.empty()) ::unlink(unix_path_.c_str());
  }

  bool listen() {
    tcp_listener_ = test::open_stream_socket(AF_INET, true);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(tcp_listener_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(tcp_listener_, 256) != 0 ||
        ::getsockname(tcp_listener_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      return false;
    }
    m_.tcp_peer = "tcp://127.0.0.1:" + std::to_string(ntohs(a.sin_port));
    // Resolved on the group's resolver threads (localhost may name ::1 first: refused, then on).
    m_.tcp_peer_by_name = "tcp://localhost:" + std::to_string(ntohs(a.sin_port));
    unix_path_ = test::temp_socket_path("stress-peer");
    unix_listener_ = test::open_stream_socket(AF_UNIX, true);
    sockaddr_un u{};
    u.sun_family = AF_UNIX;
    std::snprintf(u.sun_path, sizeof u.sun_path, "%s", unix_path_.c_str());
    if (::bind(unix_listener_, reinterpret_cast<sockaddr*>(&u), sizeof u) != 0 ||
        ::listen(unix_listener_, 2) != 0) {  // a small backlog: dials wait for room
      return false;
    }
    m_.unix_peer = "unix://" + unix_path_;
    return true;
  }

  void set_server(SocketAddress tcp, SocketAddress unix_address) {
    server_tcp_ = tcp;
    server_unix_ = unix_address;
  }

  // Runs until the group has stopped and every peer has seen its end, or `limit` after wait().
  void run(std::chrono::milliseconds limit) {
    Clock::time_point drain_deadline{};
    for (;;) {
      const bool stopped = m_.after_wait.load();
      if (stopped && drain_deadline == Clock::time_point{}) {
        drain_deadline = Clock::now() + limit;
        for (Peer& p : peers_) p.slow = 0, p.deaf = 0;
      }
      if (stopped) {
        accept_all();
        if (all_ended()) return;
        if (Clock::now() > drain_deadline) {
          for (Peer& p : peers_) {
            if (!p.gone && !p.eof && !p.reset) {
              m_.violation("peer of stream " + std::to_string(p.stream) +
                           " saw no end of its connection after wait() returned");
            }
          }
          return;
        }
      } else {
        if (!m_.stop_called && peers_started_ < m_.cfg.max_peers && rng_() % 8 == 0) connect();
        accept_all();
      }
      poll_round(stopped);
    }
  }

  std::vector<Peer>& peers() { return peers_; }

 private:
  bool all_ended() const {
    for (const Peer& p : peers_) {
      if (!p.gone && !p.eof && !p.reset) return false;
    }
    return true;
  }

  void connect() {
    const bool unix_socket = rng_() % 3 == 0;
    std::uint64_t id = 0;
    {
      std::lock_guard lock(m_.mu);
      Stream& s = m_.new_stream(true, unix_socket ? Target::peer_unix : Target::peer_tcp);
      id = s.id;
    }
    const SocketAddress& to = unix_socket ? server_unix_ : server_tcp_;
    const int fd = test::open_stream_socket(to.family());
    if (fd < 0) return m_.violation("peer socket: " + std::string(std::strerror(errno)));
    timeval tv{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (rng_() % 4 == 0) set_receive_buffer(fd, 4096);
    ++peers_started_;
    if (::connect(fd, static_cast<const sockaddr*>(to.data()), static_cast<socklen_t>(to.size())) !=
        0) {
      ::close(fd);  // the server stopped meanwhile (its listeners close when the stop begins)
      return;
    }
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    Peer& p = add(fd);
    p.from_peer = true;
    p.stream = id;
    p.out.assign(reinterpret_cast<const char*>(&id), sizeof id);
  }

  Peer& add(int fd) {
    Peer& p = peers_.emplace_back();
    p.fd = fd;
    p.send_budget = rng_() % 3 == 0 ? 0 : rng_() % (256 * 1024);
    if (rng_() % 3 == 0) p.slow = 1 + static_cast<int>(rng_() % 4096);
    return p;
  }

  void accept_all() {
    // Now and then the Unix listener is not served for a while: its backlog fills, and dials to
    // it wait for room (asked again by the loop) until accepted, cancelled or stopped.
    if (unix_deaf_ > 0) --unix_deaf_;
    if (!m_.after_wait && unix_deaf_ == 0 && rng_() % 500 == 0) unix_deaf_ = 20 + rng_() % 200;
    if (m_.after_wait) unix_deaf_ = 0;
    for (const int l : {tcp_listener_, unix_listener_}) {
      if (l == unix_listener_ && unix_deaf_ > 0) continue;
      for (;;) {
        const int fd = ::accept4(l, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) break;
        add(fd);
      }
    }
  }

  void poll_round(bool stopped) {
    std::vector<pollfd> fds;
    std::vector<std::size_t> which;
    for (std::size_t i = 0; i < peers_.size(); ++i) {
      Peer& p = peers_[i];
      if (p.gone || p.eof || p.reset) continue;
      if (p.deaf > 0) {
        --p.deaf;
        continue;
      }
      fds.push_back({p.fd, POLLIN, 0});
      which.push_back(i);
    }
    fds.push_back({tcp_listener_, POLLIN, 0});
    fds.push_back({unix_listener_, POLLIN, 0});
    ::poll(fds.data(), fds.size(), 1);
    for (std::size_t k = 0; k < which.size(); ++k) {
      Peer& p = peers_[which[k]];
      if (fds[k].revents != 0) read_from(p);
      if (!stopped && !p.reset && !p.gone) act(p);
    }
  }

  void read_from(Peer& p) {
    char buf[65536];
    for (int rounds = 0; rounds < 8; ++rounds) {
      const std::size_t want = p.slow > 0 ? static_cast<std::size_t>(p.slow) : sizeof buf;
      const ssize_t n = ::recv(p.fd, buf, want, 0);
      if (n > 0) {
        consume(p, buf, static_cast<std::size_t>(n));
        if (p.slow > 0) return;
        continue;
      }
      if (n == 0) {
        p.eof = true;
      } else if (errno == ECONNRESET || errno == EPIPE) {
        p.reset = true;
      } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        m_.violation("peer recv: " + std::string(std::strerror(errno)));
        p.reset = true;
      }
      return;
    }
  }

  // What a peer does now and then while the group runs.
  void act(Peer& p) {
    if (!p.out.empty()) {
      const ssize_t n = ::send(p.fd, p.out.data(), p.out.size(), test::kSendFlags);
      if (n > 0) p.out.erase(0, static_cast<std::size_t>(n));
      if (n < 0) sent_error(p);
      return;
    }
    if (!p.shut && p.sent < p.send_budget && rng_() % 4 == 0) {
      // A dialled peer's input is checked once it knows its stream; until then it sends nothing.
      if (p.stream == 0) return;
      char buf[8192];
      const std::size_t n = std::min<std::uint64_t>(1 + rng_() % sizeof buf, p.send_budget - p.sent);
      for (std::size_t i = 0; i < n; ++i) buf[i] = static_cast<char>(input_byte(p.stream, p.sent + i));
      const ssize_t r = ::send(p.fd, buf, n, test::kSendFlags);
      if (r > 0) p.sent += static_cast<std::uint64_t>(r);
      if (r < 0 && sent_error(p)) return;
    }
    const unsigned r = rng_() % 4000;
    if (r < 3) {
      reset_close(p.fd);
      p.fd = -1;
      p.gone = true;
    } else if (r < 5) {
      ::close(p.fd);
      p.fd = -1;
      p.gone = true;
    } else if (r < 25 && !p.shut) {
      ::shutdown(p.fd, SHUT_WR);
      p.shut = true;
    } else if (r < 45) {
      p.deaf = static_cast<int>(rng_() % 30);
    } else if (r < 55) {
      p.slow = p.slow > 0 ? 0 : 1 + static_cast<int>(rng_() % 4096);
    }
  }

  // A send that fails takes the socket's pending error (a reset): a later recv would say EOF.
  bool sent_error(Peer& p) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return false;
    p.reset = true;
    return true;
  }

  void bad(Peer& p, const std::string& what) {
    if (!p.broken) m_.violation("peer of stream " + std::to_string(p.stream) + ": " + what);
    p.broken = true;
  }

  void consume(Peer& p, const char* data, std::size_t n) {
    p.received += n;
    while (n > 0 && !p.broken) {
      if (!p.from_peer && p.hello.size() < sizeof(std::uint64_t)) {
        const std::size_t k = std::min(n, sizeof(std::uint64_t) - p.hello.size());
        p.hello.append(data, k);
        data += k, n -= k;
        if (p.hello.size() == sizeof(std::uint64_t)) std::memcpy(&p.stream, p.hello.data(), 8);
        continue;
      }
      if (!p.in_body) {
        const std::size_t k = std::min(n, sizeof p.head - p.head_got);
        std::memcpy(p.head + p.head_got, data, k);
        p.head_got += k, data += k, n -= k;
        if (p.head_got < sizeof p.head) continue;
        p.head_got = 0;
        std::memcpy(&p.cur, p.head, sizeof p.cur);
        start_record(p);
        p.in_body = true;
        p.body_pos = 0;
        if (p.cur.len == 0) p.in_body = false;
        continue;
      }
      const std::size_t k = std::min<std::size_t>(n, p.cur.len - p.body_pos);
      check_body(p, data, k);
      p.body_pos += k, data += k, n -= k;
      if (p.body_pos == p.cur.len) p.in_body = false;
    }
  }

  void start_record(Peer& p) {
    const Header& h = p.cur;
    const std::string at = " (kind " + std::to_string(h.kind) + " source " +
                           std::to_string(h.source) + " epoch " + std::to_string(h.epoch) +
                           " seq " + std::to_string(h.seq) + " len " + std::to_string(h.len) + ")";
    if (h.kind == kFiller) {
      if (h.len != kFillerSize - sizeof(Header) || h.seq >= kFileRecords || h.source != 0) {
        bad(p, "bad filler header" + at);
      }
      return;
    }
    if ((h.kind != kWrite && h.kind != kFileHead) || h.source > kPosters || h.len > (8u << 20) ||
        (h.kind == kFileHead && (h.source != 0 || h.param >= kFileSize))) {
      return bad(p, "not a record header" + at);
    }
    if (h.epoch < p.epoch_seen) return bad(p, "a record of an earlier epoch" + at);
    p.epoch_seen = h.epoch;
    std::uint32_t& next = p.next_seq[{h.epoch, h.source}];
    if (h.seq != next) return bad(p, "expected seq " + std::to_string(next) + at);
    ++next;
  }

  void check_body(Peer& p, const char* data, std::size_t k) {
    const Header& h = p.cur;
    for (std::size_t i = 0; i < k; ++i) {
      const std::size_t pos = p.body_pos + i;
      std::uint8_t want = 0;
      if (h.kind == kWrite) {
        want = mix_byte(record_key(p.stream, h.epoch, h.source, h.seq), pos);
      } else if (h.kind == kFileHead) {
        if (h.param + pos >= kFileSize) return bad(p, "a byte past the end of the file");
        want = static_cast<std::uint8_t>(file_[h.param + pos]);
      } else {
        want = static_cast<std::uint8_t>(file_[h.seq * kFillerSize + sizeof(Header) + pos]);
      }
      if (static_cast<std::uint8_t>(data[i]) != want) {
        return bad(p, "byte " + std::to_string(pos) + " of record kind " + std::to_string(h.kind) +
                          " source " + std::to_string(h.source) + " epoch " +
                          std::to_string(h.epoch) + " seq " + std::to_string(h.seq) + " is wrong");
      }
    }
  }

  Model& m_;
  Rng rng_;
  const std::string& file_;
  std::vector<Peer> peers_;
  int tcp_listener_ = -1, unix_listener_ = -1;
  std::string unix_path_;
  SocketAddress server_tcp_, server_unix_;
  int peers_started_ = 0;
  int unix_deaf_ = 0;  // poll rounds left without accepting on the Unix listener
};

// ----- the poster threads

void poster(Model& m, int index, std::uint64_t seed) {
  Rng rng(seed * 31 + static_cast<std::uint64_t>(index) + 1);
  long paced = 0;
  for (bool last = false; !last;) {
    last = m.after_wait.load();
    // About one operation per loop-side operation, so that the mix does not depend on how fast
    // this thread spins; after the stop, on at the pace of the timeout.
    m.ticks.wait_for(++paced, 2ms);
    paced = std::min(paced, m.ticks.value());
    ConnRef ref;
    std::uint64_t id = 0;
    unsigned epoch = 0;
    Loop* loop = nullptr;
    {
      std::lock_guard lock(m.mu);
      loop = m.loops[rng() % 2];
      std::vector<Stream*> refs;
      for (auto& [sid, s] : m.streams) {
        if (s.live) refs.push_back(&s);
      }
      if (!refs.empty()) {
        Stream& s = *refs[rng() % refs.size()];
        ref = s.ref, id = s.id, epoch = s.epoch;
      }
    }
    if (loop != nullptr && rng() % 2 == 0) {  // adopt a connection detached on a loop
      std::lock_guard lock(m.mu);
      if (!m.handoffs.empty()) {
        Model::Handoff h = std::move(m.handoffs.back());
        m.handoffs.pop_back();
        AdoptOptions o;
        static_cast<ConnOptions&>(o) = h.options;
        o.input = std::move(h.conn.input);
        o.output = std::move(h.conn.output);
        const ConnRef r =
            loop->adopt(h.conn.release(), make_handlers(m, h.stream, h.epoch, h.eof_handler), o);
        Stream& s = m.streams[h.stream];
        s.note("adopted from a poster: " + std::to_string(r.id()));
        if (r) m.adoptions.push_back(r.id());
        if (!r) s.excused = "adopt refused (loop stopped): its output was dropped";
        if (!r && !m.stop_called) m.violation("adopt refused before stop()");
        ++m.adopts;
        continue;
      }
    }
    if (loop == nullptr || !ref) {
      std::this_thread::yield();
      continue;
    }
    bool accepted = true;
    const unsigned r = rng() % 100;
    if (r < 25) {  // ConnRef::write, in order per poster
      std::string rec;
      {
        std::lock_guard lock(m.mu);
        Stream& s = m.streams[id];
        if (m.written[id] > m.cfg.stream_budget) continue;
        std::uint32_t& seq = s.posted_at(epoch, index);
        rec = make_record(id, epoch, 1 + static_cast<unsigned>(index), seq++, pick_size(m, rng));
        m.written[id] += rec.size();
      }
      accepted = r < 15 ? ref.write(std::move(rec)) : ref.write(SharedBuffer(std::move(rec)));
    } else if (r < 30) {  // filler records from the file, with the fd handed over
      const std::size_t first = rng() % kFileRecords;
      const std::size_t count = 1 + rng() % std::min<std::size_t>(kFileRecords - first, 16);
      accepted = ref.send_file(TakeFd{::fcntl(m.file_fd, F_DUPFD_CLOEXEC, 0)}, first * kFillerSize,
                               count * kFillerSize);
    } else if (r < 60) {  // a task on the connection
      accepted = ref.post([&m, ref, epoch](Conn& c) {
        std::lock_guard lock(m.mu);
        ++m.posts_ran;
        const ConnEvents& e = m.conns[c.id()];
        ConnCtx* x = ctx_of(m, c);
        if (c.id() != ref.id() || e.closed > 0 || x == nullptr || x->epoch != epoch) {
          return m.violation("a post ran for the wrong or a closed connection");
        }
        if (t_rng != nullptr) {
          if ((*t_rng)() % 2) {
            loop_write(m, m.streams[x->stream], c, *x, *t_rng);
          } else {
            loop_op(m, c.loop(), *t_rng, 0);
          }
        }
      });
    } else if (r < 63) {
      {
        std::lock_guard lock(m.mu);
        m.streams[id].note("post close to c" + std::to_string(ref.id()));
      }
      accepted = ref.close();
    } else if (r < 64) {
      {
        std::lock_guard lock(m.mu);
        Stream& s = m.streams[id];
        if (s.unix_socket) s.excused = "aborted (a Unix peer sees an EOF)";
        s.note("post abort to c" + std::to_string(ref.id()));
        ++m.aborts;
      }
      accepted = ref.abort();
    } else if (r < 66) {
      accepted = ref.post([&m](Conn& c) {
        std::lock_guard lock(m.mu);
        if (ConnCtx* x = ctx_of(m, c)) {
          m.streams[x->stream].note("c" + std::to_string(c.id()) + " posted shutdown_write");
          half_close(c, *x);
        }
      });
    } else if (r < 80) {
      accepted = loop->post([&m, loop] {
        if (t_rng != nullptr) loop_op(m, *loop, *t_rng, 0);
      });
    } else if (r < 88) {
      const TimerId t = loop->run_after(std::chrono::microseconds(rng() % 5000), [&m, loop] {
        if (t_rng != nullptr) loop_op(m, *loop, *t_rng, 0);
      });
      if (t != 0 && rng() % 3 == 0) loop->cancel(t);
      accepted = t != 0;
    } else if (r < 95) {
      dial(m, *loop, rng);
      continue;
    } else if (r < 96 && m.ops >= m.cfg.max_ops / 2) {
      m.stop();  // from a poster thread
      continue;
    } else {
      std::this_thread::yield();
      continue;
    }
    if (!accepted && !m.stop_called) m.violation("a post was refused before stop()");
    if (accepted && last) m.violation("a post was accepted after wait() returned");
  }
}

std::uint64_t base_seed() {
  if (const char* s = std::getenv("EVLOOP_STRESS_SEED")) return std::strtoull(s, nullptr, 0);
  return static_cast<std::uint64_t>(Clock::now().time_since_epoch().count()) % 1000000007ull;
}

class ConnStressTest : public AccountedTest {};

void run_seed(std::uint64_t seed, const std::string& file_content, const std::string& file_path) {
  Rng rng(seed);
  Config cfg{};
  cfg.seed = seed;
  cfg.max_ops = scaled(300, 120) + static_cast<int>(rng() % static_cast<std::uint64_t>(scaled(900, 300)));
  // Mostly a full run; now and then a stop that comes early, among the first dials.
  cfg.run_cap = std::chrono::milliseconds(rng() % 4 == 0 ? 20 + rng() % 200 : kSanitized ? 900 : 700);
  cfg.large_max = kSanitized ? 64 * 1024 : 160 * 1024;
  cfg.max_peers = scaled(40, 20);
  cfg.max_dials = scaled(40, 20);
  cfg.stream_budget = kSanitized ? 1 << 20 : 3 << 20;
  // A Server (listeners, accepted peers) most of the time; now and then a LoopGroup that only
  // dials and adopts.
  const bool group_mode = rng() % 4 == 0;
  if (group_mode) cfg.max_peers = 0;
  Model m(cfg);
  m.file_fd = ::open(file_path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(m.file_fd, 0);
  test::UnservedPort unserved;
  ASSERT_NE(unserved.port(), 0);
  m.refused = "tcp://127.0.0.1:" + std::to_string(unserved.port());
  m.missing = "unix://" + test::temp_socket_path("stress-missing");
  Peers peers(m, seed, file_content);
  ASSERT_TRUE(peers.listen());

  const std::string server_unix = test::temp_socket_path("stress-server");
  Options o = test::loopback_options(2);
  o.listen.push_back("unix://" + server_unix);
  o.reuseport = rng() % 2 == 0;
  o.balance = static_cast<Balance>(rng() % 3);
  // Small read buffers split the input anywhere; on io_uring, few provided buffers make receives
  // wait for one (ENOBUFS, asked again).
  const unsigned rb = rng() % 4;
  o.read_buffer_size = rb == 0 ? 1000 : rb == 1 ? 4096 : 64 * 1024;
  o.uring_buffers = rng() % 3 == 0 ? 1 : 0;
  o.shutdown_grace = std::chrono::milliseconds(100 + rng() % 600);
  static_cast<ConnOptions&>(o) = random_options(rng);
  Callbacks cb;
  static_cast<Handlers&>(cb) = make_handlers(m, 0, 0, rng() % 2 == 0);
  const int tick_us = 300 + static_cast<int>(rng() % 1500);
  cb.loop_started = [&m, seed, tick_us](Loop& loop) {
    static thread_local Rng loop_rng;
    loop_rng.seed(seed * 1000003 + loop.index());
    t_rng = &loop_rng;
    {
      std::lock_guard lock(m.mu);
      m.loops[loop.index()] = &loop;
    }
    loop.run_every(std::chrono::microseconds(tick_us), [&m, &loop] {
      if (m.ops < m.cfg.max_ops * 2) loop_op(m, loop, *t_rng, 0);
    });
  };
  std::optional<Server> server;
  std::optional<LoopGroup> group;
  Status started;
  if (group_mode) {
    LoopOptions lo;
    lo.loops = 2;
    lo.shutdown_grace = o.shutdown_grace;
    lo.read_buffer_size = o.read_buffer_size;
    lo.uring_buffers = o.uring_buffers;
    group.emplace(lo, static_cast<LoopHooks&>(cb));
    m.stop_loops = [&group] { group->stop(); };
    started = group->start();
  } else {
    server.emplace(o, cb);
    m.stop_loops = [&server] { server->stop(); };
    started = server->start();
  }
  ASSERT_TRUE(started) << started.message();
  if (server) peers.set_server(server->addresses().at(0), server->addresses().at(1));
  {
    std::lock_guard lock(m.mu);
    m.loops[0] = server ? &server->loop(0) : &group->loop(0);
    m.loops[1] = server ? &server->loop(1) : &group->loop(1);
  }

  // Nothing may hang: past this, the process aborts naming the seed.
  std::atomic<bool> finished{false};
  std::thread watchdog([&finished, seed] {
    const auto deadline = Clock::now() + 40s;
    while (!finished && Clock::now() < deadline) std::this_thread::sleep_for(10ms);
    if (!finished) {
      std::fprintf(stderr, "conn stress seed %llu: hung (no end within 40 s)\n",
                   static_cast<unsigned long long>(seed));
      std::abort();
    }
  });
  std::thread peer_thread([&peers] { peers.run(5s); });
  std::vector<std::thread> posters;
  for (int i = 0; i < kPosters; ++i) posters.emplace_back(poster, std::ref(m), i, seed);

  m.stop_wanted.wait_for(1, std::chrono::duration_cast<std::chrono::milliseconds>(cfg.run_cap));
  m.stop();
  const Status waited = server ? server->wait() : group->wait();
  m.after_wait = true;
  for (std::thread& t : posters) t.join();
  {
    std::lock_guard lock(m.mu);
    for (const Model::Handoff& h : m.handoffs) {
      m.streams[h.stream].excused = "detached, never adopted: its output was dropped";
    }
    m.handoffs.clear();  // closes their fds (the peers see an end)
  }
  peer_thread.join();
  finished = true;
  watchdog.join();
  EXPECT_TRUE(waited) << waited.message();
  // The loops' own accounts: nothing open or buffered, every opening and closing counted.
  const std::vector<LoopStats> stats = server ? server->stats() : group->stats();
  LoopStats total;
  for (const LoopStats& st : stats) total += st;
  long opened_events = 0, closed_events = 0, failed_events = 0;
  {
    std::lock_guard lock(m.mu);
    for (const auto& [id, e] : m.conns) {
      opened_events += e.opened, closed_events += e.closed, failed_events += e.failed;
    }
  }
  EXPECT_EQ(total.open_connections, 0u);
  EXPECT_EQ(total.output_buffered, 0u);
  EXPECT_EQ(total.input_buffered, 0u);
  EXPECT_EQ(total.opened, static_cast<std::uint64_t>(opened_events));
  EXPECT_EQ(total.closed, static_cast<std::uint64_t>(closed_events));
  EXPECT_EQ(total.dial_failures, static_cast<std::uint64_t>(failed_events));
  {
    std::lock_guard lock(m.mu);
    long dials_started = 0;
    for (const auto& [id, s] : m.streams) dials_started += s.dial_started && !s.dial_empty;
    EXPECT_EQ(total.dials, static_cast<std::uint64_t>(dials_started));
    EXPECT_EQ(total.adoptions, m.adoptions.size());
    EXPECT_EQ(total.detaches, static_cast<std::uint64_t>(m.endings["detached"]));
  }
  ::close(m.file_fd);
  ::unlink(server_unix.c_str());

  // The model against what happened.
  std::lock_guard lock(m.mu);
  for (const auto& [id, e] : m.conns) {
    if (e.opened == 1 && e.closed != 1) {
      m.violation("conn " + std::to_string(id) + " opened, closed " + std::to_string(e.closed) +
                  " times");
    }
    if (e.failed > 1 || (e.failed == 1 && (e.opened != 0 || e.closed != 0))) {
      m.violation("conn " + std::to_string(id) + ": connect_failed " + std::to_string(e.failed) +
                  ", opened " + std::to_string(e.opened));
    }
  }
  for (const std::uint64_t id : m.adoptions) {
    const ConnEvents& e = m.conns[id];
    if (e.opened + e.failed != 1) {
      m.violation("adoption " + std::to_string(id) + ": opened " + std::to_string(e.opened) +
                  ", connect_failed " + std::to_string(e.failed));
    }
  }
  for (const auto& [id, s] : m.streams) {
    if (s.dial_started && !s.dial_empty && s.dial_opened == s.dial_failed) {
      m.violation("dial of stream " + std::to_string(id) + ": opened " +
                  std::to_string(s.dial_opened) + ", failed " + std::to_string(s.dial_failed));
    }
    if (s.dial_empty && (s.opened || s.failed)) {
      m.violation("a dial that returned an empty ref ran a handler, stream " + std::to_string(id));
    }
  }
  long eof_checked = 0, bytes = 0, input_checked = 0;
  for (const Peer& p : peers.peers()) {
    bytes += static_cast<long>(p.received);
    if (p.shut && p.stream != 0) {  // every byte the peer sent before its FIN reached `data`
      auto it = m.streams.find(p.stream);
      if (it != m.streams.end() && it->second.input_at_eof >= 0) ++input_checked;
      if (it != m.streams.end() && it->second.input_at_eof >= 0 &&
          static_cast<std::uint64_t>(it->second.input_at_eof) != p.sent) {
        m.violation("stream " + std::to_string(p.stream) + ": eof after " +
                    std::to_string(it->second.input_at_eof) + " of the " +
                    std::to_string(p.sent) + " bytes the peer sent; log: " + it->second.log);
      }
    }
    if (!p.eof || p.gone || p.broken || p.stream == 0) continue;
    auto it = m.streams.find(p.stream);
    if (it == m.streams.end()) {
      m.violation("a peer names stream " + std::to_string(p.stream) + ", unknown");
      continue;
    }
    const Stream& s = it->second;
    if (!s.excused.empty()) continue;
    ++eof_checked;
    if (p.in_body || p.head_got > 0) {
      m.violation("stream " + std::to_string(s.id) + ": a clean EOF in the middle of a record; log: " +
                  s.log);
    }
    for (std::size_t e = 0; e < s.counted.size(); ++e) {
      const auto got = p.next_seq.find({static_cast<unsigned>(e), 0u});
      const std::uint32_t have = got == p.next_seq.end() ? 0 : got->second;
      if (have != s.counted[e]) {
        m.violation("stream " + std::to_string(s.id) + (s.unix_socket ? " (unix)" : " (tcp)") +
                    ": a clean EOF after " + std::to_string(have) + " of the " +
                    std::to_string(s.counted[e]) + " records written in epoch " +
                    std::to_string(e) + "; peer: " + (p.shut ? "shut its writing, " : "") +
                    std::to_string(p.received) + " bytes; log: " + s.log);
      }
    }
  }
  std::printf(
      "seed %llu (%s): %d ops, %zu streams, %zu connections, %ld dials, %ld detaches, %ld adopts, "
      "%ld file ranges, %ld aborts, %ld posts ran, %ld peer bytes, %ld clean EOFs checked, %ld "
      "inputs checked to the peer's FIN\n",
      static_cast<unsigned long long>(seed), group_mode ? "LoopGroup" : "Server", m.ops.load(), m.streams.size(), m.conns.size(),
      m.dials.load(), m.detaches.load(), m.adopts.load(), m.files.load(), m.aborts.load(),
      m.posts_ran.load(), bytes, eof_checked, input_checked);
  std::string endings;
  for (const auto& [what, n] : m.endings) endings += what + " " + std::to_string(n) + "; ";
  std::printf("seed %llu: endings: %s\n", static_cast<unsigned long long>(seed), endings.c_str());
  for (const std::string& v : m.violations) ADD_FAILURE() << "seed " << seed << ": " << v;
}

TEST_F(ConnStressTest, RandomOperationsOnTwoLoopsKeepEveryGuarantee) {
  const std::uint64_t seed = base_seed();
  const bool fixed = std::getenv("EVLOOP_STRESS_SEED") != nullptr;
  const int rounds = fixed ? 1 : scaled(3, 2);
  std::printf("conn stress: seed %llu (EVLOOP_STRESS_SEED=%llu reproduces it)\n",
              static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed));
  const std::string file_content = make_file_content();
  const std::string file_path = test::temp_socket_path("stress-file");
  {
    const int fd = ::open(file_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, file_content.data(), file_content.size()),
              static_cast<ssize_t>(file_content.size()));
    ::close(fd);
  }
  for (int r = 0; r < rounds && !HasFailure(); ++r) {
    SCOPED_TRACE("EVLOOP_STRESS_SEED=" + std::to_string(seed + static_cast<std::uint64_t>(r)));
    run_seed(seed + static_cast<std::uint64_t>(r), file_content, file_path);
  }
  ::unlink(file_path.c_str());
}

}  // namespace
}  // namespace evloop::fault
