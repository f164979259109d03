#!/bin/sh
# Installs Debian's chromium for the browser tests when it is missing (idempotent). Needs root and a
# package mirror; otherwise it says so and the browser tests skip themselves with the reason.
set -u
CHROMIUM="${CHROMIUM_PATH:-/usr/bin/chromium}"
[ -x "$CHROMIUM" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "==> $CHROMIUM is missing and this is not root: browser tests will be skipped (sudo apt-get install chromium)."
    exit 0
fi
echo "==> Installing Debian's chromium for the browser tests (apt-get)"
export DEBIAN_FRONTEND=noninteractive
if apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; then
    exit 0
fi
echo "==> Could not install chromium: browser tests will be skipped."
exit 0
