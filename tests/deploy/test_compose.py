"""docker-compose.yml and docker-compose.prod.yml, validated and rendered by Debian's docker-compose."""

import re
import shutil

import pytest

from tests.deploy import tools
from tests.deploy.conftest import PRODUCTION_SECRETS, write_env_file

APP_SERVICES = ["web", "celery_worker_scheduler", "celery_worker_imports", "celery_worker_bounces",
                "celery_worker_sender", "celery_worker_webhooks", "celery_beat", "flower"]
SENDER_HOST = "celery_worker_sender_host"  # sender workers for a host that runs nothing else


def healthcheck_command(service):
    test = service["healthcheck"]["test"]
    assert test[0] in ("CMD", "CMD-SHELL"), test
    return " ".join(test[1:])


def test_development_stack_has_every_service(dev_compose):
    assert set(dev_compose["services"]) == {"db", "redis", *APP_SERVICES, "mailsink", "nginx"}
    services = dev_compose["services"]
    assert services["db"]["image"].startswith("postgres:15")
    assert services["redis"]["image"].startswith("redis:7")
    assert "--appendonly" in services["redis"]["command"]
    assert volumes(services["db"])["/var/lib/postgresql/data"] == "postgres_data"
    assert volumes(services["redis"])["/data"] == "redis_data"


def volumes(service):
    """{target: source} of a rendered service's volumes ("source:target[:mode]" or long syntax)."""
    pairs = [v.split(":")[:2] if isinstance(v, str) else [v["source"], v["target"]] for v in service.get("volumes", [])]
    return {target: source for source, target in pairs}


def test_development_mail_goes_to_the_sink_which_keeps_it_in_a_volume(dev_compose):
    services = dev_compose["services"]
    sink_command = services["mailsink"]["command"]
    assert "localservers.smtp_sink" in sink_command and "--maildir /app/var/mail" in sink_command
    assert volumes(services["mailsink"])["/app/var/mail"] == "mail_sink"
    env = services["celery_worker_sender"]["environment"]
    assert env["EMAIL_HOST"] == "mailsink"
    assert f"--port {env['EMAIL_PORT']}" in sink_command
    assert env["DEBUG"] == "True"


def test_workers_queues_and_concurrency(dev_compose, prod_compose):
    for compose in (dev_compose, prod_compose):
        services = compose["services"]
        assert "-Q scheduler" in services["celery_worker_scheduler"]["command"]
        assert "--concurrency 2" in services["celery_worker_scheduler"]["command"]
        assert "-Q imports" in services["celery_worker_imports"]["command"]
        assert "-Q bounces" in services["celery_worker_bounces"]["command"]
        assert "-Q senders" in services["celery_worker_sender"]["command"]
        assert "celery -A mailer_project beat" in services["celery_beat"]["command"]
        # Scalable with --scale: no fixed container name or host port on the senders.
        assert "container_name" not in services["celery_worker_sender"]
        assert "ports" not in services["celery_worker_sender"]


@pytest.mark.parametrize("compose_name", ["dev_compose", "prod_compose"])
def test_every_long_running_service_has_a_healthcheck_and_waits_for_its_dependencies(compose_name, request):
    services = request.getfixturevalue(compose_name)["services"]
    for name in ("db", "redis", "web", "celery_worker_scheduler", "celery_worker_imports", "celery_worker_sender",
                 "celery_worker_webhooks", "flower", "nginx"):
        assert "healthcheck" in services[name], name
    assert "pg_isready" in healthcheck_command(services["db"])
    assert "redis-cli ping" in healthcheck_command(services["redis"])
    assert "docker/healthcheck.py web" in healthcheck_command(services["web"])
    assert "docker/healthcheck.py worker scheduler@$${HOSTNAME}" in healthcheck_command(services["celery_worker_scheduler"])
    assert "docker/healthcheck.py worker sender@$${HOSTNAME}" in healthcheck_command(services["celery_worker_sender"])
    assert "docker/healthcheck.py worker imports@$${HOSTNAME}" in healthcheck_command(services["celery_worker_imports"])
    assert "docker/healthcheck.py worker webhooks@$${HOSTNAME}" in healthcheck_command(services["celery_worker_webhooks"])
    assert services["web"]["depends_on"] == {"db": {"condition": "service_healthy"},
                                             "redis": {"condition": "service_healthy"}}
    for name in ("celery_worker_scheduler", "celery_worker_imports", "celery_worker_sender", "celery_worker_webhooks",
                 "celery_beat"):
        # Workers and beat wait for web, which applies the migrations before it turns healthy.
        assert services[name]["depends_on"]["web"] == {"condition": "service_healthy"}, name
    assert services["nginx"]["depends_on"]["web"] == {"condition": "service_healthy"}
    assert services["web"]["environment"]["RUN_MIGRATIONS"] == "1"
    assert "RUN_MIGRATIONS" not in services["celery_worker_sender"]["environment"]


def test_flower_has_its_url_prefix_and_the_login_from_the_environment(dev_compose, prod_compose):
    for compose in (dev_compose, prod_compose):
        command = compose["services"]["flower"]["command"]
        assert "--url_prefix=flower" in command
        assert "flower-secret-pw" not in command  # never on the command line (issue 13, item 5)
        assert compose["services"]["flower"]["environment"]["FLOWER_BASIC_AUTH"] == "ops:flower-secret-pw"
        assert compose["services"]["nginx"]["environment"]["FLOWER_PASSWORD"] == "flower-secret-pw"


def test_production_stack(prod_compose):
    services = prod_compose["services"]
    # No mail sink; the sender-host service is for other hosts (test_a_sender_host_runs_only_sender_workers...).
    assert set(services) == {"db", "redis", *APP_SERVICES, "nginx", SENDER_HOST}
    for name in APP_SERVICES:
        if name == "flower":
            continue  # only the broker URL (test_production_redis_requires_the_password_that_the_app_urls_carry)
        env = services[name]["environment"]
        assert env["DEBUG"] == "False", name
        assert env["SECRET_KEY"] == PRODUCTION_SECRETS["SECRET_KEY"]
        assert env["LINK_SIGNING_KEY"] == PRODUCTION_SECRETS["LINK_SIGNING_KEY"]
        assert env["LINK_SIGNING_KEY_FALLBACKS"] == env["SECRET_KEY_FALLBACKS"] == ""
        assert env["ALLOWED_HOSTS"] == "mail.example.com"
        assert env["CSRF_TRUSTED_ORIGINS"] == "https://mail.example.com"
        assert env["DATABASE_URL"] == "postgres://mailer:postgres-secret-pw@db:5432/mailer"
    for name, service in services.items():
        assert service["restart"] == "unless-stopped", name
        assert service["deploy"]["resources"]["limits"]["memory"], name
        assert service["logging"] == {"driver": "json-file", "options": {"max-size": "20m", "max-file": "5"}}, name
    assert services["celery_worker_sender"]["deploy"]["replicas"] == 4
    assert services["celery_beat"]["deploy"]["replicas"] == 1


def test_production_nginx_serves_tls_with_mounted_certificates(prod_compose, dev_compose):
    nginx = prod_compose["services"]["nginx"]
    assert {p["target"] if isinstance(p, dict) else int(p.split(":")[-1]) for p in nginx["ports"]} == {80, 443}
    mounts = volumes(nginx)
    assert mounts["/etc/nginx/sites/mailer.conf"].endswith("nginx/sites/https.conf")
    assert mounts["/etc/nginx/certs"].endswith("nginx/certs")
    assert mounts["/etc/nginx/nginx.conf"].endswith("nginx/nginx.conf")
    assert mounts["/srv/static"] == "static" == volumes(prod_compose["services"]["web"])["/srv/static"]
    dev_mounts = volumes(dev_compose["services"]["nginx"])
    assert dev_mounts["/etc/nginx/sites/mailer.conf"].endswith("nginx/sites/http.conf")


REQUIRED = ["SECRET_KEY", "LINK_SIGNING_KEY", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "SITE_URL", "POSTGRES_PASSWORD",
            "FLOWER_PASSWORD", "DEFAULT_FROM_EMAIL", "REDIS_PASSWORD"]


@pytest.mark.parametrize("missing", REQUIRED)
def test_production_refuses_to_render_without_a_required_secret(missing, docker_compose, tmp_path):
    env_file = write_env_file(tmp_path / "prod.env",
                              {k: v for k, v in PRODUCTION_SECRETS.items() if k != missing})
    result = tools.compose_config("docker-compose.prod.yml", env_file, docker_compose)
    assert result.returncode != 0
    assert f"Set {missing} in .env" in result.stderr


def test_development_renders_from_a_fresh_clone_without_env_file(docker_compose, tmp_path):
    shutil.copy(tools.ROOT / "docker-compose.yml", tmp_path)  # a directory with no .env
    result = tools.compose_config("docker-compose.yml", None, docker_compose, project_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    data = tools.yaml_to_data(result.stdout, docker_compose)
    # A development login strong enough for nginx's start-up check, from private addresses only.
    assert data["services"]["flower"]["environment"]["FLOWER_BASIC_AUTH"] == "flower-ops:development-only-flower-pw"
    assert data["services"]["nginx"]["environment"]["FLOWER_ALLOW_IPS"] == "127.0.0.1,::1,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16"


def _seconds(duration):
    """Compose durations ("390s", "6m30s", "1h") in seconds."""
    units = {"h": 3600, "m": 60, "s": 1}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([hms])", str(duration)))


def test_sender_workers_may_finish_their_batch_when_stopped(dev_compose, prod_compose):
    from django.conf import settings

    hard_limit = settings.SEND_BATCH_TIME_LIMIT * 1.2  # campaigns/tasks/senders.py
    for compose in (dev_compose, prod_compose):
        grace = compose["services"]["celery_worker_sender"].get("stop_grace_period")
        assert grace and _seconds(grace) > hard_limit
    assert prod_compose["services"]["celery_worker_sender"]["environment"]["SEND_LEASE_SECONDS"] == "30"


# Issue 13, items 6 and 7: what the compose files publish, and who can reach whom.

BACKEND_ONLY = ["db", "redis", "celery_worker_scheduler", "celery_worker_sender", "celery_beat"]


def published_ports(service):
    """(host address, host port, container port) of each published port, in either rendered syntax."""
    result = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            result.append((port.get("host_ip", ""), str(port.get("published", "")), str(port["target"])))
        else:
            parts = port.split("/")[0].split(":")
            result.append(("", *parts) if len(parts) == 2 else tuple(parts))
    return result


def test_development_publishes_every_port_on_loopback_only(dev_compose):
    published = {name: published_ports(service) for name, service in dev_compose["services"].items()
                 if service.get("ports")}
    assert {"nginx", "web"} <= set(published)
    for name, ports in published.items():
        for host_ip, _, _ in ports:
            assert host_ip == "127.0.0.1", f"{name} publishes on {host_ip or 'every address'}: {ports}"


def test_production_redis_requires_the_password_that_the_app_urls_carry(prod_compose):
    services = prod_compose["services"]
    redis = services["redis"]
    command = " ".join(redis["command"]) if isinstance(redis["command"], list) else redis["command"]
    assert "requirepass" in command
    # The password is read from the environment at start, never written into the command itself.
    assert PRODUCTION_SECRETS["REDIS_PASSWORD"] not in command
    assert redis["environment"]["REDIS_PASSWORD"] == PRODUCTION_SECRETS["REDIS_PASSWORD"]
    # redis-cli in the healthcheck authenticates from REDISCLI_AUTH.
    assert redis["environment"]["REDISCLI_AUTH"] == PRODUCTION_SECRETS["REDIS_PASSWORD"]
    url = f"redis://:{PRODUCTION_SECRETS['REDIS_PASSWORD']}@redis:6379/0"
    for name in ("web", "celery_worker_scheduler", "celery_worker_sender", "celery_beat"):
        assert services[name]["environment"]["REDIS_URL"] == url, name
    assert services["flower"]["environment"]["CELERY_BROKER_URL"] == url


def test_production_refuses_to_render_without_a_redis_password(docker_compose, tmp_path):
    env_file = write_env_file(tmp_path / "prod.env",
                              {k: v for k, v in PRODUCTION_SECRETS.items() if k != "REDIS_PASSWORD"})
    result = tools.compose_config("docker-compose.prod.yml", env_file, docker_compose)
    assert result.returncode != 0
    assert "Set REDIS_PASSWORD in .env" in result.stderr


def test_the_rendered_redis_command_refuses_clients_without_the_password(prod_compose, tmp_path):
    """The production redis command, run with Debian's redis-server (the image's entrypoint shimmed)."""
    import redis as redis_lib

    redis_server = tools.ensure_debian_tool("redis-server", "redis-server")
    command = prod_compose["services"]["redis"]["command"]
    assert command[:2] == ["sh", "-c"], command
    script = command[2].replace("$$", "$")
    shim = tmp_path / "bin"
    shim.mkdir()
    # The redis image's entrypoint drops to the redis user, then runs its arguments.
    (shim / "docker-entrypoint.sh").write_text('#!/bin/sh\nexec "$@"\n')
    (shim / "docker-entrypoint.sh").chmod(0o755)
    (shim / "redis-server").symlink_to(redis_server)
    port = tools.free_port()
    password = "a-redis-password-for-the-test"
    server = tools.Server("redis", ["sh", "-c", f"{script} --port {port} --bind 127.0.0.1 --dir {tmp_path} "
                                                "--appendonly no --save ''"],
                          port, tmp_path / "redis.log", cwd=tmp_path,
                          env={"PATH": f"{shim}:/usr/bin:/bin", "REDIS_PASSWORD": password,
                               "REDIS_AUTH_FILE": str(tmp_path / "auth.conf")}).start()
    try:
        with pytest.raises(redis_lib.AuthenticationError):
            redis_lib.Redis(port=port).ping()
        assert redis_lib.Redis.from_url(f"redis://:{password}@127.0.0.1:{port}/0").ping()
        assert password not in (tmp_path / "redis.log").read_text()
    finally:
        server.stop()


def networks_of(service):
    networks = service.get("networks", {})
    return set(networks) if isinstance(networks, (dict, list)) else set()


def test_production_nginx_shares_no_network_with_the_database_or_redis(prod_compose):
    services = prod_compose["services"]
    assert networks_of(services["nginx"]) == {"frontend"}
    assert networks_of(services["web"]) == networks_of(services["flower"]) == {"frontend", "backend"}
    for name in BACKEND_ONLY:
        assert networks_of(services[name]) == {"backend"}, name
    for name, service in services.items():
        if networks_of(service) & networks_of(services["nginx"]):
            assert name in ("nginx", "web", "flower"), f"nginx can reach {name}"
    assert set(prod_compose["networks"]) == {"frontend", "backend"}


@pytest.mark.parametrize("compose_name", ["dev_compose", "prod_compose"])
def test_flower_gets_only_the_broker_and_its_login(compose_name, request):
    flower = request.getfixturevalue(compose_name)["services"]["flower"]
    assert set(flower["environment"]) == {"CELERY_BROKER_URL", "FLOWER_BASIC_AUTH", "WAIT_FOR_SERVICES"}
    assert "env_file" not in flower
    assert "-A mailer_project" not in flower["command"]  # the app (and its settings) is never loaded


# Issue 14, item 8: sender-only hosts from the production compose file itself, without an override.

def started_by_up(services, targets):
    """The services `docker compose up TARGETS` starts: the targets and, transitively, what they depend on."""
    started, todo = set(), list(targets)
    while todo:
        name = todo.pop()
        if name not in started:
            started.add(name)
            todo.extend(services[name].get("depends_on") or {})
    return started


def test_a_sender_host_runs_only_sender_workers_against_the_central_servers(docker_compose, tmp_path):
    # The extra host's .env: the central host's, plus where its PostgreSQL and Redis are.
    env_file = write_env_file(tmp_path / "sender-host.env", {**PRODUCTION_SECRETS, "SENDGRID_API_KEY": "SG.key",
                                                              "POSTGRES_HOST": "10.0.0.5", "REDIS_HOST": "10.0.0.6"})
    result = tools.compose_config("docker-compose.prod.yml", env_file, docker_compose)
    assert result.returncode == 0, result.stderr
    services = tools.yaml_to_data(result.stdout, docker_compose)["services"]
    # docs/scaling.md: docker compose -f docker-compose.prod.yml up -d celery_worker_sender_host
    assert started_by_up(services, [SENDER_HOST]) == {SENDER_HOST}
    env = services[SENDER_HOST]["environment"]
    assert env["DATABASE_URL"] == "postgres://mailer:postgres-secret-pw@10.0.0.5:5432/mailer"
    assert env["REDIS_URL"] == "redis://:redis-secret-pw@10.0.0.6:6379/0"
    # Otherwise the very sender workers of the central host: command, settings, limits, grace period.
    differs = ("depends_on", "profiles")
    assert {k: v for k, v in services[SENDER_HOST].items() if k not in differs} == \
        {k: v for k, v in services["celery_worker_sender"].items() if k not in differs}


def test_the_single_host_stack_is_unchanged_by_the_sender_host_service(prod_compose):
    services = prod_compose["services"]
    # Its profile keeps it out of a plain `up -d`, which starts every service without one.
    assert services[SENDER_HOST]["profiles"] == ["sender-host"]
    assert [name for name, service in services.items() if service.get("profiles")] == [SENDER_HOST]
    # Without POSTGRES_HOST / REDIS_HOST it would reach this project's db and redis, like everything else.
    assert services[SENDER_HOST]["environment"]["DATABASE_URL"] == \
        services["celery_worker_sender"]["environment"]["DATABASE_URL"]
    assert started_by_up(services, ["celery_worker_sender"]) == {"celery_worker_sender", "db", "redis", "web"}


# --- issue 22, item 7: production passes every setting it reads ---------------------------------------------

# Variables settings.py reads that production deliberately leaves to their defaults, each with the reason.
NOT_FOR_PRODUCTION = {
    "MAIL_SINK_PORT": "the local mail sink of `make run` and the development stack",
    "MAIL_SINK_DIR": "the local mail sink of `make run` and the development stack",
    "SES_SNS_TRUSTED_CERTIFICATES": "test-only: certificates of tests that sign their own SNS messages",
    "STATIC_ROOT": "the image's collected files (Dockerfile); web serves them from the static volume",
    "CELERY_BROKER_URL": "REDIS_URL, which production passes",
    "CELERY_RESULT_BACKEND": "REDIS_URL, which production passes",
    "MEDIA_ROOT": "the media volume is mounted at the default path (/app/var/media)",
}
# .env.example variables only the production file reads (a separate database and Redis, Redis's password).
PRODUCTION_ONLY = {"POSTGRES_HOST", "REDIS_HOST", "REDIS_PASSWORD", "FRONTEND_SUBNET"}
# .env.example variables read by something other than settings.py, and where.
APP_ONLY_SERVICES = ["web", "celery_worker_scheduler", "celery_worker_imports", "celery_worker_sender", "celery_beat"]


def settings_variables():
    """Every environment variable mailer_project/settings.py reads (env.*("NAME"), _required_in_production)."""
    import ast

    tree = ast.parse((tools.ROOT / "mailer_project" / "settings.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)):
            continue
        func = ast.unparse(node.func)
        if (func.startswith("env.") or func in ("env", "_required_in_production", "os.environ.get", "os.getenv")) \
                and re.fullmatch(r"[A-Z][A-Z0-9_]+", str(node.args[0].value)):
            names.add(node.args[0].value)
    return names


def env_example_variables():
    text = (tools.ROOT / ".env.example").read_text()
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, re.MULTILINE))


def test_the_settings_variables_are_found():
    found = settings_variables()
    assert {"SECRET_KEY", "DATABASE_URL", "SES_SNS_TOPIC_ARNS", "TEST_EMAILS_PER_USER_PER_HOUR"} <= found
    assert set(NOT_FOR_PRODUCTION) <= found  # no stale exception


@pytest.mark.parametrize("compose", ["dev_compose", "prod_compose"])
def test_every_setting_reaches_every_app_service(compose, request):
    services = request.getfixturevalue(compose)["services"]
    wanted = settings_variables() - set(NOT_FOR_PRODUCTION)
    missing = {name: sorted(wanted - set(services[name].get("environment") or {})) for name in APP_ONLY_SERVICES}
    assert missing == {name: [] for name in APP_ONLY_SERVICES}


@pytest.mark.parametrize("compose_file", ["docker-compose.yml", "docker-compose.prod.yml"])
def test_every_variable_of_env_example_is_passed_on_by_both_compose_files(compose_file):
    """A value set in .env reaches a container only through ${NAME} in the compose file (production has no
    env_file, and .env stays out of the image)."""
    text = (tools.ROOT / compose_file).read_text()
    # WEB_PORT, FLOWER_PORT: `make run`'s ports. DATABASE_URL, REDIS_URL: both files build them from their own
    # services (and POSTGRES_*, REDIS_PASSWORD). DEBUG: production sets it to False, whatever .env says.
    exempt = set(NOT_FOR_PRODUCTION) | {"WEB_PORT", "FLOWER_PORT", "DATABASE_URL", "REDIS_URL"}
    exempt |= {"DEBUG"} if "prod" in compose_file else PRODUCTION_ONLY
    unused = sorted(name for name in env_example_variables() - exempt if not re.search(r"\$\{" + name + r"\b", text))
    assert unused == []


def test_the_env_example_lists_every_setting():
    assert sorted(settings_variables() - env_example_variables() - {"STATIC_ROOT", "CELERY_BROKER_URL",
                                                                    "CELERY_RESULT_BACKEND", "SECURE_SSL_REDIRECT",
                                                                    "SECURE_HSTS_SECONDS"}) == []


# --- issue 22, item 8: proxies and Flower deny by default ---------------------------------------------------

def test_gunicorn_trusts_forwarded_headers_only_from_the_proxy_network(prod_compose):
    services, networks = prod_compose["services"], prod_compose["networks"]
    [subnet] = [entry["subnet"] for entry in networks["frontend"]["ipam"]["config"]]
    assert services["web"]["environment"]["FORWARDED_ALLOW_IPS"] == subnet == "172.30.240.0/24"
    assert "frontend" in services["nginx"]["networks"]
    config = {}
    exec((tools.ROOT / "docker" / "gunicorn.conf.py").read_text(), {"__file__": "gunicorn.conf.py"}, config)
    assert config["forwarded_allow_ips"] == "127.0.0.1,::1"  # without the variable: this machine only, never "*"


def test_the_default_flower_user_is_not_admin(docker_compose, tmp_path):
    env_file = write_env_file(tmp_path / "prod.env", {**PRODUCTION_SECRETS, "SENDGRID_API_KEY": "SG.key"})
    result = tools.compose_config("docker-compose.prod.yml", env_file, docker_compose)
    services = tools.yaml_to_data(result.stdout, docker_compose)["services"]
    assert services["nginx"]["environment"]["FLOWER_USER"] == "flower-ops"
    assert services["flower"]["environment"]["FLOWER_BASIC_AUTH"].startswith("flower-ops:")
    assert services["nginx"]["environment"]["FLOWER_ALLOW_IPS"] == ""  # empty: nobody reaches /flower/
