// Public. Error codes and the Status returned by calls that can fail.
#pragma once

#include <string>
#include <system_error>
#include <utility>

namespace evloop {

/// evloop's own error conditions. Errors from the operating system use std::system_category()
/// (for example EADDRINUSE when a port is taken), so `code == std::errc::address_in_use` works.
enum class errc {
  bad_address = 1,  ///< An address that cannot be parsed (bad host, port or path).
  unknown_scheme,   ///< An address whose scheme is not one evloop knows.
  bad_option,  ///< An unknown or malformed `?option` in an address, or an invalid option value.
  no_address,  ///< start() was called with no listen address.
  already_started,   ///< start() was called on a server or loop group that was already started.
  output_limit,      ///< Pending output passed ConnOptions::output_limit; the connection was reset.
  input_limit,       ///< Unconsumed input passed ConnOptions::input_limit; it was reset.
  server_stopped,    ///< The connection (or dial) ended because its loops stopped.
  close_timeout,     ///< close() could not send the pending output in time; it was reset.
  idle_timeout,      ///< Nothing was received for ConnOptions::idle_timeout.
  send_timeout,      ///< Pending output made no progress for ConnOptions::send_timeout: reset.
  shutdown_timeout,  ///< The loops stopped with output still pending after shutdown_grace: reset.
  connect_timeout,   ///< A dial did not complete within ConnectOptions::connect_timeout.
  resolve_failed,    ///< A dial's host name could not be resolved.
  self_connect,      ///< A dial connected the socket to itself (TCP simultaneous open).
  cancelled,         ///< close() or abort() was called while the connection was still connecting
                     ///< (or UdpRef::close while the UDP socket was still opening).
  detached,          ///< The connection was handed back with Conn::detach().
  loop_failed,       ///< A loop stopped because its poller failed (see LoopGroup::wait()).
  file_truncated,    ///< A send_file() range went past the end of its file: reset.
  upgrade_failed,    ///< A live upgrade did not happen (or did not finish): see the message.
  upgrade_in_progress,  ///< Server::upgrade() was called while another ran, or after one succeeded.
};

/// The category of evloop::errc; its name is "evloop".
const std::error_category& error_category() noexcept;

/// Makes an error_code of evloop's category (found by ADL, so `std::error_code ec = errc::...`
/// works).
std::error_code make_error_code(errc e) noexcept;

/// The result of a call that can fail: ok, or an error code with a message meant for people
/// (it names the input that failed, e.g. "listen tcp://127.0.0.1:80: Permission denied").
class Status {
 public:
  /// A successful status.
  Status() = default;
  /// A failed status with its code and a human-readable message.
  Status(std::error_code code, std::string message) : code_(code), message_(std::move(message)) {}

  /// True when the call succeeded.
  bool ok() const noexcept { return !code_; }
  /// Same as ok().
  explicit operator bool() const noexcept { return ok(); }
  /// The error code; empty when ok().
  std::error_code code() const noexcept { return code_; }
  /// A message that says what failed and why; empty when ok().
  const std::string& message() const noexcept { return message_; }

 private:
  std::error_code code_;
  std::string message_;
};

}  // namespace evloop

/// Makes evloop::errc an error-code enum: `std::error_code ec = evloop::errc::idle_timeout;` and
/// `ec == evloop::errc::idle_timeout` work.
template <>
struct std::is_error_code_enum<evloop::errc> : std::true_type {};
