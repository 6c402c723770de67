#include "profile.hpp"

#include <string>

#include "timeouts.hpp"

namespace evloop::detail {
namespace {

Status bad_option(std::string_view where, const std::string& why) {
  return {make_error_code(errc::bad_option), std::string(where) + ": " + why};
}

// "output_low_water (262144, the default)" or "output_low_water (300000)".
template <typename T>
std::string field(const char* name, T value, T default_value) {
  std::string s = std::string(name) + " (" + std::to_string(value);
  if (value == default_value) s += ", the default";
  return s + ")";
}

}  // namespace

Status validate(const ConnOptions& o, std::string_view where) {
  const ConnOptions d;
  if (o.socket_send_buffer < 0) {
    return bad_option(where, field("socket_send_buffer", o.socket_send_buffer, 0) +
                                 " must not be negative (0 = the kernel's default)");
  }
  if (o.socket_receive_buffer < 0) {
    return bad_option(where, field("socket_receive_buffer", o.socket_receive_buffer, 0) +
                                 " must not be negative (0 = the kernel's default)");
  }
  if (o.input_limit == 0) return bad_option(where, "input_limit must be positive");
  if (o.output_low_water > o.output_high_water) {
    return bad_option(where,
                      field("output_low_water", o.output_low_water, d.output_low_water) +
                          " must not exceed " +
                          field("output_high_water", o.output_high_water, d.output_high_water));
  }
  if (o.output_high_water > o.output_limit) {
    return bad_option(where, field("output_high_water", o.output_high_water, d.output_high_water) +
                                 " must not exceed " +
                                 field("output_limit", o.output_limit, d.output_limit));
  }
  if (o.close_timeout.count() < 0) return bad_option(where, "close_timeout must not be negative");
  if (o.idle_timeout.count() < 0) return bad_option(where, "idle_timeout must not be negative");
  if (o.send_timeout.count() < 0) return bad_option(where, "send_timeout must not be negative");
  if (o.keepalive.count() < 0) return bad_option(where, "keepalive must not be negative");
  // Linux refuses a longer TCP_KEEPIDLE (EINVAL), which would leave keep-alive on its default.
  if (o.keepalive.count() > 32767) {
    return bad_option(
        where, "keepalive (" + std::to_string(o.keepalive.count()) + " s) must be at most 32767 s");
  }
  return {};
}

ProfilePtr make_profile(Handlers handlers, ConnOptions options) {
  options.close_timeout = capped(options.close_timeout);
  options.idle_timeout = capped(options.idle_timeout);
  options.send_timeout = capped(options.send_timeout);
  return std::make_shared<const Profile>(Profile{std::move(handlers), std::move(options)});
}

Status validate(const UdpOptions& o, std::string_view where) {
  if (o.socket_send_buffer < 0) return bad_option(where, "socket_send_buffer must not be negative");
  if (o.socket_receive_buffer < 0) {
    return bad_option(where, "socket_receive_buffer must not be negative");
  }
  if (o.batch == 0 || o.batch > 1024) {
    return bad_option(where, "batch (" + std::to_string(o.batch) + ") must be 1..1024");
  }
  if (o.max_datagram_size == 0 || o.max_datagram_size > 65536) {
    return bad_option(
        where, "max_datagram_size (" + std::to_string(o.max_datagram_size) + ") must be 1..65536");
  }
  // The queue keeps offsets into its byte arena in 32 bits.
  if (o.send_queue_bytes == 0 || o.send_queue_bytes > 0xffffffffu) {
    return bad_option(where, "send_queue_bytes (" + std::to_string(o.send_queue_bytes) +
                                 ") must be 1..4294967295 (4 GiB - 1)");
  }
  if (o.send_queue_datagrams == 0) {
    return bad_option(where, "send_queue_datagrams must be positive");
  }
  return {};
}

}  // namespace evloop::detail
