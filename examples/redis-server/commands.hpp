// Example (not part of the library). The commands of the redis-server example: PING, ECHO, SET
// (EX/PX/NX/XX/KEEPTTL), GET, DEL, EXISTS, INCR, MSET, MGET, DBSIZE, FLUSHALL, QUIT, SELECT 0,
// INFO, and the COMMAND and CONFIG GET replies that redis-cli and redis-benchmark ask for.
// Replies and error texts follow Redis 7.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "store.hpp"

namespace resp {

/// What the connection does after a command's reply.
enum class After { keep_open, close };

/// Runs the command `args` (name first, never empty) against `store` at time `now` and appends
/// its RESP2 reply to `out`.
After execute(const std::vector<std::string_view>& args, Store& store, Millis now,
              std::string& out);

/// Sets what CONFIG GET timeout answers (the idle timeout, in seconds; 0 by default). Call it
/// before any command runs: it is not synchronized with them.
void set_config_timeout(std::int64_t seconds);

/// Appends "-ERR <message>\r\n" (CR and LF in the message become spaces, as Redis does).
void append_error(std::string_view message, std::string& out);

}  // namespace resp
