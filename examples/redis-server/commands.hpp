// Example (not part of the library). The commands of the redis-server example: PING, ECHO, SET
// (EX/PX/NX/XX/KEEPTTL), GET, DEL, EXISTS, INCR, MSET, MGET, DBSIZE, FLUSHALL, QUIT, SELECT 0,
// INFO, and the COMMAND and CONFIG GET replies that redis-cli and redis-benchmark ask for.
// Replies and error texts follow Redis 7.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "store.hpp"

namespace resp {

/// Bytes of the reply that carries a bulk string of `size` bytes: "$<size>\r\n<bytes>\r\n".
constexpr std::size_t bulk_reply_size(std::size_t size) noexcept {
  std::size_t digits = 1;
  for (std::size_t n = size; n >= 10; n /= 10) ++digits;
  return 1 + digits + 2 + size + 2;
}

/// What the connection does after a command's reply.
enum class After { keep_open, close };

/// Runs the command `args` (name first, never empty) against `store` at time `now` and appends
/// its RESP2 reply to `out`. A reply that would be longer than `reply_limit` bytes (only an MGET
/// of many large values, or a COMMAND INFO of very many names, can be) is not sent: an error
/// takes its place, and After::close.
After execute(const std::vector<std::string_view>& args, Store& store, Millis now, std::string& out,
              std::size_t reply_limit = static_cast<std::size_t>(-1));

/// Sets what CONFIG GET timeout answers (the idle timeout, in seconds; 0 by default). Call it
/// before any command runs: it is not synchronized with them.
void set_config_timeout(std::int64_t seconds);

/// Sets a function whose text INFO appends after its own sections (more sections of
/// "field:value\r\n" lines: the server's connection counters). Call it before any command runs.
void set_info_extra(std::string (*extra)());

/// Appends "-ERR <message>\r\n" (CR and LF in the message become spaces, as Redis does).
void append_error(std::string_view message, std::string& out);

}  // namespace resp
