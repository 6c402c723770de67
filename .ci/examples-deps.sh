#!/usr/bin/env bash
# Installs what the example and upgrade tests drive (curl, redis-tools, redis-server, wrk, systemd,
# nginx, haproxy):
# the `examples` group of .ci/deps.sh.
exec bash "$(dirname "$0")/deps.sh" examples
