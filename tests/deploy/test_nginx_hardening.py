"""Issue 13, items 4, 5 and 9: nginx/ (Debian's nginx, natively) in front of gunicorn and Flower.

Each test uses its own loopback source address, because the rate limits count per address.
Everything listens on 127.0.0.1, so the /readyz allow-list is proven for loopback addresses (127.0.0.1
allowed, any other 127.x refused) and by the ranges in the configuration.
"""

import base64
import re
import subprocess

import pytest

from tests.deploy import tools
from tests.deploy.conftest import FLOWER_PASSWORD, FLOWER_USER, start_tls_nginx, tls_client_factory

TWO_MB = b"x" * (2 * 1024 * 1024)
TOKEN = "SECRET-TOKEN-1234567890abcdefghij"


@pytest.fixture(scope="module")
def nginx_site(nginx_bin, web_server, flower_server, static_root, tmp_path_factory):
    """sites/https.conf (production); yields (Client factory, nginx server) to read its access log."""
    server, https_port, cafile = start_tls_nginx(nginx_bin, web_server, flower_server, static_root, tmp_path_factory)
    yield tls_client_factory(https_port, cafile), server
    server.stop()


@pytest.fixture(scope="module")
def nginx_flower_allow_list(nginx_bin, web_server, flower_server, static_root, tmp_path_factory):
    """sites/https.conf started with FLOWER_ALLOW_IPS=127.0.0.9,127.0.10.0/24."""
    server, https_port, cafile = start_tls_nginx(nginx_bin, web_server, flower_server, static_root, tmp_path_factory,
                                                 flower_allow_ips="127.0.0.9, 127.0.10.0/24")
    yield tls_client_factory(https_port, cafile)
    server.stop()


def statuses_until(client, method, path, stop_at=429, limit=2000, **kwargs):
    statuses = []
    for _ in range(limit):
        statuses.append(client.request(method, path, keep_alive=True, **kwargs).status)
        if statuses[-1] == stop_at:
            break
    client.close()
    return statuses


def post_body(client, path, body):
    return client.request("POST", path, body=body, headers={"Content-Type": "application/octet-stream"})


def post_form_upload(client, path, size):
    """A multipart upload of SIZE bytes from the site's own origin (nginx passes Host without the
    port) with a CSRF cookie, so Django reads the whole body before refusing it for its missing
    CSRF token: a body
    left unread would race the answer (nginx may see the connection reset: a 502)."""
    boundary = "securitytestboundary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="people.csv"\r\n'
            "Content-Type: text/csv\r\n\r\n").encode() + b"x" * size + f"\r\n--{boundary}--\r\n".encode()
    return client.request("POST", path, body=body, headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}", "Origin": "https://127.0.0.1",
        "Cookie": "csrftoken=" + "a" * 32})


def log_with(path, *lines):
    """The log at PATH once it holds every one of LINES (a server writes its line after answering)."""
    import time

    deadline = time.monotonic() + 30
    text = path.read_text()
    while not all(line in text for line in lines) and time.monotonic() < deadline:
        time.sleep(0.1)
        text = path.read_text()
    return text


# --- item 4: rate limits and body sizes ----------------------------------------------------------------

@pytest.mark.parametrize("path, source", [("/u/not-a-token/", "127.0.1.1"), ("/t/o/not-a-token/", "127.0.1.2"),
                                          ("/t/c/not-a-token/", "127.0.1.3"), ("/w/not-a-token/", "127.0.1.5")])
def test_links_in_emails_are_rate_limited_per_address(nginx_site, path, source):
    client, _ = nginx_site
    statuses = statuses_until(client(source), "GET", path)
    assert statuses[0] == 404  # reached Django: the token is not valid
    assert statuses[-1] == 429, statuses[-5:]
    assert set(statuses[:-1]) <= {404, 429}
    # Another address is not affected.
    assert client("127.0.1.4").get(path).status == 404


def test_flower_is_rate_limited_before_the_login_is_checked(nginx_site):
    client, _ = nginx_site
    wrong = {"Authorization": "Basic " + base64.b64encode(b"ops:guess").decode()}
    statuses = statuses_until(client("127.0.1.5"), "GET", "/flower/", headers=wrong)
    assert statuses[0] == 401
    assert statuses[-1] == 429, statuses[-5:]


@pytest.mark.parametrize("path", ["/t/o/x/", "/t/c/x/", "/u/x/", "/", "/healthz", "/admin/login/"])
def test_a_two_megabyte_body_is_refused_by_nginx_outside_the_admin(nginx_site, path):
    client, _ = nginx_site
    response = post_body(client("127.0.1.6"), path, TWO_MB)
    assert response.status == 413
    assert b"Request Entity Too Large" in response.body


def test_the_webhook_takes_a_few_megabytes_but_not_more(nginx_site):
    client, _ = nginx_site
    assert post_body(client("127.0.1.7"), "/webhooks/sendgrid/", TWO_MB).status == 403  # Django: unsigned
    assert post_body(client("127.0.1.7"), "/webhooks/sendgrid/", TWO_MB * 3).status == 413


@pytest.mark.parametrize("path", ["/admin/campaigns/campaign/1/import/", "/admin/campaigns/suppression/import/",
                                  "/admin/campaigns/campaign/1/change/"])
def test_the_import_urls_and_admin_forms_take_a_two_megabyte_body(nginx_site, path):
    client, _ = nginx_site
    response = post_form_upload(client("127.0.1.8"), path, len(TWO_MB))
    assert response.status == 403 and "CSRF" in response.text  # Django answered: nginx let it through


def test_django_reads_the_whole_upload_before_refusing_it(nginx_site, web_server):
    client, _ = nginx_site
    assert post_form_upload(client("127.0.1.10"), "/admin/campaigns/suppression/import/", 1000).status == 403
    assert "Forbidden (CSRF token missing.)" in log_with(web_server.log_path, "Forbidden (CSRF token missing.)")


def test_only_the_import_urls_take_more_than_the_admin_limit(nginx_site):
    client, _ = nginx_site
    twenty_mb = len(TWO_MB) * 10
    assert post_form_upload(client("127.0.1.9"), "/admin/campaigns/campaign/1/change/", twenty_mb).status == 413
    response = post_form_upload(client("127.0.1.9"), "/admin/campaigns/suppression/import/", twenty_mb)
    assert response.status == 403 and "CSRF" in response.text


def test_readyz_is_served_to_private_addresses_only(nginx_site, web_server, transactional_db):
    client, _ = nginx_site
    allowed = client("127.0.0.1").get("/readyz")
    assert allowed.status == 200, tools.log_tail(web_server.log_path)
    refused = client("127.0.2.1").get("/readyz")
    assert refused.status == 403 and b"nginx" in refused.body  # refused by nginx, never reached Django
    assert client("127.0.2.1").get("/healthz").status == 200  # liveness stays public


def test_ops_read_readiness_from_inside_the_web_container(web_server, production_env, transactional_db):
    """/readyz is private, so the guides ask gunicorn directly: `docker/healthcheck.py ready`."""
    from tests.deploy.test_nginx import run_probe

    result = run_probe({**production_env, "ALLOWED_HOSTS": "127.0.0.1,localhost"}, "ready",
                       f"http://127.0.0.1:{web_server.port}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"database": "ok"' in result.stdout and '"status": "ready"' in result.stdout


def test_readyz_allow_list_names_exactly_the_private_ranges():
    text = (tools.ROOT / "nginx" / "snippets" / "locations.conf").read_text()
    block = re.search(r"location = /readyz \{(.*?)\}", text, re.DOTALL).group(1)
    rules = re.findall(r"^\s*(allow|deny)\s+([^;]+);", block, re.MULTILINE)
    assert rules == [("allow", "127.0.0.1"), ("allow", "::1"), ("allow", "10.0.0.0/8"),
                     ("allow", "172.16.0.0/12"), ("allow", "192.168.0.0/16"), ("allow", "fc00::/7"),
                     ("deny", "all")]


# --- item 5: Flower ------------------------------------------------------------------------------------

def test_flower_login_file_holds_a_hash_that_nginx_accepts(nginx_site, flower_auth):
    client, server = nginx_site
    login_file = (server.log_path.parent / "htpasswd" / "flower").read_text()
    assert FLOWER_PASSWORD not in login_file
    assert re.fullmatch(rf"{FLOWER_USER}:\$6\$[^$]+\$[./0-9A-Za-z]+\n", login_file)
    assert client("127.0.3.1").get("/flower/", headers=flower_auth).status == 200


def test_flower_login_hashing_works_with_busybox_alone(tmp_path):
    """The nginx image has BusyBox's mkpasswd and no openssl: run the script with BusyBox only."""
    busybox = tools.ensure_debian_tool("busybox", "busybox")
    applets = tmp_path / "bin"
    applets.mkdir()
    for applet in ("sh", "mkpasswd", "mkdir", "dirname", "tr", "chgrp", "chmod", "cat", "printf", "echo"):
        (applets / applet).symlink_to(busybox)
    login = tmp_path / "htpasswd" / "flower"
    result = subprocess.run([str(applets / "sh"), str(tools.ROOT / "nginx/docker-entrypoint.d/40-flower-htpasswd.sh")],
                            env={"PATH": str(applets), "FLOWER_USER": "ops", "FLOWER_PASSWORD": "pw with spaces and more",
                                 "FLOWER_HTPASSWD_FILE": str(login)}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    user, hashed = login.read_text().strip().split(":", 1)
    salt = hashed.split("$")[2]
    again = subprocess.run(["openssl", "passwd", "-6", "-salt", salt, "-stdin"], input="pw with spaces and more",
                           capture_output=True, text=True, check=True).stdout.strip()
    assert (user, hashed) == ("ops", again)


def test_flower_allow_list_refuses_other_addresses_before_the_login(nginx_flower_allow_list, flower_auth):
    client = nginx_flower_allow_list
    refused = client("127.0.0.1").get("/flower/", headers=flower_auth)
    assert refused.status == 403 and b"nginx" in refused.body
    assert client("127.0.0.9").get("/flower/").status == 401  # allowed address: the login comes next
    assert client("127.0.0.9").get("/flower/", headers=flower_auth).status == 200
    assert client("127.0.10.77").get("/flower/", headers=flower_auth).status == 200
    assert client("127.0.0.1").get("/healthz").status == 200  # the rest of the site is not affected


def test_flower_allow_list_refuses_anything_but_addresses(tmp_path):
    result = subprocess.run(["sh", str(tools.ROOT / "nginx/docker-entrypoint.d/40-flower-htpasswd.sh")],
                            env={"PATH": "/usr/bin:/bin", "FLOWER_PASSWORD": "a-long-enough-flower-password",
                                 "FLOWER_HTPASSWD_FILE": str(tmp_path / "flower"),
                                 "FLOWER_ALLOW_IPS": "10.0.0.1; include /etc/passwd"}, capture_output=True, text=True)
    assert result.returncode != 0
    assert "not an address or CIDR range" in result.stderr


def run_flower_login_script(tmp_path, **env):
    access = tmp_path / "flower-access.conf"
    result = subprocess.run(["sh", str(tools.ROOT / "nginx/docker-entrypoint.d/40-flower-htpasswd.sh")],
                            env={"PATH": "/usr/bin:/bin", "FLOWER_HTPASSWD_FILE": str(tmp_path / "flower"),
                                 "FLOWER_ACCESS_FILE": str(access), **env}, capture_output=True, text=True)
    return result, access


def test_an_empty_flower_allow_list_lets_nobody_in(tmp_path):
    """Issue 22, item 8: deny by default."""
    result, access = run_flower_login_script(tmp_path, FLOWER_PASSWORD="a-long-enough-flower-password")
    assert result.returncode == 0, result.stderr
    rules = [line for line in access.read_text().splitlines() if not line.startswith("#")]
    assert rules == ["deny all;"]
    assert (tmp_path / "flower").read_text().startswith("flower-ops:")  # the default user is not admin


@pytest.mark.parametrize("user, password", [("ops", "admin"), ("ops", "short-password"), ("ops", ""),
                                            ("flower-team", "flower-team-password-2026")])
def test_a_weak_flower_password_stops_the_start(tmp_path, user, password):
    result, access = run_flower_login_script(tmp_path, FLOWER_USER=user, FLOWER_PASSWORD=password)
    assert result.returncode != 0 and ("too weak" in result.stderr or "must be set" in result.stderr)
    assert not (tmp_path / "flower").exists() and not access.exists()


# --- item 9: tokens kept out of the access logs ---------------------------------------------------------

def test_link_tokens_are_masked_in_the_nginx_and_gunicorn_access_logs(nginx_site, web_server):
    client, server = nginx_site
    referer = f"https://mail.example.com/u/{TOKEN}/"
    for path in (f"/u/{TOKEN}/", f"/t/o/{TOKEN}/", f"/t/c/{TOKEN}/?x=1", f"/w/{TOKEN}/"):  # 404s, logged by Django too
        assert client("127.0.4.1").get(path, headers={"Referer": referer}).status == 404
    expected = ["GET /u/***/ HTTP/1.1", "GET /t/o/***/ HTTP/1.1", "GET /t/c/***/?x=1 HTTP/1.1",
                "GET /w/***/ HTTP/1.1", '"https://mail.example.com/u/***/"']
    for log in (log_with(server.log_path, *expected), log_with(web_server.log_path, *expected)):
        assert TOKEN not in log
        for line in expected:
            assert line in log
