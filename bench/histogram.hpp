// Internal to bench/. A fixed-memory latency histogram (log-linear buckets, HdrHistogram-like):
// exact below 128 ns, then 64 sub-buckets per power of two, i.e. at most ~1.6% error per value.
// Recording is O(1) and allocation-free, so it can sit on the load generator's hot path.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>

namespace bench {

class Histogram {
 public:
  /// Records one value (nanoseconds).
  void record(std::uint64_t ns) noexcept {
    ++counts_[index(ns)];
    ++total_;
    sum_ += ns;
    if (ns > max_) max_ = ns;
  }

  /// Adds every value recorded in `other`.
  void merge(const Histogram& other) noexcept {
    for (std::size_t i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
    total_ += other.total_;
    sum_ += other.sum_;
    if (other.max_ > max_) max_ = other.max_;
  }

  void clear() noexcept { *this = Histogram{}; }

  std::uint64_t count() const noexcept { return total_; }
  std::uint64_t max() const noexcept { return max_; }
  double mean() const noexcept { return total_ ? static_cast<double>(sum_) / total_ : 0.0; }

  /// The value at quantile q (0..1): the midpoint of the bucket holding it, capped at max().
  std::uint64_t quantile(double q) const noexcept {
    if (total_ == 0) return 0;
    auto rank = static_cast<std::uint64_t>(q * static_cast<double>(total_));
    if (rank >= total_) rank = total_ - 1;
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen > rank) {
        const std::uint64_t mid = midpoint(i);
        return mid < max_ ? mid : max_;
      }
    }
    return max_;
  }

 private:
  static constexpr unsigned kSubBits = 6;                 // 64 sub-buckets per octave
  static constexpr std::size_t kLinear = 2u << kSubBits;  // values 0..127 exact
  static constexpr std::size_t kBuckets = kLinear + (64 - kSubBits - 1) * (1u << kSubBits);

  static std::size_t index(std::uint64_t v) noexcept {
    if (v < kLinear) return static_cast<std::size_t>(v);
    const unsigned bits = static_cast<unsigned>(std::bit_width(v));  // >= 8
    const unsigned shift = bits - kSubBits - 1;                      // v >> shift in [64, 127]
    const std::size_t sub = static_cast<std::size_t>(v >> shift) - (1u << kSubBits);
    return kLinear + (shift - 1) * (1u << kSubBits) + sub;
  }

  static std::uint64_t midpoint(std::size_t i) noexcept {
    if (i < kLinear) return i;
    const std::size_t shift = (i - kLinear) / (1u << kSubBits) + 1;
    const std::uint64_t top = (i - kLinear) % (1u << kSubBits) + (1u << kSubBits);
    return (top << shift) + (std::uint64_t{1} << shift) / 2;
  }

  std::array<std::uint64_t, kBuckets> counts_{};
  std::uint64_t total_ = 0;
  std::uint64_t sum_ = 0;
  std::uint64_t max_ = 0;
};

}  // namespace bench
