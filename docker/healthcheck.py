"""Container health probes, used by the Dockerfile's HEALTHCHECK and docker-compose*.yml.

    python docker/healthcheck.py web [URL]     # GET /healthz on gunicorn (default http://127.0.0.1:8000)
    python docker/healthcheck.py ready [URL]   # GET /readyz on gunicorn, printing which checks failed
    python docker/healthcheck.py flower [URL]  # GET /flower/healthcheck (default http://127.0.0.1:5555)
    python docker/healthcheck.py tcp PORT      # something accepts connections on 127.0.0.1:PORT
    python docker/healthcheck.py worker NAME [TIMEOUT]  # the Celery worker NAME answers a ping (default 10 s)

Exit 0 when healthy, 1 otherwise (with the reason on stderr). It runs every 30 seconds and must stay
cheap: standard library only, except the worker probe, which loads the Celery app but not Django's
apps (about a third of `celery inspect ping`'s start-up), and returns at the first pong instead of
waiting out its timeout as `celery inspect ping` does.
"""

import os
import socket
import sys
import urllib.error
import urllib.request

TIMEOUT = 5


def allowed_host():
    """A host name Django accepts: probes must pass ALLOWED_HOSTS like any request."""
    for host in os.environ.get("ALLOWED_HOSTS", "").split(","):
        host = host.strip().lstrip(".")
        if host and host != "*":
            return host
    return "localhost"


def http_ok(url, host=None):
    # The proxy header says "this came over HTTPS", as it does behind Nginx, so no redirect answers.
    headers = {"X-Forwarded-Proto": "https"}
    if host:
        headers["Host"] = host
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT) as response:
        return response.status == 200


def ready(url, host):
    """Print /readyz's answer (Nginx serves it to private networks only; this asks gunicorn)."""
    request = urllib.request.Request(url, headers={"X-Forwarded-Proto": "https", "Host": host})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT * 4) as response:
            print(response.read().decode())
            return True
    except urllib.error.HTTPError as error:  # 503: not ready, and the body says which check failed
        print(error.read().decode())
        return False


def tcp_ok(port):
    with socket.create_connection(("127.0.0.1", int(port)), timeout=TIMEOUT):
        return True


def worker_answers(name, timeout):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from mailer_project.celery import app

    replies = app.control.ping(destination=[name], timeout=timeout, limit=1)
    if replies:
        print(replies[0])
        return True
    print(f"worker {name} did not answer within {timeout:g} s", file=sys.stderr)
    return False


def main(argv):
    kind = argv[0] if argv else "web"
    try:
        if kind == "web":
            ok = http_ok((argv[1] if len(argv) > 1 else "http://127.0.0.1:8000") + "/healthz", allowed_host())
        elif kind == "ready":
            ok = ready((argv[1] if len(argv) > 1 else "http://127.0.0.1:8000") + "/readyz", allowed_host())
        elif kind == "flower":
            ok = http_ok((argv[1] if len(argv) > 1 else "http://127.0.0.1:5555") + "/flower/healthcheck")
        elif kind == "tcp":
            ok = tcp_ok(argv[1])
        elif kind == "worker":
            ok = worker_answers(argv[1], float(argv[2]) if len(argv) > 2 else 10)
        else:
            print(f"unknown probe {kind!r}: use web, ready, flower, tcp or worker", file=sys.stderr)
            return 2
    except OSError as error:
        print(f"{kind} probe failed: {error}", file=sys.stderr)
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
