// Public. The handlers of one connection: what evloop calls as its life goes on.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

namespace evloop {

class Conn;

/// A connection's handlers. Every one is optional. They run on the connection's loop thread,
/// never concurrently for one connection, and may call any Conn method (close(), write(), ...):
/// what they ask for is carried out after they return. They must not throw (an exception
/// escaping a loop thread terminates the process).
///
/// Each connection carries its own set: accepted connections get their listener's (for a
/// Server, its Callbacks), dialled and adopted ones the set given to Loop::connect/adopt.
///
/// Order of events for one connection: `opened` (`adopted` instead for a connection a live
/// upgrade moved here; for a dial or an adoption that fails, `connect_failed` and nothing else),
/// then any number of `data`, `low_water`, `all_sent`, at most one `eof`, then `closed` exactly
/// once. In a process that hands its connections over (Server::upgrade), `handover` is asked
/// once per open connection; one that moves then gets `closed` with errc::detached.
struct Handlers {
  /// The connection is open (accepted, connected, or adopted). It may write (a greeting) or close.
  std::function<void(Conn&)> opened;
  /// Bytes arrived. `bytes` is valid only during the call. Return how many were consumed: an
  /// unconsumed tail (a partial frame) is kept (up to ConnOptions::input_limit) and handed again,
  /// followed by new bytes, on the next call (a return above bytes.size() counts as
  /// bytes.size()). Returning less than everything does not pause reading; pause_reading()
  /// does. Without this handler, input is discarded.
  std::function<std::size_t(Conn&, std::string_view bytes)> data;
  /// The peer ended its sending side (EOF, e.g. shutdown(SHUT_WR)): no more `data`. With this
  /// handler set, the connection stays open for writing: reply now or later, then close() or
  /// shutdown_write() (a connection whose both directions have ended closes by itself). Without
  /// it, the connection closes once pending output is sent.
  std::function<void(Conn&)> eof;
  /// The connection closed: exactly once per `opened`. `error` is empty for a clean close (by
  /// either side), an errno (e.g. ECONNRESET) for an I/O error, or an evloop::errc: output_limit,
  /// input_limit, close_timeout, idle_timeout, send_timeout, server_stopped, shutdown_timeout,
  /// detached, file_truncated (a send_file() range past its file's end).
  std::function<void(Conn&, std::error_code error)> closed;
  /// Back-pressure ended: pending output went above output_high_water (which paused reading),
  /// then fell to output_low_water and reading resumed. A producer that stops writing when
  /// output_pending() passes the high-water mark continues here. For "everything I wrote has
  /// been sent" use `all_sent`.
  std::function<void(Conn&)> low_water;
  /// Everything written so far has been handed to the kernel (pending output reached zero after
  /// a write), whatever the water marks did. Lets a producer pace itself with small chunks.
  std::function<void(Conn&)> all_sent;
  /// A dial (Loop::connect) or an adoption (Loop::adopt) failed: the connection never opened and
  /// `closed` will not fire. `error` is an errno (ECONNREFUSED, ENETUNREACH, ENOENT for a Unix
  /// socket path that does not exist, EMFILE when the process is out of fds, also for a host
  /// name it could not look up for want of one, ECONNRESET when the peer reset the connection
  /// before it opened (EPIPE on Linux if the peer's FIN came first), ENOTCONN or ECONNRESET for an
  /// adopted socket whose peer has gone, ...) or an evloop::errc (connect_timeout,
  /// resolve_failed, self_connect, bad_address, bad_option,
  /// server_stopped, cancelled when close()/abort() was called while connecting, output_limit
  /// when more than ConnOptions::output_limit was written while connecting, or how a send_file()
  /// queued while connecting failed: file_truncated, an errno). Only the code comes here: for
  /// the message that says what is wrong with a bad address, call parse_connect_address().
  std::function<void(Conn&, std::error_code error)> connect_failed;

  /// Live upgrade (Server::upgrade), in the process handing over: asked once for each open
  /// connection its listeners accepted, on the connection's loop, after the successor is ready
  /// and this process stopped accepting. Return the connection's state, in any bytes the
  /// successor's `adopted` understands, to move it: its fd, unconsumed input and unsent output
  /// go too, and `closed` fires here with errc::detached. Return std::nullopt to keep it here
  /// until it closes (UpgradeOptions::drain_timeout at most): a request in progress, say. The
  /// handler may write (the bytes move with it) or close. Unset: no connection moves.
  std::function<std::optional<std::string>(Conn&)> handover;
  /// Live upgrade, in the successor: a moved connection opened here, with the state `handover`
  /// returned for it; fires instead of `opened` (which would greet a peer that is mid-stream).
  /// Then `data` with its unconsumed input, if any; its unsent output is sent first. Unset:
  /// `opened` fires and the state is dropped.
  std::function<void(Conn&, std::string_view state)> adopted;
};

}  // namespace evloop
