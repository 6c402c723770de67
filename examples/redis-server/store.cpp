// Example. The sharded store (see store.hpp).
#include "store.hpp"

#include "int_text.hpp"

#include <algorithm>
#include <chrono>
#include <limits>

namespace resp {
namespace {

// Orders the timer heap so that the earliest expiry is on top.
bool later(const std::pair<Millis, std::string>& a, const std::pair<Millis, std::string>& b) {
  return a.first > b.first;
}

}  // namespace

Millis now_millis() noexcept {
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count() + 1;
}

Store::Store(std::size_t shards) {
  std::size_t n = 1;
  while (n < shards) n <<= 1;
  mask_ = n - 1;
  for (std::size_t i = 0; i < n; ++i) shards_.push_back(std::make_unique<Shard>());
}

Store::Shard& Store::shard_for(std::string_view key) noexcept {
  // Mix the hash so that the shard index does not correlate with the map's bucket index.
  std::uint64_t h = Hash{}(key)*0x9E3779B97F4A7C15ULL;
  return *shards_[(h >> 40) & mask_];
}

Store::Entry* Store::find_live(Shard& s, std::string_view key, Millis now) {
  auto it = s.map.find(key);
  if (it == s.map.end()) return nullptr;
  if (it->second.expire_at != 0 && it->second.expire_at <= now) {
    erase(s, it);
    return nullptr;
  }
  return &it->second;
}

Store::Entry& Store::insert(Shard& s, std::string_view key) {
  s.key_bytes += key.size();
  return s.map.try_emplace(std::string(key)).first->second;
}

void Store::erase(Shard& s, Map::iterator it) {
  s.key_bytes -= it->first.size();
  s.map.erase(it);
}

void Store::add_timer(Shard& s, std::string_view key, Millis expire_at) {
  // Mostly stale: rebuild from the live expiries (this key's new one among them). Counted in
  // bytes too, since every entry holds a copy of its key: a client that renews the expiry of one
  // large key again and again (SET k v EX n) would otherwise make the heap hold a copy per
  // renewal, up to 1,024 per shard (a 1 MiB key renewed 800 times held 800 MiB for one key). So
  // the copies stay within twice the keys' own bytes plus 64 KiB, and a rebuild, which walks the
  // map, comes only after more bytes were pushed than the map has keys.
  constexpr std::size_t kSlackBytes = 64 * 1024;
  if (s.timers.size() > 2 * s.map.size() + 1024 ||
      s.timer_key_bytes + key.size() > 2 * s.key_bytes + kSlackBytes) {
    s.timers.clear();
    s.timer_key_bytes = 0;
    for (const auto& [k, e] : s.map) {
      if (e.expire_at == 0) continue;
      s.timers.emplace_back(e.expire_at, k);
      s.timer_key_bytes += k.size();
    }
    std::make_heap(s.timers.begin(), s.timers.end(), later);
    return;
  }
  s.timers.emplace_back(expire_at, std::string(key));
  s.timer_key_bytes += key.size();
  std::push_heap(s.timers.begin(), s.timers.end(), later);
}

bool Store::set(std::string_view key, std::string_view value, Condition cond, Millis expire_at,
                bool keep_ttl, Millis now) {
  Shard& s = shard_for(key);
  std::lock_guard lock(s.mu);
  Entry* e = find_live(s, key, now);
  if ((cond == Condition::if_absent && e != nullptr) ||
      (cond == Condition::if_present && e == nullptr)) {
    return false;
  }
  if (e == nullptr) e = &insert(s, key);
  e->value.assign(value);
  if (!keep_ttl) {
    e->expire_at = expire_at;
    if (expire_at != 0) add_timer(s, key, expire_at);
  }
  return true;
}

bool Store::del(std::string_view key, Millis now) {
  Shard& s = shard_for(key);
  std::lock_guard lock(s.mu);
  if (find_live(s, key, now) == nullptr) return false;
  erase(s, s.map.find(key));
  return true;
}

bool Store::exists(std::string_view key, Millis now) {
  Shard& s = shard_for(key);
  std::lock_guard lock(s.mu);
  return find_live(s, key, now) != nullptr;
}

Store::IncrStatus Store::incr(std::string_view key, std::int64_t delta, Millis now,
                              std::int64_t& result) {
  Shard& s = shard_for(key);
  std::lock_guard lock(s.mu);
  Entry* e = find_live(s, key, now);
  std::int64_t value = 0;
  if (e != nullptr && !parse_int64(e->value, value)) return IncrStatus::not_integer;
  if ((delta > 0 && value > std::numeric_limits<std::int64_t>::max() - delta) ||
      (delta < 0 && value < std::numeric_limits<std::int64_t>::min() - delta)) {
    return IncrStatus::overflow;
  }
  value += delta;
  if (e == nullptr) e = &insert(s, key);
  e->value = std::to_string(value);
  result = value;
  return IncrStatus::ok;
}

std::size_t Store::size() {
  std::size_t n = 0;
  for (auto& s : shards_) {
    std::lock_guard lock(s->mu);
    n += s->map.size();
  }
  return n;
}

void Store::clear() {
  for (auto& s : shards_) {
    Map old;
    std::vector<std::pair<Millis, std::string>> old_timers;
    {
      std::lock_guard lock(s->mu);
      old.swap(s->map);
      old_timers.swap(s->timers);
      s->key_bytes = s->timer_key_bytes = 0;
    }
    // `old` is freed here, outside the lock.
  }
}

std::size_t Store::expire_due(Millis now) {
  constexpr std::size_t kBudgetPerShard = 256;  // Keeps one call short even after a mass expiry.
  std::size_t removed = 0;
  for (auto& sp : shards_) {
    Shard& s = *sp;
    std::lock_guard lock(s.mu);
    for (std::size_t i = 0;
         i < kBudgetPerShard && !s.timers.empty() && s.timers.front().first <= now; ++i) {
      std::pop_heap(s.timers.begin(), s.timers.end(), later);
      auto [when, key] = std::move(s.timers.back());
      s.timers.pop_back();
      s.timer_key_bytes -= key.size();
      auto it = s.map.find(key);
      if (it != s.map.end() && it->second.expire_at == when) {
        erase(s, it);
        ++removed;
      }
    }
  }
  return removed;
}

}  // namespace resp
