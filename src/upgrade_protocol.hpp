// Internal. The control socket of a live upgrade, both sides: frames, their payloads, and the fds
// that travel with them (SCM_RIGHTS). The README ("Zero-downtime restart", "The protocol")
// describes the same bytes for users who drive an upgrade from their own code.
//
// A frame is a 16-byte header, {u32 type, u32 fd count, u64 payload length} in the host's byte
// order (both ends run on one machine), then the payload. Its fds are attached to the sendmsg()
// that carries the header's first byte; a stream socket delivers them with that byte, so a reader
// that keeps every fd it receives, in order, has a frame's fds once it has the frame's bytes.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "socket.hpp"

namespace evloop::detail::upgrade {

using Clock = std::chrono::steady_clock;

enum class FrameType : std::uint32_t {
  hello = 1,         ///< predecessor -> successor: listening sockets (fds) and what each serves
  ready = 2,         ///< successor -> predecessor: its Server started; payload u64 pid
  start_failed = 3,  ///< successor -> predecessor: its start() failed; payload: the message
  exec_failed = 4,   ///< the forked child -> predecessor: execve() failed; payload u32 errno
  connections = 5,   ///< predecessor -> successor: connections (fds), their bytes and state
  done = 6,          ///< predecessor -> successor: nothing more follows; payload u64 count
  adopted = 7,       ///< successor -> predecessor: which connections of a batch it took
};

/// hello record flags.
inline constexpr std::uint32_t kOwnsUnixPath = 1;  ///< the predecessor bound this Unix socket file
/// Set on every record: the predecessor reads an `adopted` answer to each `connections` frame.
inline constexpr std::uint32_t kReadsAnswers = 2;
/// ready flags (a u32 after the pid; a successor that sends only the pid sets none).
inline constexpr std::uint32_t kAnswers = 1;  ///< answers each `connections` frame with `adopted`
/// adopted flags: the successor has been stopped and takes no more connections.
inline constexpr std::uint32_t kStopped = 1;

inline constexpr std::size_t kHeaderSize = 16;
/// The most fds one frame carries: Linux's SCM_MAX_FD (a sendmsg with more fails with EINVAL).
inline constexpr std::size_t kMaxFdsPerFrame = 253;
/// The largest payload a reader accepts (a corrupt header must not allocate without bound).
inline constexpr std::uint64_t kMaxPayload = std::uint64_t{1} << 34;

/// Writes a frame header into `out` (async-signal-safe: the forked child uses it).
void encode_header(FrameType type, std::uint32_t fds, std::uint64_t length,
                   unsigned char (&out)[kHeaderSize]) noexcept;

/// A received frame and the fds that came with it (close-on-exec, owned).
struct Frame {
  FrameType type{};
  std::string payload;
  std::vector<UniqueFd> fds;
};

/// Appends payload fields: u32, u64, and byte strings as a u64 length and the bytes.
class PayloadWriter {
 public:
  explicit PayloadWriter(std::string& out) : out_(out) {}
  void u32(std::uint32_t v) { out_.append(reinterpret_cast<const char*>(&v), sizeof v); }
  void u64(std::uint64_t v) { out_.append(reinterpret_cast<const char*>(&v), sizeof v); }
  void bytes(std::string_view b) {
    u64(b.size());
    out_.append(b);
  }

 private:
  std::string& out_;
};

/// Reads payload fields back; each read fails (false, and every later one) past the end.
class PayloadReader {
 public:
  explicit PayloadReader(std::string_view in) : in_(in) {}
  bool u32(std::uint32_t& v) { return take(&v, sizeof v); }
  bool u64(std::uint64_t& v) { return take(&v, sizeof v); }
  bool bytes(std::string& b);
  /// True when every byte was read and no read failed.
  bool finished() const noexcept { return ok_ && in_.empty(); }

 private:
  bool take(void* out, std::size_t size);
  std::string_view in_;
  bool ok_ = true;
};

/// Sends one frame on a non-blocking stream socket, `fds` (at most kMaxFdsPerFrame) attached to
/// its first byte, waiting for room until `deadline`. Returns 0 or an errno (ETIMEDOUT, EPIPE,
/// ...).
int send_frame(int socket, FrameType type, std::string_view payload, const std::vector<int>& fds,
               Clock::time_point deadline);

/// Reads frames from a non-blocking stream socket, keeping the fds that arrive, in order.
class FrameReader {
 public:
  explicit FrameReader(int socket) : socket_(socket) {}
  /// The next frame, waiting until `deadline` (Clock::time_point::max(): no limit). Returns 0,
  /// or ECONNRESET (the other end closed), ETIMEDOUT, EPROTO (a malformed frame, or fds lost), or
  /// the errno of a failed read; then the fds received for a frame not read whole are closed.
  int next(Frame& out, Clock::time_point deadline);

 private:
  int read_frame(Frame& out, Clock::time_point deadline);
  int receive(std::size_t want, Clock::time_point deadline);
  int socket_;
  std::string buffer_;
  std::deque<UniqueFd> fds_;
};

/// Waits until `fd` is ready for `events` (POLLIN / POLLOUT) or `deadline` passes: 0, ETIMEDOUT,
/// or the errno of poll().
int wait_ready(int fd, short events, Clock::time_point deadline) noexcept;

}  // namespace evloop::detail::upgrade
