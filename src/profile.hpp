// Internal. A connection's profile: its handlers and its options, shared by every connection
// that has the same (all connections a listener accepts), immutable once made. A connection
// reads its own profile directly on the hot path.
#pragma once

#include <memory>
#include <string_view>

#include "evloop/conn_options.hpp"
#include "evloop/error.hpp"
#include "evloop/handlers.hpp"

namespace evloop::detail {

struct Profile {
  Handlers handlers;
  ConnOptions options;
};

using ProfilePtr = std::shared_ptr<const Profile>;

/// Checks `options`; errc::bad_option with a message naming the field (and, where two fields
/// disagree, which of them the user set and which kept its default). `where` starts the message
/// ("options", "connect tcp://...").
Status validate(const ConnOptions& options, std::string_view where);

}  // namespace evloop::detail
