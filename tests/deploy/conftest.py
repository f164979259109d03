"""The deployment pieces started natively: gunicorn through docker/entrypoint.sh, Flower with the
compose file's command, and Debian's nginx with nginx/ (addresses and paths substituted)."""

import os
import subprocess
from pathlib import Path

import pytest
from django.conf import settings

from tests.deploy import tools
from tests.support.workers import service_env

FLOWER_USER, FLOWER_PASSWORD = "ops", "flower-secret-pw"
PRODUCTION_SECRETS = {
    "SECRET_KEY": "k" * 50 + "-deployment-test-secret",
    "LINK_SIGNING_KEY": "l" * 50 + "-deployment-test-link-key",
    "ALLOWED_HOSTS": "mail.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://mail.example.com",
    "SITE_URL": "https://mail.example.com",
    "POSTGRES_PASSWORD": "postgres-secret-pw",
    "FLOWER_PASSWORD": FLOWER_PASSWORD,
    "DEFAULT_FROM_EMAIL": "News <news@mail.example.com>",
    "REDIS_PASSWORD": "redis-secret-pw",
}


def write_env_file(path, values):
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    return path


@pytest.fixture(scope="session")
def docker_compose():
    return tools.ensure_debian_tool("docker-compose", "docker-compose")


@pytest.fixture(scope="session")
def nginx_bin():
    return tools.ensure_debian_tool("nginx", "nginx")


@pytest.fixture(scope="session")
def dev_compose(docker_compose, tmp_path_factory):
    """docker-compose.yml as `docker-compose config` renders it, with the test's Flower login."""
    env_file = write_env_file(tmp_path_factory.mktemp("compose") / "dev.env",
                              {"FLOWER_USER": FLOWER_USER, "FLOWER_PASSWORD": FLOWER_PASSWORD})
    result = tools.compose_config("docker-compose.yml", env_file, docker_compose)
    assert result.returncode == 0, result.stderr
    return tools.yaml_to_data(result.stdout, docker_compose)


@pytest.fixture(scope="session")
def prod_compose(docker_compose, tmp_path_factory):
    """docker-compose.prod.yml as `docker-compose config` renders it, with the production secrets."""
    env_file = write_env_file(tmp_path_factory.mktemp("prod") / "prod.env",
                              {**PRODUCTION_SECRETS, "FLOWER_USER": "ops", "SENDGRID_API_KEY": "SG.key"})
    result = tools.compose_config("docker-compose.prod.yml", env_file, docker_compose)
    assert result.returncode == 0, result.stderr
    return tools.yaml_to_data(result.stdout, docker_compose)


@pytest.fixture(scope="session")
def static_root(tmp_path_factory):
    """Static files collected by docker/collect_static.sh, the Dockerfile's build step."""
    root = tmp_path_factory.mktemp("static") / "staticfiles"
    result = subprocess.run(["sh", "docker/collect_static.sh"], cwd=tools.ROOT, capture_output=True, text=True,
                            env=tools.path_with_venv({**os.environ, "STATIC_ROOT": str(root)}))
    assert result.returncode == 0, result.stdout + result.stderr
    return root


@pytest.fixture(scope="module")
def ports():
    return {"web": tools.free_port(), "flower": tools.free_port(),
            "tls": tools.NginxPorts(tools.free_port(), tools.free_port()),
            "dev": tools.NginxPorts(tools.free_port(), tools.free_port())}


@pytest.fixture(scope="module")
def production_env(django_db_setup, ports, static_root):
    """Production settings (DEBUG off, SSL redirect on) against the test database and Redis."""
    tls = ports["tls"].https
    return tools.path_with_venv(service_env(
        DEBUG="False", SECRET_KEY=PRODUCTION_SECRETS["SECRET_KEY"],
        LINK_SIGNING_KEY=PRODUCTION_SECRETS["LINK_SIGNING_KEY"], ALLOWED_HOSTS="127.0.0.1,localhost",
        CSRF_TRUSTED_ORIGINS=f"https://127.0.0.1:{tls}", SITE_URL=f"https://127.0.0.1:{tls}",
        REDIS_URL=settings.REDIS_URL, CELERY_BROKER_URL=settings.REDIS_URL, CELERY_RESULT_BACKEND=settings.REDIS_URL,
        SENDGRID_API_KEY="SG.never-called", FLOWER_USER=FLOWER_USER, FLOWER_PASSWORD=FLOWER_PASSWORD,
        STATIC_ROOT=str(static_root),
    ))


@pytest.fixture(scope="module")
def web_server(production_env, ports, tmp_path_factory):
    """gunicorn with docker/gunicorn.conf.py, started through docker/entrypoint.sh like the web container."""
    log = tmp_path_factory.mktemp("web") / "gunicorn.log"
    env = {**production_env, "GUNICORN_BIND": f"127.0.0.1:{ports['web']}", "WEB_CONCURRENCY": "2",
           "GUNICORN_THREADS": "4", "WAIT_TIMEOUT": "30"}
    server = tools.Server("gunicorn", ["sh", "docker/entrypoint.sh", "gunicorn", "--config", "docker/gunicorn.conf.py"],
                          ports["web"], log, env=env).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def flower_server(production_env, ports, dev_compose, tmp_path_factory):
    """Flower with the compose file's command and ONLY its environment (the broker is the test's),
    bound to 127.0.0.1 on a free port."""
    service = dev_compose["services"]["flower"]
    command = service["command"]
    assert "--address=0.0.0.0 --port=5555" in command
    command = command.replace("--address=0.0.0.0 --port=5555", f"--address=127.0.0.1 --port={ports['flower']}")
    log = tmp_path_factory.mktemp("flower") / "flower.log"
    env = {**service["environment"], "FLOWER_BASIC_AUTH": f"{FLOWER_USER}:{FLOWER_PASSWORD}",
           "CELERY_BROKER_URL": settings.REDIS_URL, "PATH": production_env["PATH"], "HOME": os.environ.get("HOME", "/root")}
    server = tools.Server("flower", ["sh", "-c", f"exec {command}"], ports["flower"], log, env=env).start()
    yield server
    server.stop()


def start_nginx(nginx_bin, site, nginx_ports, web_server, flower_server, static_root, tmp_path_factory,
                flower_allow_ips="127.0.0.0/8"):
    conf_dir = tmp_path_factory.mktemp(f"nginx-{site.removesuffix('.conf')}")
    # The compose nginx container runs this script before Nginx: it writes the /flower/ login file
    # and the /flower/ allow-list (FLOWER_ALLOW_IPS).
    htpasswd = conf_dir / "htpasswd" / "flower"
    subprocess.run(["sh", str(tools.ROOT / "nginx" / "docker-entrypoint.d" / "40-flower-htpasswd.sh")], check=True,
                   capture_output=True, env={"PATH": os.environ["PATH"], "FLOWER_USER": FLOWER_USER,
                                             "FLOWER_PASSWORD": FLOWER_PASSWORD, "FLOWER_HTPASSWD_FILE": str(htpasswd),
                                             "FLOWER_ALLOW_IPS": flower_allow_ips})
    cafile = tools.make_self_signed_certificate(conf_dir / "certs") if site == "https.conf" else None
    conf = tools.render_nginx(conf_dir, site, web_server.port, flower_server.port, static_root, nginx_ports,
                              run_as_root=os.geteuid() == 0)
    test = subprocess.run([nginx_bin, "-t", "-p", str(conf_dir), "-c", str(conf)], capture_output=True, text=True)
    assert test.returncode == 0, test.stderr
    server = tools.Server(f"nginx ({site})", [nginx_bin, "-p", str(conf_dir), "-c", str(conf), "-g", "daemon off;"],
                          nginx_ports.http, conf_dir / "nginx.log").start()
    return server, cafile


def start_tls_nginx(nginx_bin, web_server, flower_server, static_root, tmp_path_factory, nginx_ports=None,
                    flower_allow_ips="127.0.0.0/8"):
    """sites/https.conf (production), started and answering TLS, on fresh ports unless NGINX_PORTS are given.
    Returns (server, https port, cafile)."""
    nginx_ports = nginx_ports or tools.NginxPorts(tools.free_port(), tools.free_port())
    server, cafile = start_nginx(nginx_bin, "https.conf", nginx_ports, web_server, flower_server, static_root,
                                 tmp_path_factory, flower_allow_ips=flower_allow_ips)
    tools.wait_for_port(nginx_ports.https, server.proc, name="nginx TLS", log_path=server.log_path)
    return server, nginx_ports.https, cafile


def tls_client_factory(https_port, cafile):
    """Client(source) for nginx's TLS port, trusting its self-signed certificate."""
    def client(source="127.0.0.1"):
        return tools.Client(f"https://127.0.0.1:{https_port}", cafile=cafile, source=source)

    return client


@pytest.fixture(scope="module")
def nginx_tls(nginx_bin, ports, web_server, flower_server, static_root, tmp_path_factory):
    """nginx/ with sites/https.conf (production): yields an https Client factory."""
    server, https_port, cafile = start_tls_nginx(nginx_bin, web_server, flower_server, static_root, tmp_path_factory,
                                                 nginx_ports=ports["tls"])
    yield tls_client_factory(https_port, cafile)
    server.stop()


@pytest.fixture(scope="module")
def nginx_dev(nginx_bin, ports, web_server, flower_server, static_root, tmp_path_factory):
    """nginx/ with sites/http.conf (development, plain HTTP)."""
    server, _ = start_nginx(nginx_bin, "http.conf", ports["dev"], web_server, flower_server, static_root,
                            tmp_path_factory)

    def client(source="127.0.0.1"):
        return tools.Client(f"http://127.0.0.1:{ports['dev'].http}", source=source)

    yield client
    server.stop()


@pytest.fixture
def flower_auth():
    import base64

    return {"Authorization": "Basic " + base64.b64encode(f"{FLOWER_USER}:{FLOWER_PASSWORD}".encode()).decode()}


@pytest.fixture
def static_manifest(static_root):
    import json

    return json.loads(Path(static_root, "staticfiles.json").read_text())["paths"]
