"""Gunicorn settings for the web container (docker/entrypoint.sh runs `gunicorn -c docker/gunicorn.conf.py`).

Every value can be changed from the environment without rebuilding the image.
"""

import multiprocessing
import os

wsgi_app = "mailer_project.wsgi:application"
bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
# gthread workers keep connections alive, so Nginx's upstream keepalive pool is actually reused.
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", min(multiprocessing.cpu_count() * 2 + 1, 8)))
threads = int(os.environ.get("GUNICORN_THREADS", 4))
# Recipient files up to IMPORT_MAX_UPLOAD_MB arrive through the admin: allow for a slow upload.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 120))
graceful_timeout = 30
# Longer than Nginx's upstream keepalive_timeout (60s), so Nginx always closes idle connections first.
keepalive = 75
# Recycle workers now and then, spread out so they do not all restart at once.
max_requests = 2000
max_requests_jitter = 200
# A memory-backed heartbeat directory: Docker's overlay filesystem can stall the default one.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
accesslog = "-"
# Link tokens (/u/, /t/) are credentials of a recipient: the access log shows "***" instead.
logger_class = "mailer_project.access_log.TokenMaskingLogger"
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
capture_output = True
# X-Forwarded-* headers (the client's address and scheme) are trusted only from the proxy's network
# (docker-compose.prod.yml sets its frontend subnet), never from anyone: by default only this machine.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
