// The conn stress test's operations: what the loop threads (timers, handlers) and the poster
// threads do to connections at random, and the handlers that record and check their events.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <thread>

#include "conn_stress_model.hpp"
#include "conn_stress_wire.hpp"

namespace evloop::fault::stress {

thread_local Rng* t_rng = nullptr;

void dial(Model& m, Loop& loop, Rng& rng);
void detach_to_other_loop(Model& m, Stream& s, Conn& c, ConnCtx& x, Rng& rng);

std::size_t pick_size(Model& m, Rng& rng) {
  switch (rng() % 4) {
    case 0:
      return rng() % 64;
    case 1:
      return rng() % 4096;
    case 2:
      return 16 * 1024 + rng() % (m.cfg.large_max - 16 * 1024);  // write-through sizes
    default:
      return rng() % 40000;
  }
}

// A write on the loop thread, recorded as counted when the connection takes writes.
void loop_write(Model& m, Stream& s, Conn& c, ConnCtx& x, Rng& rng) {
  if (m.written[s.id] > m.cfg.stream_budget) return;
  const bool takes =
      (c.state() == ConnState::open || c.state() == ConnState::connecting) && !x.shut_write;
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
    const Header h{kFileHead,
                   0,
                   static_cast<std::uint16_t>(x.epoch),
                   seq,
                   static_cast<std::uint32_t>(len),
                   static_cast<std::uint32_t>(off)};
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
  if (rng() % 5 == 0) o.idle_timeout = std::chrono::milliseconds(20 + rng() % 150);
  if (rng() % 12 == 0) o.idle_counts_sends = true;
  if (rng() % 5 == 0) o.send_timeout = std::chrono::milliseconds(20 + rng() % 150);
  if (rng() % 8 == 0) o.close_timeout = std::chrono::milliseconds(20 + rng() % 200);
  return o;
}

void detach_to_other_loop(Model& m, Stream& s, Conn& c, ConnCtx& x, Rng& rng) {
  const std::size_t to = rng() % 4 == 0 ? c.loop().index() : 1 - c.loop().index();
  Loop* target = m.loops[to] != nullptr ? m.loops[to] : &c.loop();
  const bool eof_handler = rng() % 2 == 0;
  const ConnOptions options = random_options(rng);
  const bool off_loop = rng() % 3 == 0;
  const bool ok = c.detach(
      [&m, id = s.id, epoch = x.epoch + 1, target, eof_handler, options, off_loop](DetachedConn d) {
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
  if (rng() % 25 == 0) return dial(m, loop, rng);
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
  // Per 200: ends (half-close, close, abort, detach) rare enough that a connection lives through
  // many writes, pauses and resumes.
  const unsigned r = rng() % 200;
  if (r < 100) {
    loop_write(m, s, c, *x, rng);
  } else if (r < 120) {
    c.pause_reading();
    x->paused = true;
    if (!c.reading_paused()) m.violation("reading_paused() false after pause_reading()");
  } else if (r < 144) {
    c.resume_reading();
    x->paused = false;
  } else if (r < 146) {
    s.note("c" + std::to_string(c.id()) + " shutdown_write");
    half_close(c, *x);
  } else if (r < 149) {
    s.note("c" + std::to_string(c.id()) + " close");
    c.close();
  } else if (r < 151) {
    s.note("c" + std::to_string(c.id()) + " abort");
    if (s.unix_socket) s.excused = "aborted (a Unix peer sees an EOF)";
    ++m.aborts;
    c.abort();
  } else if (r < 161) {
    detach_to_other_loop(m, s, c, *x, rng);
  } else if (r < 165 && depth == 0) {
    for (int i = 0; i < 8; ++i) loop_op(m, loop, rng, depth + 1);  // a burst in one handler
  } else if (r < 168) {
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
  const Target t = r < 4   ? Target::peer_tcp
                   : r < 7 ? Target::peer_unix
                   : r < 9 ? Target::refused
                           : Target::missing;
  Stream& s = m.new_stream(false, t);
  const std::string& address = t == Target::peer_tcp && rng() % 4 == 0 ? m.tcp_peer_by_name
                               : t == Target::peer_tcp                 ? m.tcp_peer
                               : t == Target::peer_unix                ? m.unix_peer
                               : t == Target::refused                  ? m.refused
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
                                  (r == 0   ? "close"
                                   : r == 1 ? "shutdown_write"
                                            : "nothing"));
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
    // The idle clock stands still while reading is paused and after the peer's EOF.
    if (error == errc::idle_timeout) {
      const ConnCtx* x = ctx_of(m, c);
      if ((x != nullptr && x->paused) || e.eofs > 0) {
        m.violation("idle_timeout while paused or after eof, conn " + std::to_string(c.id()));
      }
    }
    poke_ended(c);
    ConnCtx* x = ctx_of(m, c);
    if (x == nullptr || x->stream == 0) return;
    Stream& s = m.streams[x->stream];
    s.note("c" + std::to_string(c.id()) + " closed: " + (error ? error.message() : "clean"));
    ++m.endings[error ? error.message() : "clean"];
    static const std::error_code documented[] = {{},
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
    const bool expected =
        error == errc::cancelled || error == errc::server_stopped ||
        error == errc::output_limit ||       // written while connecting
        error == errc::file_truncated ||     // a file range queued then
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
    } else if (r < 61) {
      {
        std::lock_guard lock(m.mu);
        m.streams[id].note("post close to c" + std::to_string(ref.id()));
      }
      accepted = ref.close();
    } else if (r < 62) {
      {
        std::lock_guard lock(m.mu);
        Stream& s = m.streams[id];
        if (s.unix_socket) s.excused = "aborted (a Unix peer sees an EOF)";
        s.note("post abort to c" + std::to_string(ref.id()));
        ++m.aborts;
      }
      accepted = ref.abort();
    } else if (r < 63) {
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

}  // namespace evloop::fault::stress
