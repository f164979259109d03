"""Issue 13, item 12: a bounded, seeded fuzz pass over the public endpoints.

Random bytes, odd Unicode, huge headers, wrong methods and malformed (also correctly signed) webhook
bodies, first through Django in this process (every exception would surface), then as raw bytes
through nginx and gunicorn. The result must be no 5xx and no change in the database. Tokens are
always mutated or invented: a genuine one would rightly unsubscribe or count an open.
"""

import json
import random
import socket
import ssl
from urllib.parse import quote

import pytest
from django.apps import apps
from django.db import connection
from django.test import Client

from campaigns.message import signed_links
from campaigns.models import DeliveryLog
from tests.deploy import tools
from tests.deploy.conftest import (  # noqa: F401  (fixtures: gunicorn, Flower and nginx as deployed)
    dev_compose,
    docker_compose,
    flower_server,
    nginx_bin,
    ports,
    production_env,
    start_tls_nginx,
    static_root,
    web_server,
)
from tests.engagement.conftest import sendgrid  # noqa: F401  (fixture)
from tests.support.factories import CampaignFactory, DeliveryLogFactory

SEED = 1313
IN_PROCESS_REQUESTS = 1500
THROUGH_NGINX_REQUESTS = 300
METHODS = ["GET", "POST", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PROPFIND", "G\u00c9T"]
ODD_TEXT = ["\u202e", "\u0000", "\ufeff", "\U0001f4e7", "\udcff", "e\u0301", "\u2028", "%00", "%ff%fe", "..%2f",
            "/../", "\\", "'\"<>", "{{ x }}", "%", "%%", "\t", " ", "\u00df" * 300, "A" * 5000, "::::", "=",
            "1:" + "A" * 43, "1.0:" + "A" * 43, "eyJhIjoxfQ:" + "A" * 27 + ":" + "A" * 43]


def snapshot():
    """Every row of every table of the campaigns app (the webhook's event ids too), comparable."""
    rows = {model.__name__: sorted(map(repr, model.objects.values_list()))
            for model in apps.get_app_config("campaigns").get_models()}
    with connection.cursor() as cursor:
        cursor.execute("SELECT event_id FROM campaigns_webhook_event ORDER BY event_id")
        rows["webhook events"] = cursor.fetchall()
    return rows


def mutate(rng, token):
    chars = list(token)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(chars))
        choice = rng.random()
        if choice < 0.4:
            chars[at] = rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_:.")
        elif choice < 0.7:
            del chars[at]
        else:
            chars.insert(at, rng.choice(ODD_TEXT))
    mutated = "".join(chars)
    return mutated if mutated != token else mutated + "x"


def random_segment(rng, genuine_tokens):
    kind = rng.random()
    if kind < 0.4:
        return mutate(rng, rng.choice(genuine_tokens))
    if kind < 0.7:
        return rng.choice(ODD_TEXT) + "".join(rng.choice(ODD_TEXT) for _ in range(rng.randint(0, 3)))
    return "".join(chr(rng.choice([rng.randint(0x20, 0x7e), rng.randint(0x80, 0x2fff), rng.randint(0xe000, 0xfffd)]))
                   for _ in range(rng.randint(1, 80)))


def random_path(rng, genuine_tokens):
    segment = quote(random_segment(rng, genuine_tokens), safe=rng.choice(["", "/:", "%"]), errors="surrogatepass")
    path = rng.choice([f"/u/{segment}/", f"/t/o/{segment}/", f"/t/c/{segment}/", f"/u/{segment}",
                       "/webhooks/sendgrid/", "/webhooks/ses/", "/healthz", "/readyz", f"/webhooks/sendgrid/{segment}",
                       f"/healthz/{segment}", f"/t/{segment}/", "/u/", "/t/c/"])
    if rng.random() < 0.3:
        path += "?" + quote(random_segment(rng, genuine_tokens), safe="=&", errors="surrogatepass")
    return path


def bad_event_bodies(rng):
    """Bodies SendGrid never sends; each must be refused, signed or not."""
    depth = rng.choice([5, 40, 3000])
    return rng.choice([
        bytes(rng.randrange(256) for _ in range(rng.randint(0, 400))),
        b"[" * depth + b"]" * depth,
        b'[{"event": "open", "timestamp": ' + rng.choice([b"Infinity", b"NaN", b"-Infinity", b"1e999", b"1e308"])
        + b', "sg_event_id": "fuzz"}]',
        json.dumps([{"event": rng.choice([1, None, [], {}]), "sg_event_id": "fuzz", "timestamp": 1}]).encode(),
        json.dumps([{"sg_event_id": "fuzz", "event": "open", "timestamp": "tomorrow"}]).encode(),
        json.dumps([rng.choice([1, "x", None, [], True])]).encode(),
        json.dumps({"events": []}).encode(),
        ("[" + "\u202e" * 50 + "]").encode(),
        "[{\"event\": \"open\", \"sg_event_id\": \"\udcff\"}]".encode("utf-8", "surrogatepass"),
    ])


@pytest.fixture
def genuine_tokens(transactional_db):
    campaign = CampaignFactory(html_body='<a href="https://acme.test/">x</a>')
    logs = [DeliveryLogFactory(recipient__campaign=campaign, status=DeliveryLog.Status.SENT) for _ in range(3)]
    tokens = []
    for log in logs:
        tokens += [signed_links.unsubscribe_token(log.pk), signed_links.tracking_token(log.pk)]
    return tokens


def test_fuzzing_django_gives_no_server_error_and_changes_nothing(genuine_tokens, sendgrid):
    rng = random.Random(SEED)
    client = Client(raise_request_exception=True)
    before = snapshot()
    statuses = []
    for number in range(IN_PROCESS_REQUESTS):
        method = rng.choice(METHODS[:8])
        path = random_path(rng, genuine_tokens)
        if number % 3 == 0:  # a third go to the webhook's parser: POSTed, mostly signed
            method, path = "POST", "/webhooks/sendgrid/"
        headers = {}
        if rng.random() < 0.3:
            headers[f"HTTP_X_{rng.choice(['A', 'FUZZ', 'HOST'])}"] = rng.choice(ODD_TEXT) * rng.randint(1, 2000)
        if rng.random() < 0.2:
            headers["HTTP_USER_AGENT"] = random_segment(rng, genuine_tokens)
        body = bad_event_bodies(rng)
        if path.startswith("/webhooks/") and rng.random() < 0.6:
            headers.update(sendgrid.headers(body))  # signed: it passes verification and reaches the parser
        elif rng.random() < 0.2:
            headers.update(sendgrid.headers(body, timestamp=rng.choice([0, -1, 10**12])))
        response = client.generic(method, path, data=body, content_type=rng.choice(
            ["application/json", "text/plain", "multipart/form-data; boundary=x", "\u202e"]), **headers)
        statuses.append(response.status_code)
        assert response.status_code < 500, (method, path, body[:200], response.content[:300])
    assert snapshot() == before
    # The pass reached the interesting answers, not just one kind of refusal.
    assert {200, 400, 403, 404, 405} <= set(statuses)


def raw_request(port, cafile, source, data: bytes):
    """Send DATA as is over TLS; the status code of the answer, or None if nginx just closed."""
    context = ssl.create_default_context(cafile=cafile)
    with socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0)) as sock:
        with context.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
            tls.sendall(data)
            answer = b""
            while b"\r\n" not in answer:
                chunk = tls.recv(4096)
                if not chunk:
                    break
                answer += chunk
    if not answer.startswith(b"HTTP/"):
        return None
    return int(answer.split(b" ", 2)[1])


@pytest.fixture(scope="module")
def nginx_for_fuzz(nginx_bin, web_server, flower_server, static_root, tmp_path_factory):
    server, https_port, cafile = start_tls_nginx(nginx_bin, web_server, flower_server, static_root, tmp_path_factory)
    yield https_port, cafile
    server.stop()


def test_fuzzing_through_nginx_and_gunicorn_gives_no_server_error_and_changes_nothing(
        genuine_tokens, nginx_for_fuzz, web_server):
    port, cafile = nginx_for_fuzz
    rng = random.Random(SEED + 1)
    before = snapshot()
    statuses = []
    for number in range(THROUGH_NGINX_REQUESTS):
        method = rng.choice(METHODS).encode("utf-8")
        target = random_path(rng, genuine_tokens).encode("utf-8", "surrogateescape")
        if rng.random() < 0.15:  # raw bytes straight into the request target
            target = b"/" + rng.choice([b"u/", b"t/o/", b"t/c/", b""]) + bytes(
                rng.randrange(0x21, 256) for _ in range(rng.randint(1, 60)))
        headers = [b"Host: 127.0.0.1", b"Connection: close"]
        if rng.random() < 0.15:
            headers.append(b"X-Huge: " + b"h" * rng.choice([4000, 9000, 70000]))
        if rng.random() < 0.15:
            headers.append("X-Odd: ".encode() + rng.choice(ODD_TEXT).encode("utf-8", "surrogatepass"))
        body = bad_event_bodies(rng) if method == b"POST" else b""
        if body:
            headers.append(b"Content-Type: application/json")
            headers.append(b"Content-Length: " + str(len(body)).encode())
        data = method + b" " + target + b" HTTP/1.1\r\n" + b"\r\n".join(headers) + b"\r\n\r\n" + body
        source = f"127.0.6.{1 + number % 200}"  # spread over addresses, so the rate limits rarely answer
        status = raw_request(port, cafile, source, data)
        statuses.append(status)
        assert status is None or status < 500, (data[:300], status, tools.log_tail(web_server.log_path))
    assert snapshot() == before
    assert {400, 404} <= set(statuses)
    assert "Traceback" not in web_server.log_path.read_text()
