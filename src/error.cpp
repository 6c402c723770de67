#include "evloop/error.hpp"

namespace evloop {
namespace {

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "evloop"; }
  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::bad_address:
        return "bad address";
      case errc::unknown_scheme:
        return "unknown address scheme";
      case errc::bad_option:
        return "bad option";
      case errc::no_address:
        return "no listen address";
      case errc::already_started:
        return "already started";
      case errc::output_limit:
        return "pending output over the limit";
      case errc::input_limit:
        return "unconsumed input over the limit";
      case errc::server_stopped:
        return "server stopped";
      case errc::close_timeout:
        return "pending output not sent in time";
      case errc::idle_timeout:
        return "idle timeout";
      case errc::send_timeout:
        return "pending output made no progress in time";
      case errc::shutdown_timeout:
        return "pending output not sent before the loops stopped";
      case errc::connect_timeout:
        return "connect timed out";
      case errc::resolve_failed:
        return "cannot resolve host name";
      case errc::self_connect:
        return "connected to itself";
      case errc::cancelled:
        return "cancelled while connecting";
      case errc::detached:
        return "detached";
      case errc::loop_failed:
        return "event loop failed";
      case errc::file_truncated:
        return "file ended before the range given to send_file";
      case errc::upgrade_failed:
        return "live upgrade failed";
      case errc::upgrade_in_progress:
        return "a live upgrade is in progress or done";
    }
    return "unknown evloop error";
  }
};

}  // namespace

const std::error_category& error_category() noexcept {
  static const Category category;
  return category;
}

std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), error_category()}; }

}  // namespace evloop
