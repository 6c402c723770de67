// Example. Integers as Redis reads them from arguments and stored values.
#pragma once

#include <charconv>
#include <cstdint>
#include <string_view>

namespace resp {

/// Like Redis's string2ll: a canonical decimal int64 ("-0", "+1", " 1", "01" are refused).
inline bool parse_int64(std::string_view s, std::int64_t& out) noexcept {
  if (s.empty() || s.size() > 20 || s == "-") return false;
  if (s.size() > 1 && (s[0] == '0' || (s[0] == '-' && s[1] == '0'))) return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size();
}

}  // namespace resp
