# syntax=docker/dockerfile:1
# One image for every Python process: web (gunicorn), Celery workers, beat, Flower and the mail sink.

# --- build stage: dependencies into a virtualenv ----------------------------------------------
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /build
COPY requirements.txt .
# Every dependency ships a manylinux wheel (psycopg[binary] included), so no compiler is needed.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir -r requirements.txt

# --- runtime stage ----------------------------------------------------------------------------
FROM python:3.11-slim-bookworm AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=mailer_project.settings \
    STATIC_ROOT=/app/staticfiles \
    MEDIA_ROOT=/app/var/media
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY . .
# Static files are collected at build time; the web container copies them to the volume Nginx serves.
RUN ./docker/collect_static.sh \
    && mkdir -p /app/var/media /app/var/mail /srv/static \
    && chown -R app:app /app/var /srv/static
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "/app/docker/healthcheck.py", "web"]
ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["gunicorn", "--config", "/app/docker/gunicorn.conf.py"]
