#!/bin/sh
# Collect static files into STATIC_ROOT (default ./staticfiles) with production settings, as the
# Dockerfile does at build time. Production settings refuse to load without their secrets, so
# build-only placeholders stand in: collectstatic never connects to anything.
set -eu
cd "$(dirname "$0")/.."
DEBUG=False \
SECRET_KEY=build-time-placeholder-not-used-at-runtime \
LINK_SIGNING_KEY=build-time-placeholder-not-used-at-runtime \
SITE_URL=https://build.invalid \
DATABASE_URL=postgres://build@127.0.0.1:1/build \
REDIS_URL=redis://127.0.0.1:1/0 \
ALLOWED_HOSTS=localhost \
EMAIL_HOST=localhost \
python manage.py collectstatic --noinput --verbosity 1
