// Public. The whole API in one include.
#pragma once

#include "evloop/address.hpp"
#include "evloop/conn.hpp"
#include "evloop/conn_options.hpp"
#include "evloop/error.hpp"
#include "evloop/handlers.hpp"
#include "evloop/loop.hpp"
#include "evloop/loop_group.hpp"
#include "evloop/options.hpp"
#include "evloop/server.hpp"
#include "evloop/shared_buffer.hpp"
#include "evloop/stats.hpp"
#include "evloop/udp.hpp"
#include "evloop/upgrade.hpp"
