// Example. Command dispatch and replies (see commands.hpp).
#include "commands.hpp"

#include <array>
#include <charconv>
#include <limits>

#include "int_text.hpp"

namespace resp {
namespace {

// --- reply writers (RESP2) ---

void append_int_text(std::int64_t n, std::string& out) {
  char buf[24];
  out.append(buf, std::to_chars(buf, buf + sizeof buf, n).ptr);
}

void reply_simple(std::string_view s, std::string& out) {
  out += '+';
  out += s;
  out += "\r\n";
}

void reply_int(std::int64_t n, std::string& out) {
  out += ':';
  append_int_text(n, out);
  out += "\r\n";
}

void reply_bulk(std::string_view s, std::string& out) {
  out += '$';
  append_int_text(static_cast<std::int64_t>(s.size()), out);
  out += "\r\n";
  out += s;
  out += "\r\n";
}

void reply_nil(std::string& out) { out += "$-1\r\n"; }

void reply_array(std::size_t n, std::string& out) {
  out += '*';
  append_int_text(static_cast<std::int64_t>(n), out);
  out += "\r\n";
}

void reply_ok(std::string& out) { out += "+OK\r\n"; }

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }
char upper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 32) : c; }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

// Case-insensitive glob with * and ? (what CONFIG GET patterns need). Iterative, going back only
// to the last `*`: at most pattern × subject steps and no recursion, whatever a peer sends (a
// recursive matcher overflowed its stack on 200,000 stars and ran for minutes on 30 of them).
bool glob_match(std::string_view pattern, std::string_view s) {
  constexpr std::size_t kNone = std::string_view::npos;
  std::size_t p = 0, i = 0, star = kNone, star_i = 0;
  while (i < s.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;  // match nothing first; the retries below let it take one more byte each
      star_i = i;
    } else if (p < pattern.size() && (pattern[p] == '?' || lower(pattern[p]) == lower(s[i]))) {
      ++p;
      ++i;
    } else if (star != kNone) {
      p = star + 1;
      i = ++star_i;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

using Args = std::vector<std::string_view>;

struct Context {
  const Args& args;
  Store& store;
  Millis now;
  std::string& out;
  std::size_t reply_limit;
};

struct Command {
  std::string_view name;   // lower case
  int arity;               // Redis's convention: N exactly, -N at least N (name included)
  std::string_view flags;  // for COMMAND: space-separated
  int first_key, last_key, step;
  After (*run)(Context&);
};

// --- the commands ---

After cmd_ping(Context& c) {
  if (c.args.size() > 2) {
    append_error("wrong number of arguments for 'ping' command", c.out);
  } else if (c.args.size() == 2) {
    reply_bulk(c.args[1], c.out);
  } else {
    reply_simple("PONG", c.out);
  }
  return After::keep_open;
}

After cmd_echo(Context& c) {
  reply_bulk(c.args[1], c.out);
  return After::keep_open;
}

After cmd_get(Context& c) {
  std::string& out = c.out;
  if (!c.store.get(c.args[1], c.now, [&out](std::string_view v) { reply_bulk(v, out); })) {
    reply_nil(out);
  }
  return After::keep_open;
}

// SET key value [NX|XX] [EX seconds|PX milliseconds|KEEPTTL]
After cmd_set(Context& c) {
  Store::Condition cond = Store::Condition::always;
  Millis expire_at = 0;
  bool keep_ttl = false;
  bool have_ttl = false;
  for (std::size_t i = 3; i < c.args.size(); ++i) {
    std::string_view opt = c.args[i];
    bool more = i + 1 < c.args.size();
    if (iequals(opt, "nx") && cond != Store::Condition::if_present) {
      cond = Store::Condition::if_absent;
    } else if (iequals(opt, "xx") && cond != Store::Condition::if_absent) {
      cond = Store::Condition::if_present;
    } else if (iequals(opt, "keepttl") && !have_ttl) {
      keep_ttl = true;
    } else if ((iequals(opt, "ex") || iequals(opt, "px")) && !have_ttl && !keep_ttl && more) {
      have_ttl = true;
      std::int64_t n = 0;
      if (!parse_int64(c.args[++i], n)) {
        append_error("value is not an integer or out of range", c.out);
        return After::keep_open;
      }
      std::int64_t scale = iequals(opt, "ex") ? 1000 : 1;
      if (n <= 0 || n > (std::numeric_limits<std::int64_t>::max() - c.now) / scale) {
        append_error("invalid expire time in 'set' command", c.out);
        return After::keep_open;
      }
      expire_at = c.now + n * scale;
    } else {
      append_error("syntax error", c.out);
      return After::keep_open;
    }
  }
  if (c.store.set(c.args[1], c.args[2], cond, expire_at, keep_ttl, c.now)) {
    reply_ok(c.out);
  } else {
    reply_nil(c.out);
  }
  return After::keep_open;
}

After cmd_del(Context& c) {
  std::int64_t n = 0;
  for (std::size_t i = 1; i < c.args.size(); ++i) n += c.store.del(c.args[i], c.now) ? 1 : 0;
  reply_int(n, c.out);
  return After::keep_open;
}

After cmd_exists(Context& c) {
  std::int64_t n = 0;
  for (std::size_t i = 1; i < c.args.size(); ++i) n += c.store.exists(c.args[i], c.now) ? 1 : 0;
  reply_int(n, c.out);
  return After::keep_open;
}

After cmd_incr(Context& c) {
  std::int64_t result = 0;
  switch (c.store.incr(c.args[1], 1, c.now, result)) {
    case Store::IncrStatus::ok:
      reply_int(result, c.out);
      break;
    case Store::IncrStatus::not_integer:
      append_error("value is not an integer or out of range", c.out);
      break;
    case Store::IncrStatus::overflow:
      append_error("increment or decrement would overflow", c.out);
      break;
  }
  return After::keep_open;
}

// Each key is set atomically, but unlike Redis the whole MSET is not atomic across shards: a
// concurrent MGET on another loop may see some of the keys updated and not others.
After cmd_mset(Context& c) {
  if (c.args.size() % 2 == 0) {
    append_error("wrong number of arguments for 'mset' command", c.out);
    return After::keep_open;
  }
  for (std::size_t i = 1; i + 1 < c.args.size(); i += 2) {
    c.store.set(c.args[i], c.args[i + 1], Store::Condition::always, 0, false, c.now);
  }
  reply_ok(c.out);
  return After::keep_open;
}

After cmd_mget(Context& c) {
  // The one reply a few bytes can make huge (the same large value asked for many times): sized
  // before it is built, and refused past the limit rather than held in memory.
  std::size_t size = 1 + std::to_string(c.args.size() - 1).size() + 2;  // *N\r\n
  for (std::size_t i = 1; i < c.args.size() && size <= c.reply_limit; ++i) {
    if (!c.store.get(c.args[i], c.now,
                     [&size](std::string_view v) { size += bulk_reply_size(v.size()); })) {
      size += 5;  // $-1\r\n
    }
  }
  if (size > c.reply_limit) {
    append_error("MGET reply would pass the connection's output limit (" +
                     std::to_string(c.reply_limit) + " bytes)",
                 c.out);
    return After::close;
  }
  reply_array(c.args.size() - 1, c.out);
  std::string& out = c.out;
  for (std::size_t i = 1; i < c.args.size(); ++i) {
    if (!c.store.get(c.args[i], c.now, [&out](std::string_view v) { reply_bulk(v, out); })) {
      reply_nil(out);
    }
  }
  return After::keep_open;
}

After cmd_dbsize(Context& c) {
  reply_int(static_cast<std::int64_t>(c.store.size()), c.out);
  return After::keep_open;
}

After cmd_flushall(Context& c) {
  if (c.args.size() > 2 ||
      (c.args.size() == 2 && !iequals(c.args[1], "sync") && !iequals(c.args[1], "async"))) {
    append_error("syntax error", c.out);
    return After::keep_open;
  }
  c.store.clear();
  reply_ok(c.out);
  return After::keep_open;
}

After cmd_quit(Context& c) {
  reply_ok(c.out);
  return After::close;
}

After cmd_select(Context& c) {
  if (c.args[1] == "0") {
    reply_ok(c.out);
  } else {
    std::int64_t n = 0;
    append_error(parse_int64(c.args[1], n) ? "DB index is out of range"
                                           : "value is not an integer or out of range",
                 c.out);
  }
  return After::keep_open;
}

// What INFO appends (set once before serving: set_info_extra).
using InfoExtra = std::string (*)();
InfoExtra& info_extra() {
  static InfoExtra extra = nullptr;
  return extra;
}

After cmd_info(Context& c) {
  std::string text =
      "# Server\r\nredis_version:7.0.0\r\nredis_mode:standalone\r\nexecutable:evloop-example"
      "\r\n\r\n# Keyspace\r\ndb0:keys=" +
      std::to_string(c.store.size()) + ",expires=0,avg_ttl=0\r\n";
  if (info_extra() != nullptr) text.append("\r\n").append(info_extra()());
  reply_bulk(text, c.out);
  return After::keep_open;
}

After cmd_command(Context& c);
After cmd_config(Context& c);

constexpr std::array<Command, 16> kCommands{{
    {"get", 2, "readonly fast", 1, 1, 1, cmd_get},
    {"set", -3, "write denyoom", 1, 1, 1, cmd_set},
    {"ping", -1, "fast", 0, 0, 0, cmd_ping},
    {"incr", 2, "write denyoom fast", 1, 1, 1, cmd_incr},
    {"mget", -2, "readonly fast", 1, -1, 1, cmd_mget},
    {"mset", -3, "write denyoom", 1, -1, 2, cmd_mset},
    {"del", -2, "write", 1, -1, 1, cmd_del},
    {"exists", -2, "readonly fast", 1, -1, 1, cmd_exists},
    {"echo", 2, "fast", 0, 0, 0, cmd_echo},
    {"dbsize", 1, "readonly fast", 0, 0, 0, cmd_dbsize},
    {"flushall", -1, "write", 0, 0, 0, cmd_flushall},
    {"quit", -1, "fast", 0, 0, 0, cmd_quit},
    {"select", 2, "loading stale fast", 0, 0, 0, cmd_select},
    {"info", -1, "loading stale", 0, 0, 0, cmd_info},
    {"command", -1, "loading stale", 0, 0, 0, cmd_command},
    {"config", -2, "admin loading stale", 0, 0, 0, cmd_config},
}};

const Command* lookup(std::string_view name) {
  for (const Command& cmd : kCommands) {
    if (iequals(cmd.name, name)) return &cmd;
  }
  return nullptr;
}

// One entry of the COMMAND reply, in Redis 7's ten-field shape.
void reply_command_info(const Command& cmd, std::string& out) {
  reply_array(10, out);
  reply_bulk(cmd.name, out);
  reply_int(cmd.arity, out);
  std::size_t nflags = 0;
  for (std::string_view f = cmd.flags; !f.empty();) {
    ++nflags;
    std::size_t sp = f.find(' ');
    f = sp == std::string_view::npos ? std::string_view() : f.substr(sp + 1);
  }
  reply_array(nflags, out);
  for (std::string_view f = cmd.flags; !f.empty();) {
    std::size_t sp = f.find(' ');
    reply_simple(f.substr(0, sp), out);
    f = sp == std::string_view::npos ? std::string_view() : f.substr(sp + 1);
  }
  reply_int(cmd.first_key, out);
  reply_int(cmd.last_key, out);
  reply_int(cmd.step, out);
  for (int i = 0; i < 4; ++i) reply_array(0, out);  // ACL categories, tips, key specs, subcommands
}

void unknown_subcommand(std::string_view sub, std::string_view command, std::string& out) {
  std::string message = "unknown subcommand '";
  message.append(sub.substr(0, 128)).append("'. Try ");
  for (char ch : command) message += upper(ch);
  message += " HELP.";
  append_error(message, out);
}

// COMMAND, COMMAND COUNT, COMMAND INFO name..., COMMAND DOCS [name...] (empty: redis-cli then
// falls back to its built-in help).
After cmd_command(Context& c) {
  if (c.args.size() == 1) {
    reply_array(kCommands.size(), c.out);
    for (const Command& cmd : kCommands) reply_command_info(cmd, c.out);
  } else if (iequals(c.args[1], "count") && c.args.size() == 2) {
    reply_int(static_cast<std::int64_t>(kCommands.size()), c.out);
  } else if (iequals(c.args[1], "info")) {
    // A few bytes per name asked for make a reply of about 70 per name: built, but given up
    // (for an error) once it passes the limit, as an MGET's is.
    const std::size_t start = c.out.size();
    reply_array(c.args.size() - 2, c.out);
    for (std::size_t i = 2; i < c.args.size(); ++i) {
      const Command* cmd = lookup(c.args[i]);
      if (cmd != nullptr) {
        reply_command_info(*cmd, c.out);
      } else {
        c.out += "*-1\r\n";
      }
      if (c.out.size() - start > c.reply_limit) {
        c.out.resize(start);
        append_error("COMMAND INFO reply would pass the connection's output limit (" +
                         std::to_string(c.reply_limit) + " bytes)",
                     c.out);
        return After::close;
      }
    }
  } else if (iequals(c.args[1], "docs")) {
    reply_array(0, c.out);
  } else {
    unknown_subcommand(c.args[1], "command", c.out);
  }
  return After::keep_open;
}

// What CONFIG GET timeout answers: set once before serving (set_config_timeout).
std::string& config_timeout() {
  static std::string seconds = "0";
  return seconds;
}

// CONFIG GET pattern... over a few read-only parameters (redis-benchmark reads "save" and
// "appendonly" at start); CONFIG SET and others are refused.
After cmd_config(Context& c) {
  const std::pair<std::string_view, std::string_view> params[] = {{"save", ""},
                                                                  {"appendonly", "no"},
                                                                  {"databases", "1"},
                                                                  {"maxmemory", "0"},
                                                                  {"timeout", config_timeout()}};
  if (!iequals(c.args[1], "get")) {
    unknown_subcommand(c.args[1], "config", c.out);
    return After::keep_open;
  }
  if (c.args.size() < 3) {
    append_error("wrong number of arguments for 'config|get' command", c.out);
    return After::keep_open;
  }
  std::vector<std::pair<std::string_view, std::string_view>> found;
  for (const auto& param : params) {
    for (std::size_t i = 2; i < c.args.size(); ++i) {
      if (glob_match(c.args[i], param.first)) {
        found.push_back(param);
        break;
      }
    }
  }
  reply_array(found.size() * 2, c.out);
  for (const auto& [name, value] : found) {
    reply_bulk(name, c.out);
    reply_bulk(value, c.out);
  }
  return After::keep_open;
}

void unknown_command(const Args& args, std::string& out) {
  // Built with append(): GCC 12 at -O3 warns (-Wrestrict, falsely) on chains of operator+.
  std::string message = "unknown command '";
  message.append(args[0].substr(0, 128)).append("', with args beginning with: ");
  for (std::size_t i = 1; i < args.size() && message.size() < 128; ++i) {
    message.append("'").append(args[i].substr(0, 128 - message.size())).append("' ");
  }
  append_error(message, out);
}

}  // namespace

void set_config_timeout(std::int64_t seconds) {
  config_timeout().clear();
  append_int_text(seconds, config_timeout());
}

void set_info_extra(std::string (*extra)()) { info_extra() = extra; }

void append_error(std::string_view message, std::string& out) {
  out += "-ERR ";
  for (char ch : message) out += (ch == '\r' || ch == '\n') ? ' ' : ch;
  out += "\r\n";
}

After execute(const Args& args, Store& store, Millis now, std::string& out,
              std::size_t reply_limit) {
  const Command* cmd = lookup(args[0]);
  if (cmd == nullptr) {
    unknown_command(args, out);
    return After::keep_open;
  }
  auto n = static_cast<int>(args.size() > 1000000 ? 1000000 : args.size());
  if ((cmd->arity > 0 && n != cmd->arity) || (cmd->arity < 0 && n < -cmd->arity)) {
    std::string message = "wrong number of arguments for '";
    message.append(cmd->name).append("' command");
    append_error(message, out);
    return After::keep_open;
  }
  Context c{args, store, now, out, reply_limit};
  return cmd->run(c);
}

}  // namespace resp
