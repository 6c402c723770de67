// Public. The whole API in one include.
#pragma once

#include "evloop/address.hpp"
#include "evloop/conn.hpp"
#include "evloop/error.hpp"
#include "evloop/loop.hpp"
#include "evloop/options.hpp"
#include "evloop/server.hpp"
#include "evloop/stats.hpp"
