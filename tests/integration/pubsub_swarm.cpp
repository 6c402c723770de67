#include "pubsub_swarm.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace evloop::test {

::testing::AssertionResult Swarm::connect(const SocketAddress& addr, std::size_t n, int rcvbuf) {
  for (std::size_t i = 0; i < n; ++i) {
    Peer peer;
    peer.client = Client(addr, rcvbuf);
    if (!peer.client.connected()) {
      return ::testing::AssertionFailure()
             << "client " << peers_.size() << " could not connect: " << std::strerror(errno);
    }
    peers_.push_back(std::move(peer));
  }
  return ::testing::AssertionSuccess();
}

bool Swarm::send(std::size_t i, const std::string& bytes) {
  return peers_[i].client.send_all(bytes);
}

bool Swarm::pump_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::vector<pollfd> fds;
  std::vector<Peer*> owners;
  while (!done()) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    fds.clear();
    owners.clear();
    for (Peer& p : peers_) {
      if (p.ended || !p.reading) continue;
      fds.push_back({p.client.fd(), POLLIN, 0});
      owners.push_back(&p);
    }
    const int n = ::poll(fds.data(), fds.size(), static_cast<int>(left.count()));
    if (n < 0 && errno != EINTR) return false;
    for (std::size_t i = 0; n > 0 && i < fds.size(); ++i) {
      if (fds[i].revents != 0) read_from(*owners[i]);
    }
  }
  return true;
}

void Swarm::read_from(Peer& peer) {
  char buf[65536];
  for (;;) {
    const ssize_t r = ::recv(peer.client.fd(), buf, sizeof buf, MSG_DONTWAIT);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (r <= 0) {
      peer.ended = true;
      peer.error = r == 0 ? 0 : errno;
      return;
    }
    peer.partial.append(buf, static_cast<std::size_t>(r));
    std::size_t start = 0;
    for (std::size_t end; (end = peer.partial.find('\n', start)) != std::string::npos;
         start = end + 1) {
      const std::string_view line(peer.partial.data() + start, end - start);
      if (line == "HB") {
        ++peer.heartbeats;
        if (peer.on_heartbeat) peer.on_heartbeat(peer);
      } else {
        peer.lines.append(line).push_back('\n');
      }
    }
    peer.partial.erase(0, start);
  }
}

}  // namespace evloop::test
