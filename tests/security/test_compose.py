"""Issue 13, items 6 and 7: what the compose files publish, and who can reach whom."""

import pytest

from tests.deploy import tools
from tests.deploy.conftest import PRODUCTION_SECRETS, write_env_file

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
