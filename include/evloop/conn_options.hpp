// Public. The limits and socket options of one connection, and what a dial or an adoption adds.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

namespace evloop {

/// Limits and socket options of one connection. Every connection carries its own: accepted ones
/// get their listener's (for a Server, the Options it was given), dialled and adopted ones the
/// options passed to Loop::connect / Loop::adopt. Checked when used: an inconsistent set fails
/// Server::start() or the dial with errc::bad_option, naming the field.
struct ConnOptions {
  /// TCP_NODELAY on TCP connections.
  bool tcp_nodelay = true;
  /// SO_KEEPALIVE with this idle time before the first probe; zero = keep-alive off. At most
  /// 32767 s (about 9 hours; Linux's limit for TCP_KEEPIDLE).
  std::chrono::seconds keepalive{0};

  /// SO_SNDBUF in bytes; 0 = the kernel's default (auto-tuned). Must not be negative.
  int socket_send_buffer = 0;
  /// SO_RCVBUF in bytes; 0 = the kernel's default (auto-tuned). Must not be negative.
  int socket_receive_buffer = 0;

  /// A write that takes pending output above this pauses reading from the connection...
  /// (output_low_water <= output_high_water <= output_limit, else errc::bad_option)
  std::size_t output_high_water = 1024 * 1024;
  /// ...until it drains to this; then reading resumes and the `low_water` handler runs.
  std::size_t output_low_water = 256 * 1024;
  /// Pending output above this resets the connection (errc::output_limit). What it bounds is the
  /// memory the output holds: its bytes (a SharedBuffer's counted whole on every connection it
  /// is written to), plus a record of about 48 bytes per SharedBuffer write still pending, so a
  /// stream of tiny shared messages to a peer that never reads cannot hold many times the limit.
  /// send_file() ranges hold no memory and do not count.
  std::size_t output_limit = 64 * 1024 * 1024;
  /// A write of at least this many bytes goes to the kernel at once, from the caller's memory
  /// (with whatever is pending, in one sendmsg), and only what the kernel refuses is copied;
  /// smaller writes are copied and leave together once the handler returns (several small
  /// writes, one send). 1 (or 0): every write goes at once (a proxy that writes each read once
  /// copies nothing); SIZE_MAX: never. On io_uring the same, while none of the connection's
  /// sends is in the kernel (a write behind one is copied, so as not to overtake it).
  /// 32 KiB: a write that goes at once costs a send of its own, and when a handler writes several
  /// messages' bodies per call (pipelined requests) that send costs more than copying the body
  /// into the one gathered send, up to about 32 KiB (bench/write_through.sh, measured on
  /// 2026-12-02: sending 16-24 KiB bodies at once took 1.2-1.3x the server CPU per message of
  /// copying them, 32 KiB about as much); with one write per call, copying up to 24 KiB cost
  /// nothing measurable, 32 KiB about 5%, 64 KiB about 15% (bench/README.md).
  std::size_t write_through = 32 * 1024;
  /// Unconsumed input (the `data` handler's unconsumed tail) above this resets the connection
  /// (errc::input_limit). Must be positive.
  std::size_t input_limit = 1024 * 1024;

  /// Longest close() waits without progress: for pending output to move to the kernel, and
  /// then for the peer to acknowledge more of what the kernel still holds (see Conn::close);
  /// then the connection is reset (errc::close_timeout). A peer that keeps reading, however
  /// slowly, gets the whole output; one that stops is cut off this long after. Must not be
  /// negative.
  std::chrono::milliseconds close_timeout{10'000};
  /// Close a connection that receives nothing for this long while it is reading
  /// (errc::idle_timeout); zero = never. Only received bytes count as activity (unless
  /// idle_counts_sends): what the connection sends does not, and the clock stands still while
  /// reading is paused (by pause_reading() or back-pressure) or after the peer's EOF. Must not be
  /// negative.
  std::chrono::milliseconds idle_timeout{0};
  /// Bytes the connection sends count as activity for idle_timeout too (a write, and every
  /// send that makes progress). For a side of a tunnel or proxy, which may only ever send (a
  /// download): the connection is idle when nothing moves either way. Off by default: a server
  /// should not keep a peer that sends nothing just because it is being answered.
  bool idle_counts_sends = false;
  /// Reset a connection whose pending output makes no progress for this long: the peer has
  /// stopped reading (errc::send_timeout); zero = never (output_limit still bounds the memory).
  /// Must not be negative.
  std::chrono::milliseconds send_timeout{0};
};

/// ConnOptions for an outgoing connection (Loop::connect), plus the dial's own settings.
struct ConnectOptions : ConnOptions {
  /// The whole dial (name resolution and every address tried) must complete within this, or it
  /// fails with errc::connect_timeout. Zero = no limit (the kernel's own SYN retries still end
  /// it, after about two minutes on Linux; a dial waiting for room in a Unix socket's full
  /// backlog waits until it has room, or is closed). Negative fails the dial with
  /// errc::bad_option.
  std::chrono::milliseconds connect_timeout{10'000};
  /// Local address to bind before connecting, a numeric host with an optional port:
  /// "127.0.0.2", "127.0.0.2:0", "[::1]:4000"; no `?options`. Anything else fails the dial with
  /// errc::bad_address. Empty = chosen by the kernel.
  std::string source_address;
};

/// ConnOptions for adopting a connected socket (Loop::adopt), plus the stream's state so far,
/// e.g. from a DetachedConn: nothing is lost or reordered.
struct AdoptOptions : ConnOptions {
  /// Bytes already read from the socket but not consumed: handed to `data` first, right after
  /// `opened`.
  std::string input;
  /// Bytes to send before anything written later (they count as pending output).
  std::string output;
};

}  // namespace evloop
