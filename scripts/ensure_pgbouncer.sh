#!/bin/sh
# Installs Debian's PgBouncer for tests/deploy/test_pgbouncer.py when it is missing (idempotent). The
# test runs it as a throwaway server of its own with pgbouncer/pgbouncer.ini (the pooling settings
# docker-compose.pgbouncer.yml uses); the package's system service is never used (policy-rc.d keeps
# apt from starting it). Needs root and a package mirror; otherwise it says so and the test skips itself.
set -u
PGBOUNCER="${PGBOUNCER_PATH:-/usr/sbin/pgbouncer}"
[ -x "$PGBOUNCER" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "==> PgBouncer is missing and this is not root: the PgBouncer test will be skipped (sudo apt-get install pgbouncer)."
    exit 0
fi
echo "==> Installing Debian's PgBouncer for the PgBouncer test (apt-get)"
export DEBIAN_FRONTEND=noninteractive
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && REMOVE_POLICY=1
fi
status=1
if apt-get install -y -qq --no-install-recommends pgbouncer >/dev/null 2>&1 \
        || { apt-get update -qq && apt-get install -y -qq --no-install-recommends pgbouncer >/dev/null; }; then
    status=0
fi
[ "${REMOVE_POLICY:-0}" = 1 ] && rm -f /usr/sbin/policy-rc.d
[ "$status" = 0 ] && exit 0
echo "==> Could not install PgBouncer: the PgBouncer test will be skipped."
exit 0
