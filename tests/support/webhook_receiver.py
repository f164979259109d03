"""A local webhook receiver for tests: an HTTP server in a thread that verifies every request with the
Standard Webhooks reference library (`standardwebhooks`) and records what it got. It can answer a status
(500, a redirect) for the next requests, or a long body."""

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook


@dataclass
class Received:
    path: str
    headers: dict
    body: bytes
    verified: bool

    @property
    def events(self):
        return json.loads(self.body)["events"]


@dataclass
class Receiver:
    secret: str = ""
    requests: list = field(default_factory=list)
    answers: list = field(default_factory=list)  # (status, body, headers) for the next requests, in order
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def events(self):
        with self.lock:
            return [event for request in self.requests if request.verified for event in request.events]

    def unverified(self):
        with self.lock:
            return [request for request in self.requests if not request.verified]


def start_receiver():
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                Webhook(receiver.secret).verify(body, headers)
                verified = True
            except Exception:
                verified = False
            with receiver.lock:
                receiver.requests.append(Received(self.path, headers, body, verified))
                status, answer, extra = receiver.answers.pop(0) if receiver.answers else (200, b"ok", {})
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    receiver.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=receiver.server.serve_forever, daemon=True).start()
    return receiver
