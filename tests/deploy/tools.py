"""Helpers for the deployment tests: Debian tools, compose files, rendered Nginx config, HTTP, processes."""

import http.client
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from localservers.ports import free_port, log_tail, wait_for_port  # noqa: F401  (the tests use them as tools.*)

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def ensure_debian_tool(binary, package):
    """Path of BINARY, installing Debian's PACKAGE with apt-get when missing (as root); else skip."""
    found = shutil.which(binary, path=SBIN_PATH)
    if found:
        return found
    if os.geteuid() != 0:
        pytest.skip(f"{binary} is missing: install Debian's {package} (`sudo apt-get install {package}`)")
    # RUNLEVEL=1 keeps the package's service from being started on install.
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", RUNLEVEL="1")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", package], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    found = shutil.which(binary, path=SBIN_PATH)
    assert found, f"{package} installed but {binary} not found"
    return found


class Server:
    """A server process in its own process group, stopped (with its children) by stop()."""

    def __init__(self, name, cmd, port, log_path, env=None, cwd=ROOT):
        self.name, self.cmd, self.port, self.log_path = name, cmd, port, Path(log_path)
        self.env, self.cwd, self.proc = env, cwd, None

    def start(self):
        self.proc = subprocess.Popen(self.cmd, cwd=self.cwd, env=self.env, stdout=open(self.log_path, "ab"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for_port(self.port, self.proc, name=self.name, log_path=self.log_path)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def path_with_venv(env=None):
    env = dict(os.environ if env is None else env)
    env["PATH"] = os.pathsep.join([str(VENV_BIN), env.get("PATH", os.defpath)])
    return env


# --- docker-compose --------------------------------------------------------------------------------

def compose_config(compose_file, env_file, docker_compose, project_dir=ROOT):
    """`docker-compose -f FILE [--env-file ENV] config`, with no other variables set.

    Without ENV, docker-compose reads PROJECT_DIR/.env if there is one, as `docker compose up` does.
    """
    env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": os.environ.get("HOME", "/root")}
    options = ["--env-file", str(env_file)] if env_file else []
    return subprocess.run([docker_compose, *options, "-f", str(Path(project_dir) / compose_file), "config"],
                          cwd=project_dir, env=env, capture_output=True, text=True)


def yaml_to_data(text, docker_compose):
    """Parse YAML with the interpreter that runs docker-compose (Debian's, which ships PyYAML)."""
    interpreter = Path(docker_compose).read_text(errors="replace").splitlines()[0].removeprefix("#!").split()
    result = subprocess.run([*interpreter, "-c", "import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))"],
                            input=text, capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


# --- Nginx -----------------------------------------------------------------------------------------

@dataclass
class NginxPorts:
    http: int
    https: int


def render_nginx(conf_dir, site, web_port, flower_port, static_root, ports, run_as_root):
    """Copy nginx/ into CONF_DIR as the container sees /etc/nginx/, substituting only addresses and paths.

    Every substituted string must be present, so the rendering breaks loudly if nginx.conf drifts.
    """
    conf_dir = Path(conf_dir)
    shutil.copytree(ROOT / "nginx" / "snippets", conf_dir / "snippets")
    (conf_dir / "sites").mkdir()
    shutil.copy(ROOT / "nginx" / "sites" / site, conf_dir / "sites" / "mailer.conf")
    shutil.copy("/etc/nginx/mime.types", conf_dir / "mime.types")
    (conf_dir / "nginx.conf").write_text((ROOT / "nginx" / "nginx.conf").read_text())

    replacements = {
        "server web:8000;": f"server 127.0.0.1:{web_port};",
        "server flower:5555;": f"server 127.0.0.1:{flower_port};",
        "/srv/static/": f"{static_root}/",
        "listen 80 ": f"listen 127.0.0.1:{ports.http} ",
        "listen 443 ": f"listen 127.0.0.1:{ports.https} ",
        "pid /var/run/nginx.pid;": f"pid {conf_dir}/nginx.pid;",
        "user nginx;": "user root;" if run_as_root else "",
        "/etc/nginx/": f"{conf_dir}/",
    }
    files = [conf_dir / "nginx.conf", *sorted((conf_dir / "snippets").glob("*.conf")), conf_dir / "sites" / "mailer.conf"]
    texts = {f: f.read_text() for f in files}
    for old, new in replacements.items():
        if old == "listen 443 " and site == "http.conf":
            continue
        assert any(old in t for t in texts.values()), f"{old!r} not found in the Nginx config"
        texts = {f: t.replace(old, new) for f, t in texts.items()}
    for f, t in texts.items():
        for listen in re.findall(r"^\s*listen\s+([^;]+);", t, re.MULTILINE):
            assert listen.startswith("127.0.0.1:"), f"{f.name} would listen beyond loopback: {listen}"
        f.write_text(t)
    return conf_dir / "nginx.conf"


def make_self_signed_certificate(cert_dir):
    cert_dir = Path(cert_dir)
    cert_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", str(cert_dir / "privkey.pem"), "-out", str(cert_dir / "fullchain.pem"),
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    return cert_dir / "fullchain.pem"


# --- HTTP ------------------------------------------------------------------------------------------

@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def header(self, name):
        return self.headers.get(name)

    def all(self, name):
        return self.headers.get_all(name) or []

    @property
    def text(self):
        return self.body.decode(errors="replace")


class Client:
    """HTTP(S) to 127.0.0.1 from a chosen loopback source address (Nginx's rate limits key on it)."""

    def __init__(self, base_url, cafile=None, source="127.0.0.1"):
        parts = urlsplit(base_url)
        self.https = parts.scheme == "https"
        self.host, self.port = parts.hostname, parts.port
        self.context = ssl.create_default_context(cafile=cafile) if self.https else None
        self.source = source
        self.conn = None

    def connect(self):
        if self.https:
            return http.client.HTTPSConnection(self.host, self.port, timeout=60, context=self.context,
                                               source_address=(self.source, 0))
        return http.client.HTTPConnection(self.host, self.port, timeout=60, source_address=(self.source, 0))

    def request(self, method, path, body=None, headers=None, keep_alive=False):
        conn = self.conn if keep_alive and self.conn else self.connect()
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            result = Response(response.status, response.headers, response.read())
        except BaseException:
            conn.close()
            self.conn = None
            raise
        if keep_alive and not response.will_close:
            self.conn = conn
        else:
            conn.close()
            self.conn = None
        return result

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def close(self):
        if self.conn:
            self.conn.close()
            self.conn = None
