"""Settings for the bulk mailer. Every value comes from the environment (see .env.example).

DEBUG is the switch between development and production: with DEBUG on, every variable has a
local default so that `make run` works from a fresh clone; with DEBUG off, the variables marked
"required in production" must be set, and a missing one stops the process at start with its name.
"""

import base64
import hashlib
from pathlib import Path

import environ
from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A local .env is optional; real environment variables always win over it.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)


def _required_in_production(name, dev_default, cast=str):
    """Read NAME; in development fall back to DEV_DEFAULT, in production refuse to start without it."""
    if name in env.ENVIRON and env.ENVIRON[name] != "":
        return env.get_value(name, cast=cast)
    if DEBUG:
        return dev_default
    raise ImproperlyConfigured(
        f"Set the {name} environment variable: it is required in production (DEBUG is off). "
        f"See .env.example."
    )


SECRET_KEY = _required_in_production("SECRET_KEY", "dev-only-insecure-key-do-not-use-in-production")
# Earlier SECRET_KEYs, still accepted for what they signed (sessions, password reset links, and
# links mailed before LINK_SIGNING_KEY existed) while SECRET_KEY rotates.
SECRET_KEY_FALLBACKS = [key.strip() for key in env.list("SECRET_KEY_FALLBACKS", default=[]) if key.strip()]
ALLOWED_HOSTS = _required_in_production(
    "ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"], cast=list
)
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")
if not DEBUG and not SITE_URL.lower().startswith("https://"):
    raise ImproperlyConfigured(
        f"SITE_URL must be an https:// URL in production (DEBUG is off), not {SITE_URL!r}: it is the base of "
        f"the unsubscribe and tracking links in every email. See .env.example."
    )
# Keys of the links in emails (campaigns/message/signed_links.py), separate from SECRET_KEY so either can rotate
# alone. Rotation: the new key here, the old one(s) in LINK_SIGNING_KEY_FALLBACKS (comma-separated)
# for as long as mailed links must work (docs/security.md, "Rotating keys").
LINK_SIGNING_KEY = _required_in_production("LINK_SIGNING_KEY", f"dev-link-signing-key:{SECRET_KEY}")
# Blank entries ("old,", "a, ,b") are dropped: an empty key would accept links anyone can make.
LINK_SIGNING_KEY_FALLBACKS = [key.strip() for key in env.list("LINK_SIGNING_KEY_FALLBACKS", default=[])
                              if key.strip()]
# Fernet keys that encrypt the sending accounts' passwords and API keys in the database
# (campaigns/security/encryption.py), comma-separated: the first encrypts, every one decrypts, so a key
# rotates by putting the new one first (then `manage.py reencrypt_secrets`). Unset in development:
# one derived from SECRET_KEY. Unset in production: accounts with a secret cannot be saved, with a
# message naming this variable; the environment's own SENDGRID_API_KEY and EMAIL_HOST keep working.
FIELD_ENCRYPTION_KEY = [key.strip() for key in env.list("FIELD_ENCRYPTION_KEY", default=[]) if key.strip()]
if not FIELD_ENCRYPTION_KEY and DEBUG:
    FIELD_ENCRYPTION_KEY = [base64.urlsafe_b64encode(hashlib.sha256(f"field-encryption:{SECRET_KEY}".encode())
                                                     .digest()).decode()]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "csp",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "campaigns",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "mailer_project.csp.MailerCSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "mailer_project.urls"
WSGI_APPLICATION = "mailer_project.wsgi.application"
ASGI_APPLICATION = "mailer_project.asgi.application"
TEST_RUNNER = "mailer_project.test_runner.PytestTestRunner"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Data stores -------------------------------------------------------------------------------
DATABASES = {
    "default": environ.Env.db_url_config(
        _required_in_production("DATABASE_URL", "postgres://mailer@127.0.0.1:5433/mailer")
    )
}
if not DATABASES["default"]["ENGINE"].endswith("postgresql"):
    raise ImproperlyConfigured("DATABASE_URL must point at PostgreSQL (postgres://...): nothing else is supported.")
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Behind PgBouncer in transaction mode (docker-compose.pgbouncer.yml, docs/scaling.md): Django's
# QuerySet.iterator() must not open server-side cursors, which outlive the transaction that made them.
DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = env.bool("DB_DISABLE_SERVER_SIDE_CURSORS", default=False)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = _required_in_production("REDIS_URL", "redis://127.0.0.1:6380/0")
CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "mailer",
        "OPTIONS": {"CLIENT_CLASS": "django_redis.client.DefaultClient"},
    }
}

# --- Auth, i18n, static ------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
MEDIA_URL = "media/"
MEDIA_ROOT = env.path("MEDIA_ROOT", default=BASE_DIR / "var" / "media")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG

# --- Security (production) ---------------------------------------------------------------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (django-csp; mailer_project/csp.py): scripts and styles from this site,
# inline ones only with the request's nonce ({{ request.csp_nonce }}).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, NONCE],
        "img-src": [SELF, "data:"],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}
# /healthz and /readyz are probed over plain HTTP inside the compose network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]

# --- Mail providers ----------------------------------------------------------------------------
SENDGRID_API_KEY = env.str("SENDGRID_API_KEY", default="")
SENDGRID_API_HOST = env.str("SENDGRID_API_HOST", default="https://api.sendgrid.com").rstrip("/")
SENDGRID_RATE_LIMIT_PER_SEC = env.float("SENDGRID_RATE_LIMIT_PER_SEC", default=1000)
SENDGRID_TIMEOUT_SECONDS = env.float("SENDGRID_TIMEOUT_SECONDS", default=30)
SENDGRID_WEBHOOK_PUBLIC_KEY = env.str("SENDGRID_WEBHOOK_PUBLIC_KEY", default="")
# Amazon SES events through SNS (/webhooks/ses/): the topic ARNs whose messages are taken (empty: none),
# and certificates trusted in addition to SNS's own (tests only; PEM text or file paths).
SES_SNS_TOPIC_ARNS = env.list("SES_SNS_TOPIC_ARNS", default=[])
SES_SNS_TRUSTED_CERTIFICATES = env.list("SES_SNS_TRUSTED_CERTIFICATES", default=[])

# With neither SendGrid nor an SMTP host configured, development mail goes to the local capture
# sink that `make run` starts (MAIL_SINK_PORT).
MAIL_SINK_PORT = env.int("MAIL_SINK_PORT", default=1025)
MAIL_SINK_DIR = env.str("MAIL_SINK_DIR", default=str(BASE_DIR / "var" / "mail"))
EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_HOST = env.str("EMAIL_HOST", default="")
if not EMAIL_HOST and not SENDGRID_API_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "Set SENDGRID_API_KEY or EMAIL_HOST: production needs a way to send mail. See .env.example."
        )
    EMAIL_HOST = "127.0.0.1"
    EMAIL_PORT = MAIL_SINK_PORT
else:
    EMAIL_PORT = env.int("EMAIL_PORT", default=587)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=30)
SMTP_RATE_LIMIT_PER_SEC = env.float("SMTP_RATE_LIMIT_PER_SEC", default=0)  # 0: no limit
# The length of a rolling "day" of a sending account's daily limit (86400). Tests shorten it; a
# calendar day (an account's other choice) always runs midnight to midnight in TIME_ZONE.
SENDING_ACCOUNT_DAY_SECONDS = env.int("SENDING_ACCOUNT_DAY_SECONDS", default=86400)
# Timeout of an account's "Test connection" and of its SMTP sends.
SENDING_ACCOUNT_TIMEOUT_SECONDS = env.int("SENDING_ACCOUNT_TIMEOUT_SECONDS", default=30)
# The DNS server of the SPF, DKIM, DMARC and MX checks (campaigns.deliverability.dns_checks), as
# "host:port"; empty: the system's resolver. The tests point it at their local DNS server.
DNS_RESOLVER = env.str("DNS_RESOLVER", default="")
DNS_TIMEOUT_SECONDS = env.float("DNS_TIMEOUT_SECONDS", default=5)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Acme <news@example.com>")
# Domains a campaign's From address may use (exact names, comma-separated); empty allows any domain.
ALLOWED_FROM_DOMAINS = env.list("ALLOWED_FROM_DOMAINS", default=[])
# Test-send addresses one staff user may mail per hour (a counter in Redis).
TEST_EMAILS_PER_USER_PER_HOUR = env.int("TEST_EMAILS_PER_USER_PER_HOUR", default=30)
# Audience counts (the segment builder's segment.json) each user may ask for a minute; each scans the
# campaign's recipients (campaigns/admin/segments.py).
SEGMENT_COUNTS_PER_USER_PER_MINUTE = env.int("SEGMENT_COUNTS_PER_USER_PER_MINUTE", default=30)
SERVER_EMAIL = DEFAULT_FROM_EMAIL
UNSUBSCRIBE_MAILTO = env.str("UNSUBSCRIBE_MAILTO", default="")

# --- REST API (campaigns/api/, docs/api.md) -----------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["campaigns.api.authentication.BearerTokenAuthentication",
                                       "rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["campaigns.api.permissions.StaffChecks"],
    "DEFAULT_THROTTLE_CLASSES": ["campaigns.api.throttling.PerTokenRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "campaigns.api.schema.ApiAutoSchema",
    "EXCEPTION_HANDLER": "campaigns.api.errors.handle",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Bulk mailer API",
    "DESCRIPTION": "Campaigns, recipients, sending, results and webhooks. Guide: docs/api.md.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAdminUser"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "ENUM_NAME_OVERRIDES": {"CampaignStatusEnum": "campaigns.models.Campaign.Status",
                            "DeliveryStatusEnum": "campaigns.models.DeliveryLog.Status",
                            "RunStatusEnum": "campaigns.models.BackgroundRun.Status"},
}
# Requests per token (per user for the admin's session) and period: sec, min, hour or day.
API_RATE_LIMIT = env.str("API_RATE_LIMIT", default="600/min")
# How long a POST's Idempotency-Key is remembered, with its first answer.
IDEMPOTENCY_KEY_HOURS = env.int("IDEMPOTENCY_KEY_HOURS", default=24)

# --- Outbound webhooks (campaigns/webhooks/, docs/api.md "Webhooks") ----------------------------
# Allow webhook URLs on private, loopback and link-local addresses (tests and local development only).
WEBHOOK_ALLOW_PRIVATE_URLS = env.bool("WEBHOOK_ALLOW_PRIVATE_URLS", default=False)
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=5)
# Only the first bytes of a receiver's answer are read (and kept with the attempt).
WEBHOOK_MAX_ANSWER_BYTES = env.int("WEBHOOK_MAX_ANSWER_BYTES", default=4096)
# Events per request (delivery events come in bursts of a batch).
WEBHOOK_BATCH_SIZE = env.int("WEBHOOK_BATCH_SIZE", default=100)
# Retries wait this many seconds, then five times longer after each failure (at most 10 hours), for
# up to WEBHOOK_RETRY_FOR_SECONDS (3 days); an endpoint failing for WEBHOOK_DISABLE_AFTER_SECONDS is disabled.
WEBHOOK_RETRY_BASE_SECONDS = env.float("WEBHOOK_RETRY_BASE_SECONDS", default=5)
WEBHOOK_RETRY_FOR_SECONDS = env.int("WEBHOOK_RETRY_FOR_SECONDS", default=3 * 86400)
WEBHOOK_DISABLE_AFTER_SECONDS = env.int("WEBHOOK_DISABLE_AFTER_SECONDS", default=86400)

# --- Campaigns ---------------------------------------------------------------------------------
# Who gets every campaign's completion report, besides the staff member who scheduled it (comma-separated).
CAMPAIGN_REPORT_RECIPIENTS = env.list("CAMPAIGN_REPORT_RECIPIENTS", default=[])
CAMPAIGN_BATCH_SIZE = env.int("CAMPAIGN_BATCH_SIZE", default=200)
# An open sooner than this after delivery (or sending) is a machine's: scanners and prefetchers open
# within seconds, people do not (campaigns.engagement.opens_and_clicks, docs/follow-ups-and-ab-tests.md).
MACHINE_OPEN_SECONDS = env.float("MACHINE_OPEN_SECONDS", default=5)
# A batch's claim on its rows lasts this long and the live batch renews it every third of it, so a
# slow batch keeps its claim while a killed worker's claim expires within one lease; the sweep then
# recovers the rows. Lease + sweep interval is how soon a dead worker is noticed (<= 60 s).
SEND_LEASE_SECONDS = env.int("SEND_LEASE_SECONDS", default=30)
# The longest a batch task may run (soft limit; the hard limit is 20 % later).
SEND_BATCH_TIME_LIMIT = env.int("SEND_BATCH_TIME_LIMIT", default=300)
# Batch tasks of one campaign queued at a time: the start queues this many, and each batch that
# finishes queues the next, so a million-recipient campaign starts without enqueueing 5,000 tasks.
# Keep it above the senders' total concurrency (all workers, all hosts) times their prefetch. A
# campaign whose pool's accounts are all paced queues one per account (campaigns.sending.dispatch).
SEND_BATCHES_AHEAD = env.int("SEND_BATCHES_AHEAD", default=64)
# A start creates the delivery rows and batches in chunks of this many recipients (in id order), each
# chunk its own transaction, and queues the first batches as soon as their rows exist.
START_CHUNK_SIZE = env.int("START_CHUNK_SIZE", default=50000)
# SMTP writes its results every this many messages (and before every rate-limit wait): after a
# crash at most this many rows per batch in flight are unknown.
SEND_SMTP_CHUNK = env.int("SEND_SMTP_CHUNK", default=10)
# SMTP connections each batch sends over at once, one message in flight on each; their call-began
# marks are written in one statement per round. At most SEND_SMTP_CHUNK are used.
SEND_SMTP_CONNECTIONS = env.int("SEND_SMTP_CONNECTIONS", default=2)
# The ledger's per-message and per-chunk statements run as prepared statements (no parsing or
# planning per call). Turn off behind a pooler that cannot keep them (PgBouncer before 1.21 in
# transaction mode, or without max_prepared_statements).
SEND_PREPARED_STATEMENTS = env.bool("SEND_PREPARED_STATEMENTS", default=True)
# The rate-limit window is one second plus this guard, for the difference between Redis's clock (by
# which sends are paced) and the provider's.
RATE_LIMIT_GUARD_SECONDS = env.float("RATE_LIMIT_GUARD_SECONDS", default=0.05)
# The most one batch waits in its worker for per-second rates in all; a wait beyond it queues the rest
# of the batch again instead (rows pending, no attempt used), so that a paced campaign does not hold a
# sender slot that another campaign's batch could use. 0: no bound.
SEND_RATE_WAIT_MAX_SECONDS = env.float("SEND_RATE_WAIT_MAX_SECONDS", default=2.0)
SEND_MAX_ATTEMPTS = env.int("SEND_MAX_ATTEMPTS", default=5)
# Per-domain throttling (campaigns.sending.domain_groups): a domain group whose servers answer 421 or
# 4.7.x is held this long (a group's own backoff wins), doubled for each further deferral in a row, at
# most MAX; its rows wait without using an attempt, up to SEND_DOMAIN_HOLDS_MAX holds in a row, after
# which each deferral counts as an attempt (so a domain that never takes our mail fails in the end).
SEND_DOMAIN_BACKOFF_SECONDS = env.float("SEND_DOMAIN_BACKOFF_SECONDS", default=60.0)
SEND_DOMAIN_BACKOFF_MAX_SECONDS = env.float("SEND_DOMAIN_BACKOFF_MAX_SECONDS", default=3600.0)
SEND_DOMAIN_HOLDS_MAX = env.int("SEND_DOMAIN_HOLDS_MAX", default=12)
# The suppression circuit breaker: when more than this share of a batch (and at least MIN recipients)
# is refused as dead addresses, none is suppressed and the campaign pauses until staff confirm.
SEND_SUPPRESSION_BREAKER_SHARE = env.float("SEND_SUPPRESSION_BREAKER_SHARE", default=0.2)
SEND_SUPPRESSION_BREAKER_MIN = env.int("SEND_SUPPRESSION_BREAKER_MIN", default=5)
# Within one batch: retries per provider on 5xx/429/connection errors, the backoff base (full jitter
# below base * 2^n), and the most one batch waits for one provider's rate-limit resets.
SEND_PROVIDER_RETRIES = env.int("SEND_PROVIDER_RETRIES", default=3)
SEND_BACKOFF_SECONDS = env.float("SEND_BACKOFF_SECONDS", default=1.0)
SEND_MAX_RATE_LIMIT_WAIT = env.float("SEND_MAX_RATE_LIMIT_WAIT", default=60.0)
SWEEP_INTERVAL_SECONDS = env.int("SWEEP_INTERVAL_SECONDS", default=15)
# A live campaign whose batches made no progress for this long gets its pending batches re-dispatched.
SWEEP_STALL_SECONDS = env.int("SWEEP_STALL_SECONDS", default=120)
# Bounces that come back by mail (campaigns.engagement.bounce_mail, docs/deliverability.md): this many soft
# bounces of one address within SOFT_BOUNCE_DAYS suppress it; a bounce that names no delivery of ours is
# matched to its address's latest sent delivery within BOUNCE_MATCH_WINDOW_DAYS; larger messages are
# kept unread; a mailbox poll reads at most BOUNCE_POLL_MAX_MESSAGES.
SOFT_BOUNCE_LIMIT = env.int("SOFT_BOUNCE_LIMIT", default=3)
SOFT_BOUNCE_DAYS = env.int("SOFT_BOUNCE_DAYS", default=30)
BOUNCE_MATCH_WINDOW_DAYS = env.int("BOUNCE_MATCH_WINDOW_DAYS", default=14)
BOUNCE_MAX_MESSAGE_BYTES = env.int("BOUNCE_MAX_MESSAGE_BYTES", default=5 * 1024 * 1024)
BOUNCE_POLL_MAX_MESSAGES = env.int("BOUNCE_POLL_MAX_MESSAGES", default=5000)
BOUNCE_MAILBOX_TIMEOUT_SECONDS = env.int("BOUNCE_MAILBOX_TIMEOUT_SECONDS", default=30)
IMPORT_MAX_UPLOAD_MB = env.int("IMPORT_MAX_UPLOAD_MB", default=100)
IMPORT_MAX_ROWS = env.int("IMPORT_MAX_ROWS", default=2_000_000)
IMPORT_MAX_CELL_CHARS = env.int("IMPORT_MAX_CELL_CHARS", default=5000)
# A workbook whose parts would unpack to more than this is refused before it is read (zip bombs).
IMPORT_MAX_UNCOMPRESSED_MB = env.int("IMPORT_MAX_UNCOMPRESSED_MB", default=2048)
# An import still reading after this long is stopped and marked failed (nothing is imported).
IMPORT_TIME_LIMIT_SECONDS = env.int("IMPORT_TIME_LIMIT_SECONDS", default=1800)
# Uploaded files are removed when their import ends; this many days later instead when set.
IMPORT_KEEP_UPLOADS_DAYS = env.int("IMPORT_KEEP_UPLOADS_DAYS", default=0)
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

# --- Celery ------------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=REDIS_URL)
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_ALWAYS_EAGER = False
# Celery's Django fixup closes the database connection after every task unless told to reuse it;
# a new PostgreSQL backend per batch cost ~40 % of the sending path's database time. Unusable or
# over-age connections are still closed before each task (mailer_project/celery.py).
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1000)
# Flower's login (FLOWER_USER, FLOWER_PASSWORD) is not a setting of the app: only the Flower and
# nginx containers receive it (docs/security.md).

# --- Logging -----------------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    # Link tokens (/u/, /t/) never reach a log line, e.g. in Django's "Not Found: <path>".
    # Recipient addresses masked, control characters escaped (campaigns/security/logsafe.py), in every line.
    "filters": {"mask_link_tokens": {"()": "mailer_project.access_log.TokenMaskingFilter"},
                "log_safe": {"()": "campaigns.security.logsafe.LogSafeFilter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain",
                             "filters": ["mask_link_tokens", "log_safe"]}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "campaigns": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
