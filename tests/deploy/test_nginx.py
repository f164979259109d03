"""Debian's nginx with nginx/ in front of gunicorn and Flower, all started natively on 127.0.0.1.

gunicorn runs production settings (DEBUG off, SSL redirect on, secure cookies), so these requests go
exactly as they would through the production compose file's TLS Nginx.
"""

import re
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
HSTS = "Strict-Transport-Security"


def assert_security_headers(response, tls=True):
    for name, value in SECURITY_HEADERS.items():
        assert response.all(name) == [value], f"{name} on a {response.status}: {response.all(name)}"
    if tls:
        assert response.all(HSTS) == ["max-age=31536000; includeSubDomains"]
    else:
        assert response.all(HSTS) == []


def csrf_token(page):
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)


def cookies_of(response):
    return {c.split("=", 1)[0]: c for c in response.all("Set-Cookie")}


# --- static files ----------------------------------------------------------------------------------

def test_static_files_are_served_by_nginx_with_caching_headers(nginx_tls):
    response = nginx_tls().get("/static/admin/css/base.css")
    assert response.status == 200
    assert b"Django" in response.body or b"body" in response.body
    assert response.header("Cache-Control") == "max-age=604800"
    assert response.header("Expires")
    assert response.header("Server") == "nginx"
    assert_security_headers(response)


def test_hashed_static_files_are_cached_for_good_and_gzipped(nginx_tls, static_manifest):
    hashed = static_manifest["admin/css/base.css"]
    assert hashed != "admin/css/base.css"
    response = nginx_tls().get(f"/static/{hashed}", headers={"Accept-Encoding": "gzip"})
    assert response.status == 200
    assert response.header("Content-Encoding") == "gzip"
    cache_control = ", ".join(response.all("Cache-Control"))
    assert "immutable" in cache_control and "max-age=315360000" in cache_control
    assert_security_headers(response)


def test_a_missing_static_file_is_a_404_from_nginx(nginx_tls):
    response = nginx_tls().get("/static/admin/css/no-such-file.css")
    assert response.status == 404
    assert b"nginx" in response.body


# --- the admin through the proxy -------------------------------------------------------------------

def test_a_long_link_redirected_by_django_is_passed_on_not_a_502(nginx_tls):
    # Django answers /u/<token> with a redirect to /u/<token>/; a long token (a mangled link, a
    # fuzzer) makes a Location header larger than nginx's default 4 KB proxy buffer, which nginx
    # turned into a 502.
    target = "/u/" + "%C3%9F" * 650  # within gunicorn's 4,094-byte request line
    response = nginx_tls().request("HEAD", target)
    assert response.status == 301
    assert response.header("Location").endswith(target + "/")


def test_admin_login_page_is_proxied_to_django(nginx_tls):
    response = nginx_tls().get("/admin/login/")
    assert response.status == 200
    assert 'name="username"' in response.text and 'name="password"' in response.text
    assert "Bulk mailer" in response.text
    assert "Secure" in cookies_of(response)["csrftoken"]
    assert_security_headers(response)


def test_only_the_admin_preview_frames_may_be_framed_and_only_by_this_site(nginx_tls):
    client = nginx_tls()
    for path in ("/admin/campaigns/campaign/7/preview/frame/", "/admin/campaigns/campaign/preview/frame/"):
        assert client.get(path).all("X-Frame-Options") == ["SAMEORIGIN"], path
    for path in ("/admin/campaigns/campaign/7/preview/", "/admin/campaigns/campaign/7/change/",
                 "/admin/campaigns/campaign/7/preview/frame/x/", "/admin/login/"):
        assert client.get(path).all("X-Frame-Options") == ["DENY"], path


def test_staff_can_log_in_over_tls_behind_the_proxy(nginx_tls, transactional_db, ports):
    # Hashed as production hashes it (the suite's own hasher is a fast one): gunicorn checks it.
    staff = get_user_model().objects.create_superuser("staff", "staff@example.com")
    staff.password = make_password("a-long-staff-password", hasher="pbkdf2_sha256")
    staff.save(update_fields=["password"])
    client = nginx_tls(source="127.0.0.5")
    form = client.get("/admin/login/?next=/admin/")
    csrf_cookie = cookies_of(form)["csrftoken"].split(";")[0]
    origin = f"https://127.0.0.1:{ports['tls'].https}"
    body = f"csrfmiddlewaretoken={csrf_token(form.text)}&username=staff&password=a-long-staff-password&next=/admin/"
    login = client.request("POST", "/admin/login/?next=/admin/", body=body, headers={
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": csrf_cookie,
        "Origin": origin, "Referer": f"{origin}/admin/login/"})
    assert login.status == 302, login.text[:500]
    assert login.header("Location") == "/admin/"
    session = cookies_of(login)["sessionid"]
    assert "Secure" in session and "HttpOnly" in session
    index = client.get("/admin/", headers={"Cookie": session.split(";")[0]})
    assert index.status == 200
    assert "Campaigns and delivery" in index.text


def test_plain_http_is_redirected_to_https(nginx_tls, ports):
    from tests.deploy.tools import Client

    response = Client(f"http://127.0.0.1:{ports['tls'].http}").get("/admin/")
    assert response.status == 301
    assert response.header("Location") == "https://127.0.0.1/admin/"


# --- Flower ----------------------------------------------------------------------------------------

def test_flower_is_refused_by_nginx_without_credentials(nginx_tls):
    response = nginx_tls().get("/flower/")
    assert response.status == 401
    assert response.header("WWW-Authenticate") == 'Basic realm="Flower"'
    assert b"nginx" in response.body  # Nginx's own page: the request never reached Flower
    assert_security_headers(response)


def test_flower_is_refused_with_a_wrong_password(nginx_tls):
    import base64

    wrong = base64.b64encode(b"ops:wrong-password").decode()
    assert nginx_tls().get("/flower/", headers={"Authorization": f"Basic {wrong}"}).status == 401


def test_flower_is_served_with_credentials(nginx_tls, flower_auth):
    response = nginx_tls().get("/flower/", headers=flower_auth)
    assert response.status == 200
    assert "Flower" in response.text
    assert "/flower/static/" in response.text  # Flower knows its url_prefix, so its assets load
    assert_security_headers(response)
    asset = re.search(r'/flower/static/[^"\']+\.css[^"\']*', response.text).group(0)
    assert nginx_tls().get(asset, headers=flower_auth).status == 200


def test_flower_without_trailing_slash_redirects(nginx_tls):
    response = nginx_tls().get("/flower")
    assert response.status == 301
    assert response.header("Location").endswith("/flower/")


# --- limits ----------------------------------------------------------------------------------------

def test_an_upload_over_the_limit_is_refused_by_nginx(nginx_tls):
    conn = nginx_tls().connect()
    conn.putrequest("POST", "/admin/")
    conn.putheader("Content-Type", "application/octet-stream")
    conn.putheader("Content-Length", str(200 * 1024 * 1024))
    conn.endheaders()  # the body is never sent: Nginx answers from the headers alone
    response = conn.getresponse()
    body = response.read()
    conn.close()
    assert response.status == 413
    assert b"Request Entity Too Large" in body


def test_an_import_sized_upload_reaches_django(nginx_tls):
    """A 100 MB file (IMPORT_MAX_UPLOAD_MB) to an import URL passes Nginx; Django answers (CSRF refusal)."""
    size = 100 * 1024 * 1024
    boundary = "deploytestboundary"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="recipients.csv"\r\n'
            "Content-Type: text/csv\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    chunk = b"email,first_name\r\n" + b"someone@example.com,Someone\r\n" * 36000

    def body():
        yield head
        sent = 0
        while sent < size:
            part = chunk[: size - sent]
            sent += len(part)
            yield part
        yield tail

    response = nginx_tls(source="127.0.0.6").request("POST", "/admin/campaigns/suppression/import/", body=body(), headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Content-Length": str(len(head) + size + len(tail)),
        # Same origin and a CSRF cookie: Django reads the whole body before refusing it for its
        # missing token, so its answer cannot race the upload (a reset connection, a 502).
        "Origin": "https://127.0.0.1", "Cookie": "csrftoken=" + "a" * 32})
    assert response.status == 403
    assert "CSRF" in response.text


def test_admin_login_attempts_are_rate_limited(nginx_tls):
    client = nginx_tls(source="127.0.0.2")
    statuses = []
    for _ in range(30):
        statuses.append(client.request("POST", "/admin/login/", body="username=x&password=y", headers={
            "Content-Type": "application/x-www-form-urlencoded"}, keep_alive=True).status)
        if statuses[-1] == 429:
            break
    client.close()
    assert statuses[0] == 403  # reached Django (no CSRF token)
    assert statuses[-1] == 429, statuses
    # The login form itself is never limited, so a throttled user can still read the page.
    assert client.get("/admin/login/").status == 200


def test_the_webhook_is_rate_limited(nginx_tls):
    limited = threading.Event()

    def post_many(source):
        client = nginx_tls(source=source)
        for _ in range(250):
            if limited.is_set():
                break
            response = client.request("POST", "/webhooks/sendgrid/", body="[]", keep_alive=True,
                                      headers={"Content-Type": "application/json"})
            if response.status == 429:
                limited.set()
        client.close()

    # One client address spread over connections: the limit is per address.
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(post_many, ["127.0.0.3"] * 8))
    assert limited.is_set()


# --- health ----------------------------------------------------------------------------------------

def test_healthz_through_nginx(nginx_tls):
    response = nginx_tls().get("/healthz")
    assert response.status == 200
    assert response.text == '{"status": "ok"}'


def test_readyz_through_nginx_reports_every_check(nginx_tls):
    import json

    response = nginx_tls().get("/readyz")
    assert response.status == 200, response.text
    data = json.loads(response.body)
    assert data == {"status": "ready", "checks": {"database": "ok", "migrations": "ok", "redis": "ok",
                                                  "broker": "ok"}}


# --- the development site (plain HTTP) -------------------------------------------------------------

def test_development_site_serves_static_flower_and_health_over_http(nginx_dev, flower_auth):
    static = nginx_dev().get("/static/admin/css/base.css")
    assert static.status == 200 and static.header("Cache-Control") == "max-age=604800"
    assert_security_headers(static, tls=False)
    assert nginx_dev().get("/flower/").status == 401
    assert nginx_dev().get("/flower/", headers=flower_auth).status == 200
    assert nginx_dev().get("/healthz").status == 200
    assert nginx_dev().get("/nginx-healthz").text == "ok\n"


# --- the containers' own healthchecks, against the same servers -------------------------------------

def run_probe(env, *args):
    import subprocess
    import sys

    from tests.deploy.tools import ROOT

    return subprocess.run([sys.executable, "docker/healthcheck.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_web_container_healthcheck_passes_against_gunicorn(web_server, production_env):
    env = {**production_env, "ALLOWED_HOSTS": "127.0.0.1,localhost"}
    assert run_probe(env, "web", f"http://127.0.0.1:{web_server.port}").returncode == 0


def test_web_container_healthcheck_fails_when_nothing_listens(production_env):
    from localservers.ports import free_port

    result = run_probe(production_env, "web", f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert "web probe failed" in result.stderr


def test_flower_container_healthcheck_passes_without_credentials(flower_server, production_env):
    assert run_probe(production_env, "flower", f"http://127.0.0.1:{flower_server.port}").returncode == 0


def test_mail_sink_container_healthcheck_is_a_port_probe(flower_server, production_env):
    from localservers.ports import free_port

    assert run_probe(production_env, "tcp", str(flower_server.port)).returncode == 0
    assert run_probe(production_env, "tcp", str(free_port())).returncode == 1


def test_the_web_version_keeps_no_referrer_through_nginx(nginx_tls):
    """Issue 22, item 11: nginx replaced Django's Referrer-Policy of /w/ with the site's same-origin."""
    for path in ("/w/not-a-token/", "/w/"):
        response = nginx_tls().get(path)
        assert response.all("Referrer-Policy") == ["no-referrer"], (path, response.status)
    assert nginx_tls().get("/archive/").all("Referrer-Policy") == ["same-origin"]
