#!/bin/sh
# Run by the nginx image's entrypoint before Nginx starts: writes the login file that protects
# /flower/ from FLOWER_USER and FLOWER_PASSWORD, the same credentials Flower itself checks.
# {PLAIN} needs no hashing tool in the image; the password is in this container's environment
# anyway, and the file lives only inside the container.
set -eu
file="${FLOWER_HTPASSWD_FILE:-/etc/nginx/htpasswd/flower}"
: "${FLOWER_PASSWORD:?FLOWER_PASSWORD must be set: it protects /flower/}"
mkdir -p "$(dirname "$file")"
umask 077
printf '%s:{PLAIN}%s\n' "${FLOWER_USER:-admin}" "$FLOWER_PASSWORD" > "$file"
# Nginx's workers (user nginx) read the file at each request.
if chgrp nginx "$file" 2>/dev/null; then chmod 0640 "$file"; else chmod 0644 "$file"; fi
echo "$0: wrote the /flower/ login for user ${FLOWER_USER:-admin}"
