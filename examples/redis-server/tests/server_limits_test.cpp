// Unit tests of the evloop limits the redis-server derives from its parser's: by arithmetic,
// for the default configuration and the extremes of --max-bulk, whatever SET accepts fits in
// the input and GET can send it back within the output limit.
#include "server_limits.hpp"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

#include "commands.hpp"
#include "store.hpp"

namespace resp {
namespace {

TEST(ServerLimits, BulkReplySizeIsTheSizeOfTheReply) {
  Store store;
  for (std::size_t size : {0, 1, 9, 10, 99, 100, 12345, 1000000}) {
    const std::string value(size, 'v');
    std::string out;
    execute({"SET", "k", value}, store, 1000, out);
    out.clear();
    execute({"GET", "k"}, store, 1000, out);
    EXPECT_EQ(out.size(), bulk_reply_size(size)) << size;
  }
}

TEST(ServerLimits, WhatSetAcceptsFitsTheInputAndGetCanSendItBack) {
  const std::size_t defaults = Limits{}.max_bulk_bytes;
  for (std::size_t max_bulk : {std::size_t{1}, std::size_t{1000}, std::size_t{4} << 20, defaults,
                               std::size_t{512} << 20}) {
    SCOPED_TRACE(max_bulk);
    Limits limits;
    limits.max_bulk_bytes = max_bulk;
    evloop::Options options;
    fit_limits(limits, options);
    // SET of the largest key and value: "*3\r\n$3\r\nSET\r\n$N\r\nkey\r\n$N\r\nvalue\r\n".
    const std::size_t set = 4 + bulk_reply_size(3) + 2 * bulk_reply_size(max_bulk);
    EXPECT_LE(set, options.input_limit);
    // Its +OK and the GET's reply, made from one read, behind a reply still pending up to the
    // high-water mark (evloop reads no more above it).
    const std::size_t get = options.output_high_water + 5 + bulk_reply_size(max_bulk);
    EXPECT_LE(get, options.output_limit);
    EXPECT_GE(options.output_limit, evloop::Options{}.output_limit);
    EXPECT_LT(options.output_low_water, options.output_high_water);
    EXPECT_LT(options.output_high_water, options.output_limit);
  }
  // The default configuration, spelled out: evloop's 64 MiB limit alone was 13 bytes short.
  Limits limits;
  evloop::Options options;
  EXPECT_GT(bulk_reply_size(limits.max_bulk_bytes), options.output_limit);
  fit_limits(limits, options);
  EXPECT_EQ(options.output_limit, (1u << 20) + (64u << 20) + 13 + (1u << 20));
}

}  // namespace
}  // namespace resp
