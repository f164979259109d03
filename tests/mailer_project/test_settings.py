"""Settings come from the environment; production refuses to start without its secrets."""

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
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

    from campaigns.operations.periodic import PERIODIC_TASKS

    sweep_every = PERIODIC_TASKS["Sweep: start due campaigns, recover stale claims"][1]
    # A dead worker's claim expires within one lease; the next sweep recovers it.
    assert settings.SEND_LEASE_SECONDS + sweep_every <= 60
    # A live batch renews every third of the lease, and its time limit is its own, not the lease's.
    assert settings.SEND_BATCH_TIME_LIMIT > settings.SEND_LEASE_SECONDS


def test_env_example_explains_every_variable_the_settings_read():
    example = (ROOT / ".env.example").read_text()
    # "NAME=" or, for a variable best left unset (its default depends on others), "#NAME=".
    unexplained = {name for name in variables_the_settings_read() if not re.search(rf"^#?{name}=", example, re.M)}
    assert unexplained == set(), f"add these to .env.example, each with a comment: {sorted(unexplained)}"


def test_the_settings_reader_finds_direct_reads_and_reads_through_a_helper():
    names = variables_the_settings_read()
    assert {"DEBUG", "CELERY_BROKER_URL", "STATIC_ROOT", "SECRET_KEY", "DATABASE_URL"} <= names


def variables_the_settings_read():
    """Every environment variable named in mailer_project/settings*.py: env(...), env.<cast>(...),
    os.environ / os.getenv, and helpers that pass their parameter on to one of those."""
    names = set()
    for path in sorted((ROOT / "mailer_project").glob("settings*.py")):
        tree = ast.parse(path.read_text())
        helpers = _helpers_that_read_a_parameter(tree)
        for node in ast.walk(tree):
            name = _variable_read(node)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in helpers:
                name = node.args[helpers[node.func.id]] if len(node.args) > helpers[node.func.id] else None
            if isinstance(name, ast.Constant) and isinstance(name.value, str):
                names.add(name.value)
    return names


def _helpers_that_read_a_parameter(tree):
    """{function name: position of the parameter it reads as a variable name}, for module-level functions."""
    helpers = {}
    for function in tree.body:
        if isinstance(function, ast.FunctionDef):
            parameters = [arg.arg for arg in function.args.args]
            for node in ast.walk(function):
                name = _variable_read(node)
                if isinstance(name, ast.Name) and name.id in parameters:
                    helpers[function.name] = parameters.index(name.id)
    return helpers


def _is_environment(node):
    """os.environ or env.ENVIRON (django-environ's view of it)."""
    return isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and (
        (node.value.id, node.attr) in {("os", "environ"), ("env", "ENVIRON")})


def _variable_read(node):
    """The expression naming the variable NODE reads from the environment, or None."""
    if isinstance(node, ast.Call) and node.args:
        func = node.func
        if isinstance(func, ast.Name) and func.id == "env":
            return node.args[0]
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "env" \
                and func.attr != "read_env":
            return node.args[0]
        if isinstance(func, ast.Attribute) and func.attr == "get" and _is_environment(func.value):
            return node.args[0]
        if isinstance(func, ast.Attribute) and func.attr == "getenv" and isinstance(func.value, ast.Name) \
                and func.value.id == "os":
            return node.args[0]
    if isinstance(node, ast.Subscript) and _is_environment(node.value):
        return node.slice
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], (ast.In, ast.NotIn)) \
            and _is_environment(node.comparators[0]):
        return node.left
    return None
