#!/bin/sh
# Entrypoint of every container built from the Dockerfile (web, workers, beat, flower, mail sink).
#   1. wait until PostgreSQL and Redis answer (WAIT_FOR_SERVICES=0 skips it, e.g. for the mail sink);
#   2. web only (RUN_MIGRATIONS=1): apply migrations, load the starter templates, and refresh the
#      static files in the volume Nginx serves (STATIC_VOLUME);
#   3. exec the command, so it becomes PID 1 and receives the stop signal directly.
set -eu

cd "$(dirname "$0")/.."

if [ "${WAIT_FOR_SERVICES:-1}" = "1" ]; then
    python docker/wait_for_services.py
fi

if [ "${RUN_MIGRATIONS:-0}" = "1" ]; then
    python manage.py migrate --noinput
    python manage.py load_email_templates
    if [ -n "${STATIC_VOLUME:-}" ]; then
        # The image holds this release's files; hashed names let old ones stay for cached pages.
        cp -R "${STATIC_ROOT:-staticfiles}/." "$STATIC_VOLUME/"
    fi
fi

exec "$@"
