// Internal. An errno value as a std::error_code. Its message() is the text to show: unlike
// std::strerror, which may share one buffer between threads (FreeBSD's does), the standard
// library must not race.
#pragma once

#include <system_error>

namespace evloop::detail {

/// `e`, an errno value, as an error code of the system category.
inline std::error_code sys_error(int e) noexcept { return {e, std::system_category()}; }

}  // namespace evloop::detail
