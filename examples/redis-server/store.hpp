// Example (not part of the library). The key-value store of the redis-server example, shared by
// every loop. It is split into shards, each a hash map behind its own mutex, so loops contend only
// when they touch the same shard at the same moment; no lock is held across shards.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace resp {

/// Milliseconds on a monotonic clock; expiry times are absolute values of it. 0 means "never".
using Millis = std::int64_t;

/// The current time for expiry purposes.
Millis now_millis() noexcept;

/// A thread-safe string store with per-key expiry. Expired keys vanish lazily (when touched) and
/// actively (expire_due(), called periodically).
class Store {
 public:
  /// How a SET decides whether to write.
  enum class Condition { always, if_absent, if_present };  // plain, NX, XX
  /// The outcome of incr().
  enum class IncrStatus { ok, not_integer, overflow };

  /// A store with `shards` shards (rounded up to a power of two).
  explicit Store(std::size_t shards = 64);

  /// Calls `fn(value)` with the value of `key` (under the shard's lock, so `fn` must be quick
  /// and must not call the store) and returns true; returns false if the key is absent.
  template <typename Fn>
  bool get(std::string_view key, Millis now, Fn&& fn);
  /// Sets `key` when `cond` allows; `expire_at` 0 = no expiry; `keep_ttl` keeps an existing
  /// expiry (SET ... KEEPTTL). Returns whether it wrote.
  bool set(std::string_view key, std::string_view value, Condition cond, Millis expire_at,
           bool keep_ttl, Millis now);
  /// Removes `key`; true if it was there.
  bool del(std::string_view key, Millis now);
  /// True if `key` is there.
  bool exists(std::string_view key, Millis now);
  /// Adds `delta` to the integer in `key` (absent = 0), keeping its expiry; the new value goes
  /// to `result`.
  IncrStatus incr(std::string_view key, std::int64_t delta, Millis now, std::int64_t& result);
  /// Number of keys (including expired ones not yet removed, as Redis's DBSIZE does).
  std::size_t size();
  /// Removes every key.
  void clear();
  /// Removes keys whose time has come; returns how many. Bounded work per shard per call.
  std::size_t expire_due(Millis now);

 private:
  struct Entry {
    std::string value;
    Millis expire_at = 0;
  };
  // Transparent hashing, so lookups by string_view allocate nothing.
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>{}(s);
    }
  };
  using Map = std::unordered_map<std::string, Entry, Hash, std::equal_to<>>;
  struct Shard {
    std::mutex mu;
    Map map;
    // Min-heap of (expiry, key) for active expiry. An entry is stale when the key's expiry has
    // changed since (or the key has gone); stale entries are dropped when they come due, or in a
    // rebuild when the heap grows much larger than the map, in entries or in bytes (each entry
    // holds a copy of its key).
    std::vector<std::pair<Millis, std::string>> timers;
    std::size_t key_bytes = 0;        // The bytes of the map's keys.
    std::size_t timer_key_bytes = 0;  // The bytes of the keys copied into `timers`.
  };

  Shard& shard_for(std::string_view key) noexcept;
  // Finds a live entry, erasing it first if it has expired. Caller holds the shard's lock.
  static Entry* find_live(Shard& s, std::string_view key, Millis now);
  // Adds `key` (absent) to the map, and removes an entry from it, keeping key_bytes.
  static Entry& insert(Shard& s, std::string_view key);
  static void erase(Shard& s, Map::iterator it);
  // Pushes the timer of `key`, whose entry already carries `expire_at`.
  static void add_timer(Shard& s, std::string_view key, Millis expire_at);

  std::vector<std::unique_ptr<Shard>> shards_;
  std::size_t mask_;
};

template <typename Fn>
bool Store::get(std::string_view key, Millis now, Fn&& fn) {
  Shard& s = shard_for(key);
  std::lock_guard lock(s.mu);
  Entry* e = find_live(s, key, now);
  if (e == nullptr) return false;
  fn(std::string_view(e->value));
  return true;
}

}  // namespace resp
