#!/bin/sh
# Installs Debian's Dovecot (IMAP and POP3) for the bounce mailbox tests when it is missing
# (idempotent). The tests run it as a throwaway server of their own; the package's system service is
# never used (policy-rc.d keeps apt from starting it). Needs root and a package mirror; otherwise it
# says so and the Dovecot tests skip themselves with the reason.
set -u
DOVECOT="${DOVECOT_PATH:-/usr/sbin/dovecot}"
[ -x "$DOVECOT" ] && [ -d /usr/lib/dovecot/modules ] && [ -x /usr/lib/dovecot/imap ] && [ -x /usr/lib/dovecot/pop3 ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "==> Dovecot is missing and this is not root: bounce mailbox tests will be skipped (sudo apt-get install dovecot-imapd dovecot-pop3d)."
    exit 0
fi
echo "==> Installing Debian's Dovecot for the bounce mailbox tests (apt-get)"
export DEBIAN_FRONTEND=noninteractive
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && REMOVE_POLICY=1
fi
status=1
# The package lists ensure_chromium.sh just updated usually serve; only a failed install updates them again.
if apt-get install -y -qq --no-install-recommends dovecot-imapd dovecot-pop3d >/dev/null 2>&1 \
        || { apt-get update -qq && apt-get install -y -qq --no-install-recommends dovecot-imapd dovecot-pop3d >/dev/null; }; then
    status=0
fi
[ "${REMOVE_POLICY:-0}" = 1 ] && rm -f /usr/sbin/policy-rc.d
[ "$status" = 0 ] && exit 0
echo "==> Could not install Dovecot: bounce mailbox tests will be skipped."
exit 0
