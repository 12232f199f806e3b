#!/bin/sh
# Run a command inside a loopback-only network namespace (Ray then binds to 127.0.0.1 and no traffic
# leaves the machine). Falls back to running it directly where unshare is not permitted.
if unshare -n true 2>/dev/null; then
  exec unshare -n sh -c 'ip link set lo up; exec "$@"' sh "$@"
fi
echo "loopback.sh: unshare -n not permitted here; running without a private network namespace" >&2
exec "$@"
