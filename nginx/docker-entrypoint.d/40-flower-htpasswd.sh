#!/bin/sh
# Run by the nginx image's entrypoint before Nginx starts. Writes, for /flower/:
#   - the login file, from FLOWER_USER and FLOWER_PASSWORD (the same login Flower itself checks),
#     with the password hashed (SHA-512 crypt, which nginx checks through the C library's crypt());
#   - the address allow-list, from FLOWER_ALLOW_IPS (comma-separated addresses or CIDR ranges;
#     empty: nobody reaches /flower/, deny by default).
# A weak login stops the start: a password shorter than 16 characters, or one that holds the user name.
# FLOWER_HTPASSWD_FILE and FLOWER_ACCESS_FILE move the two files (the tests do; nginx/snippets/
# locations.conf reads them from /etc/nginx/htpasswd/). The nginx image has BusyBox's mkpasswd but
# no openssl; Debian (the tests) has openssl. The password goes through a pipe, never onto a
# command line.
set -eu
file="${FLOWER_HTPASSWD_FILE:-/etc/nginx/htpasswd/flower}"
access="${FLOWER_ACCESS_FILE:-$(dirname "$file")/flower-access.conf}"
: "${FLOWER_PASSWORD:?FLOWER_PASSWORD must be set: it protects /flower/}"
user="${FLOWER_USER:-flower-ops}"
if [ "${#FLOWER_PASSWORD}" -lt 16 ]; then
    echo "$0: FLOWER_PASSWORD is too weak: use at least 16 random characters, e.g. python -c \"import secrets; print(secrets.token_urlsafe(32))\"" >&2
    exit 1
fi
case "$FLOWER_PASSWORD" in
    *"$user"*) echo "$0: FLOWER_PASSWORD is too weak: it contains the user name" >&2; exit 1 ;;
esac
mkdir -p "$(dirname "$file")" "$(dirname "$access")"
umask 077

if command -v openssl >/dev/null 2>&1; then
    hash="$(printf '%s' "$FLOWER_PASSWORD" | openssl passwd -6 -stdin)"
elif command -v mkpasswd >/dev/null 2>&1; then
    hash="$(printf '%s' "$FLOWER_PASSWORD" | mkpasswd -m sha512 -s)"
else
    echo "$0: neither openssl nor mkpasswd is available to hash the /flower/ password" >&2
    exit 1
fi
case "$hash" in
    '$6$'*) ;;
    *) echo "$0: hashing the /flower/ password failed" >&2; exit 1 ;;
esac
printf '%s:%s\n' "$user" "$hash" > "$file"

rules="# Written at start from FLOWER_ALLOW_IPS by $0; empty: nobody."
if [ -n "${FLOWER_ALLOW_IPS:-}" ]; then
    for entry in $(printf '%s' "$FLOWER_ALLOW_IPS" | tr ',' ' '); do
        # Only address characters: anything else could smuggle directives into the config.
        case "$entry" in
            *[!0-9A-Fa-f:./]*) echo "$0: FLOWER_ALLOW_IPS: not an address or CIDR range: $entry" >&2; exit 1 ;;
        esac
        rules="$rules
allow $entry;"
    done
fi
rules="$rules
deny all;"
printf '%s\n' "$rules" > "$access"

# Nginx's workers (user nginx) read the files at each request.
for written in "$file" "$access"; do
    if chgrp nginx "$written" 2>/dev/null; then chmod 0640 "$written"; else chmod 0644 "$written"; fi
done
echo "$0: wrote the /flower/ login for user $user, allowed from ${FLOWER_ALLOW_IPS:-nowhere (FLOWER_ALLOW_IPS is empty)}"
