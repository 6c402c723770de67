#include "upgrade_protocol.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "platform.hpp"

namespace evloop::detail::upgrade {
namespace {

// Room for the control message of a frame's fds.
union ControlBuffer {
  cmsghdr align;
  char bytes[CMSG_SPACE(sizeof(int) * kMaxFdsPerFrame)];
};

// What a read asks for at least: enough for a few small frames in one call.
constexpr std::size_t kReadChunk = 64 * 1024;
// ... and at most, however large the frame being read.
constexpr std::size_t kReadLimit = 16 * 1024 * 1024;

struct Header {
  std::uint32_t type = 0;
  std::uint32_t fds = 0;
  std::uint64_t length = 0;
};

Header decode_header(const char* bytes) {
  Header h;
  std::memcpy(&h.type, bytes, 4);
  std::memcpy(&h.fds, bytes + 4, 4);
  std::memcpy(&h.length, bytes + 8, 8);
  return h;
}

bool known_type(std::uint32_t type) {
  return type >= static_cast<std::uint32_t>(FrameType::hello) &&
         type <= static_cast<std::uint32_t>(FrameType::adopted);
}

// Moves the fds of every SCM_RIGHTS message in `msg` to `out`.
void collect_fds(msghdr& msg, std::deque<UniqueFd>& out) {
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      if constexpr (!platform::kReceivedFdsAreCloexec) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
      out.emplace_back(fd);
    }
  }
}

}  // namespace

void encode_header(FrameType type, std::uint32_t fds, std::uint64_t length,
                   unsigned char (&out)[kHeaderSize]) noexcept {
  const auto t = static_cast<std::uint32_t>(type);
  std::memcpy(out, &t, 4);
  std::memcpy(out + 4, &fds, 4);
  std::memcpy(out + 8, &length, 8);
}

bool PayloadReader::take(void* out, std::size_t size) {
  if (!ok_ || in_.size() < size) return ok_ = false;
  std::memcpy(out, in_.data(), size);
  in_.remove_prefix(size);
  return true;
}

bool PayloadReader::bytes(std::string& b) {
  std::uint64_t size = 0;
  if (!u64(size) || size > in_.size()) return ok_ = false;
  b.assign(in_.data(), static_cast<std::size_t>(size));
  in_.remove_prefix(static_cast<std::size_t>(size));
  return true;
}

int wait_ready(int fd, short events, Clock::time_point deadline) noexcept {
  for (;;) {
    int timeout = -1;
    if (deadline != Clock::time_point::max()) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return ETIMEDOUT;
      timeout = static_cast<int>(std::min<long long>(left.count(), 1 << 30));
    }
    pollfd p{fd, events, 0};
    const int n = ::poll(&p, 1, timeout);
    if (n > 0) return 0;
    if (n < 0 && errno != EINTR) return errno;
  }
}

int send_frame(int socket, FrameType type, std::string_view payload, const std::vector<int>& fds,
               Clock::time_point deadline) {
  if (fds.size() > kMaxFdsPerFrame) return EINVAL;
  unsigned char header[kHeaderSize];
  encode_header(type, static_cast<std::uint32_t>(fds.size()), payload.size(), header);
  const std::size_t total = kHeaderSize + payload.size();
  std::size_t sent = 0;
  ControlBuffer control{};
  while (sent < total) {
    iovec iov[2];
    int count = 0;
    if (sent < kHeaderSize) iov[count++] = {header + sent, kHeaderSize - sent};
    const std::size_t in_payload = sent > kHeaderSize ? sent - kHeaderSize : 0;
    if (in_payload < payload.size()) {
      iov[count++] = {const_cast<char*>(payload.data()) + in_payload, payload.size() - in_payload};
    }
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<decltype(msg.msg_iovlen)>(count);
    if (sent == 0 && !fds.empty()) {  // the fds go with the first byte only
      msg.msg_control = control.bytes;
      msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
      cmsghdr* c = &control.align;  // CMSG_FIRSTHDR(&msg), never null here
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
      std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }
    const ssize_t n = ::sendmsg(socket, &msg, platform::kSendFlags);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (const int e = wait_ready(socket, POLLOUT, deadline)) return e;
    } else if (n < 0 && errno != EINTR) {
      return errno;
    }
  }
  return 0;
}

int FrameReader::receive(std::size_t want, Clock::time_point deadline) {
  const std::size_t had = buffer_.size();
  buffer_.resize(had + std::clamp(want, kReadChunk, kReadLimit));
  ControlBuffer control{};
  for (;;) {
    iovec iov{buffer_.data() + had, buffer_.size() - had};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.bytes;
    msg.msg_controllen = sizeof control.bytes;
    const ssize_t n = ::recvmsg(socket_, &msg, platform::kReceiveFdsFlags);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (const int e = wait_ready(socket_, POLLIN, deadline)) {
        buffer_.resize(had);
        return e;
      }
      continue;
    }
    const int error = n < 0 ? errno : 0;
    buffer_.resize(had + static_cast<std::size_t>(std::max<ssize_t>(n, 0)));
    if (n < 0) return error;
    collect_fds(msg, fds_);
    if (msg.msg_flags & MSG_CTRUNC) return EPROTO;  // fds were lost: the stream cannot go on
    return n == 0 ? ECONNRESET : 0;
  }
}

int FrameReader::next(Frame& out, Clock::time_point deadline) {
  const int e = read_frame(out, deadline);
  // The stream is over, or cannot be trusted: the fds of a frame cut off close now, so their
  // peers see an end instead of waiting on sockets nobody reads.
  if (e != 0) fds_.clear();
  return e;
}

int FrameReader::read_frame(Frame& out, Clock::time_point deadline) {
  for (;;) {
    std::size_t want = kHeaderSize - std::min(buffer_.size(), kHeaderSize);
    if (want == 0) {
      const Header h = decode_header(buffer_.data());
      if (!known_type(h.type) || h.fds > kMaxFdsPerFrame || h.length > kMaxPayload) return EPROTO;
      const std::size_t size = kHeaderSize + static_cast<std::size_t>(h.length);
      if (buffer_.size() >= size) {
        if (fds_.size() < h.fds) return EPROTO;  // they came with the header: they must be here
        out.type = static_cast<FrameType>(h.type);
        out.payload.assign(buffer_, kHeaderSize, static_cast<std::size_t>(h.length));
        buffer_.erase(0, size);
        out.fds.clear();
        for (std::uint32_t i = 0; i < h.fds; ++i) {
          out.fds.push_back(std::move(fds_.front()));
          fds_.pop_front();
        }
        return 0;
      }
      want = size - buffer_.size();
    }
    if (const int e = receive(want, deadline)) return e;
  }
}

}  // namespace evloop::detail::upgrade
