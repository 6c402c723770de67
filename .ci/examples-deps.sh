#!/usr/bin/env bash
# Installs the clients and servers the example tests drive (curl, redis-tools, redis-server, wrk):
# the `examples` group of .ci/deps.sh.
exec bash "$(dirname "$0")/deps.sh" examples
