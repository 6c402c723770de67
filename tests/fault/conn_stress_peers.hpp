// The conn stress test's peers: plain non-blocking sockets driven by one thread. They connect to
// the server and accept the loops' dials, read (fast, slowly, not for a while), check every byte
// against the wire format, send their own pattern, half-close, close and reset at random.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "conn_stress_model.hpp"
#include "conn_stress_wire.hpp"

namespace evloop::fault::stress {

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
  std::string out;         // hello still to send
  std::uint64_t sent = 0;  // pattern bytes sent
  std::uint64_t send_budget = 0;
  int slow = 0;  // bytes per read when > 0
  int deaf = 0;  // rounds left without reading
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
      const std::size_t n =
          std::min<std::uint64_t>(1 + rng_() % sizeof buf, p.send_budget - p.sent);
      for (std::size_t i = 0; i < n; ++i)
        buf[i] = static_cast<char>(input_byte(p.stream, p.sent + i));
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
    } else if (r < 12 && !p.shut) {
      ::shutdown(p.fd, SHUT_WR);
      p.shut = true;
    } else if (r < 45) {
      // Mostly a short break; now and then one long enough for send_timeout, close_timeout or
      // the shutdown grace to run out.
      p.deaf = static_cast<int>(rng_() % 8 == 0 ? 200 + rng_() % 800 : rng_() % 30);
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

}  // namespace evloop::fault::stress
