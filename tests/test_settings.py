"""Settings come from the environment; production refuses to start without its secrets."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = {
    "DEBUG": "False",
    "SECRET_KEY": "x" * 60 + "production-secret-from-the-environment",
    "DATABASE_URL": "postgres://mailer:pw@db.internal:5432/mailer",
    "REDIS_URL": "redis://cache.internal:6379/2",
    "ALLOWED_HOSTS": "mail.example.com,admin.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://mail.example.com",
    "SENDGRID_API_KEY": "SG.test-key",
    "FLOWER_PASSWORD": "flower-secret",
    "SITE_URL": "https://mail.example.com",
    "LINK_SIGNING_KEY": "l" * 60 + "link-signing-key-from-the-environment",
}
PROBE = (
    "import json; from django.conf import settings as s; "
    "print(json.dumps({'DEBUG': s.DEBUG, 'ALLOWED_HOSTS': s.ALLOWED_HOSTS, 'TIME_ZONE': s.TIME_ZONE, "
    "'DB': [s.DATABASES['default'][k] for k in ('ENGINE', 'HOST', 'PORT', 'NAME', 'USER')], "
    "'CACHE': s.CACHES['default']['LOCATION'], 'BROKER': s.CELERY_BROKER_URL, "
    "'BATCH': s.CAMPAIGN_BATCH_SIZE, 'EMAIL': [s.EMAIL_HOST, s.EMAIL_PORT], "
    "'SECURE': [s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS, s.SECURE_SSL_REDIRECT]}))"
)


def load_settings(env):
    """Import the settings in a fresh interpreter with exactly ENV (plus PATH)."""
    full_env = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "mailer_project.settings", **env}
    return subprocess.run([sys.executable, "-c", "import django; django.setup(); " + PROBE], cwd=ROOT,
                          env=full_env, capture_output=True, text=True)


def test_production_settings_are_read_from_the_environment():
    result = load_settings({**PRODUCTION, "TIME_ZONE": "Europe/Lisbon", "CAMPAIGN_BATCH_SIZE": "500"})
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["DEBUG"] is False
    assert values["ALLOWED_HOSTS"] == ["mail.example.com", "admin.example.com"]
    assert values["TIME_ZONE"] == "Europe/Lisbon"
    assert values["DB"] == ["django.db.backends.postgresql", "db.internal", 5432, "mailer", "mailer"]
    assert values["CACHE"] == values["BROKER"] == "redis://cache.internal:6379/2"
    assert values["BATCH"] == 500
    assert values["SECURE"] == [True, True, 31536000, True]


@pytest.mark.parametrize("missing", ["SECRET_KEY", "DATABASE_URL", "REDIS_URL", "ALLOWED_HOSTS", "LINK_SIGNING_KEY"])
def test_production_without_a_required_variable_fails_naming_it(missing):
    env = {k: v for k, v in PRODUCTION.items() if k != missing}
    result = load_settings(env)
    assert result.returncode != 0
    assert f"Set the {missing} environment variable" in result.stderr


def test_production_without_any_mail_provider_fails_clearly():
    env = {k: v for k, v in PRODUCTION.items() if k != "SENDGRID_API_KEY"}
    result = load_settings(env)
    assert result.returncode != 0
    assert "Set SENDGRID_API_KEY or EMAIL_HOST" in result.stderr


def test_a_non_postgres_database_is_refused():
    result = load_settings({**PRODUCTION, "DATABASE_URL": "sqlite:///db.sqlite3"})
    assert result.returncode != 0
    assert "DATABASE_URL must point at PostgreSQL" in result.stderr


def test_development_defaults_send_mail_to_the_local_sink():
    result = load_settings({"DEBUG": "True"})
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["EMAIL"] == ["127.0.0.1", 1025]
    assert values["BATCH"] == 200
    assert values["SECURE"][:2] == [False, False]


def test_production_settings_pass_check_deploy():
    env = {"PATH": os.environ["PATH"], **PRODUCTION}
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_a_dead_sender_is_noticed_within_a_minute_and_a_live_one_keeps_its_claim():
    from django.conf import settings

    from campaigns.periodic import PERIODIC_TASKS

    sweep_every = PERIODIC_TASKS["Sweep: start due campaigns, recover stale claims"][1]
    # A dead worker's claim expires within one lease; the next sweep recovers it.
    assert settings.SEND_LEASE_SECONDS + sweep_every <= 60
    # A live batch renews every third of the lease, and its time limit is its own, not the lease's.
    assert settings.SEND_BATCH_TIME_LIMIT > settings.SEND_LEASE_SECONDS
