"""A local HTTP server that answers ``POST /v3/mail/send`` like SendGrid v3.

    python -m localservers.sendgrid_api --host 127.0.0.1 --port 8025 \\
        --record-file var/sendgrid.jsonl [--api-key KEY] [--render]

Point the official client at it with
``SendGridAPIClient(api_key, host="http://127.0.0.1:8025")``.

Mail send:
  * A valid request gets 202 with an empty body and an ``X-Message-Id``
    header, and every personalization is appended to --record-file as one
    JSON line: ``message_id``, ``to`` (list of addresses), ``custom_args``
    (top-level merged with the personalization's), ``substitutions``,
    ``subject`` (the personalization's, else the top-level one) and
    ``received_at`` (epoch seconds, when the server began to handle the
    request, before reading its body: what a rate limit is checked on).  With
    --render each line also has ``rendered``: ``{"subject", "text", "html"}``
    with that personalization's substitutions applied by plain string
    replacement, as SendGrid does (costly for big bodies: tests only).
  * A valid request with ``mail_settings.sandbox_mode.enable`` gets 200 with
    an empty body and is not recorded: SendGrid's sandbox mode.
  * An invalid request gets 400 with SendGrid's error body
    ``{"errors": [{"message", "field", "help": null}]}``: everything SendGrid's
    published OpenAPI description refuses (contracts/sendgrid/tsg_mail_v3.yaml,
    checked by sendgrid_contract.py with jsonschema-rs; for example a top-level ``custom_args``
    that is not a string), plus SendGrid's own rules that the description does
    not express (valid addresses, text/plain before text/html, ...).  One
    deliberate strictness: an address repeated anywhere in the request is
    refused, where SendGrid itself only refuses repeats inside one
    personalization.
  * With --api-key, a missing or different ``Authorization: Bearer`` gets 401.

Control endpoints for tests (JSON in and out):
  * ``POST /_control`` ``{"mode": "ok"|"400"|"413"|"500"|"502"|"503"|"504"|
    "429"|"401"|"403"|"hang", "count": N, "reset_after": 1,
    "hang_seconds": 30, "after_accepting": false, "header_case": "canonical",
    "clock_offset": 0}``:
    the next N mail sends get that answer (N = -1, the default, until
    changed), then "ok" again.  429 carries ``X-RateLimit-Reset``
    ``reset_after`` seconds ahead of the response's ``Date``, its header names
    in lower case with ``"header_case": "lower"``, and with ``clock_offset``
    the server's clock (its Date and the reset) runs that many seconds off; "400" is an error about the
    request as a whole; "502"/"504" answer like a gateway (an HTML body, no
    SendGrid error body); "hang" waits ``hang_seconds`` then closes the
    connection without a reply.  With ``after_accepting`` the request is
    first accepted and recorded as a valid one would be, then answered with
    the fault: a gateway that lost SendGrid's 202.
    ``GET /_control`` shows the current fault.  ``"reject_to": REGEX``
    (kept with any mode until changed) answers 400 to a request with a
    personalization whose address matches, naming each such personalization
    (``personalizations.N.to.0.email``), as SendGrid does for an address it
    will not take; nothing of that request is recorded.
  * ``GET /_stats``: ``{"requests_by_status": {"202": n, "hang": n, ...},
    "personalizations_accepted": n, "hung_recipients": [addresses of the
    requests "hang" held], "seen_recipients": [addresses of every mail-send request
    received, whatever its answer]}``.
  * ``POST /_reset``: clears stats and faults; the record file is kept.

``set_fault``, ``get_stats``, ``reset`` and ``read_records`` below wrap these
for tests.
"""

import argparse
import collections
import json
import math
import os
import re
import secrets
import signal
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from localservers.sendgrid_contract import contract_violations

MAX_PERSONALIZATIONS = 1000
FAULT_MODES = {"ok", "400", "413", "500", "502", "503", "504", "429", "401", "403", "hang"}
GATEWAY_MODES = {"502": "Bad Gateway", "504": "Gateway Timeout"}
RATE_LIMIT = 600
EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")

INVALID_KEY = "The provided authorization grant is invalid, expired, or revoked"
FAULT_REPLIES = {
    "400": (400, "invalid request"),
    "413": (413, "content too large"),
    "500": (500, "Internal server error"),
    "503": (503, "Service unavailable"),
    "429": (429, "too many requests"),
    "401": (401, INVALID_KEY),
    "403": (403, "access forbidden"),
}
FROM_REQUIRED = (
    "The from object must be provided for every email send. It is an object that requires "
    'the email parameter, but may also contain a name parameter.  e.g. {"email" : '
    '"example@example.com"}  or {"email" : "example@example.com", "name" : "Example Recipient"}.'
)
SUBJECT_REQUIRED = (
    "The subject is required. You can get around this requirement if you use a template "
    "with a subject defined or if every personalization has a subject defined."
)
CONTENT_REQUIRED = (
    "Unless a valid template_id is provided, the content parameter is required. There must "
    "be at least one defined content block. We typically suggest both text/plain and "
    "text/html blocks are included, but only one block is required."
)
TO_REQUIRED = (
    "The to array is required for all personalization objects, and must have at least "
    "one email object with a valid email address."
)
DUPLICATE_ADDRESS = (
    "Each email address in the personalization block should be unique between to, cc, and "
    "bcc. We found the first duplicate instance of [{email}] in the {field} field."
)


def error(message, field=None):
    return {"message": message, "field": field, "help": None}


def error_body(*errors):
    return {"errors": list(errors)}


def is_email(value):
    return isinstance(value, str) and EMAIL_RE.fullmatch(value) is not None


def is_string_map(value):
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def validate_mail(payload):
    """SendGrid's 400 errors for a mail/send payload; empty when it is valid."""
    if not isinstance(payload, dict):
        return [error("Bad Request")]
    errors = []
    personalizations = payload.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        errors.append(error(
            "The personalizations field is required and must have at least one "
            "personalization.", "personalizations"))
        personalizations = []
    elif len(personalizations) > MAX_PERSONALIZATIONS:
        errors.append(error(
            f"The personalizations field is limited to {MAX_PERSONALIZATIONS} "
            "personalizations per API request.", "personalizations"))
        personalizations = []
    errors.extend(_validate_personalizations(personalizations))

    sender = payload.get("from")
    if not isinstance(sender, dict) or "email" not in sender:
        errors.append(error(FROM_REQUIRED, "from.email"))
    elif not is_email(sender["email"]):
        errors.append(error("The from email does not contain a valid address.", "from.email"))

    uses_template = bool(payload.get("template_id"))
    every_personalization_has_subject = bool(personalizations) and all(
        isinstance(p, dict) and p.get("subject") for p in personalizations)
    subject = payload.get("subject")
    if subject is not None and not isinstance(subject, str):
        errors.append(error("The subject must be a string.", "subject"))
    elif not subject and not uses_template and not every_personalization_has_subject:
        errors.append(error(SUBJECT_REQUIRED, "subject"))

    errors.extend(_validate_content(payload.get("content"), uses_template))
    # Then whatever else the published description refuses, once per field.
    reported = {e["field"] for e in errors}
    for field, message in contract_violations(payload):
        if field not in reported:
            reported.add(field)
            errors.append(error(message, field))
    return errors


def _validate_personalizations(personalizations):
    errors = []
    seen = set()
    duplicate_reported = False
    for i, personalization in enumerate(personalizations):
        prefix = f"personalizations.{i}"
        if not isinstance(personalization, dict):
            errors.append(error("A personalization must be an object.", prefix))
            continue
        to = personalization.get("to")
        if not isinstance(to, list) or not to:
            errors.append(error(TO_REQUIRED, f"{prefix}.to"))
        for kind in ("to", "cc", "bcc"):
            recipients = personalization.get(kind)
            if not isinstance(recipients, list):
                continue
            for j, recipient in enumerate(recipients):
                address = recipient.get("email") if isinstance(recipient, dict) else None
                if not is_email(address):
                    errors.append(error("Does not contain a valid address.",
                                        f"{prefix}.{kind}.{j}.email"))
                    continue
                key = address.lower()
                if key in seen and not duplicate_reported:
                    duplicate_reported = True
                    field = f"{prefix}.{kind}"
                    errors.append(error(DUPLICATE_ADDRESS.format(email=address, field=field), field))
                seen.add(key)
        for name in ("substitutions", "custom_args", "headers"):
            if name in personalization and not is_string_map(personalization[name]):
                errors.append(error(f"The {name} must be an object of strings.",
                                    f"{prefix}.{name}"))
        subject = personalization.get("subject")
        if subject is not None and not isinstance(subject, str):
            errors.append(error("The subject must be a string.", f"{prefix}.subject"))
    return errors


def _validate_content(content, uses_template):
    if content is None and uses_template:
        return []
    if not isinstance(content, list) or not content:
        return [error(CONTENT_REQUIRED, "content")]
    errors = []
    types = []
    for k, block in enumerate(content):
        block = block if isinstance(block, dict) else {}
        if not isinstance(block.get("type"), str) or not block.get("type"):
            errors.append(error("The content type must be a string at least one character "
                                "in length.", f"content.{k}.type"))
        if not isinstance(block.get("value"), str) or not block.get("value"):
            errors.append(error("The content value must be a string at least one character "
                                "in length.", f"content.{k}.value"))
        types.append(block.get("type"))
    if "text/plain" in types and types.index("text/plain") != 0:
        errors.append(error("If present, text/plain and text/html may only be provided in "
                            "that order.", "content"))
    return errors


def substitute(text, substitutions):
    if text is None:
        return None
    for key, value in substitutions.items():
        text = text.replace(key, value)
    return text


def personalization_records(payload, message_id, render):
    top_args = payload.get("custom_args") if isinstance(payload.get("custom_args"), dict) else {}
    bodies = {block["type"]: block["value"] for block in payload.get("content") or []}
    for personalization in payload["personalizations"]:
        substitutions = personalization.get("substitutions") or {}
        subject = personalization.get("subject") or payload.get("subject")
        record = {
            "message_id": message_id,
            "to": [r["email"] for r in personalization["to"]],
            "custom_args": {**top_args, **(personalization.get("custom_args") or {})},
            "substitutions": substitutions,
            "subject": subject,
        }
        if render:
            record["rendered"] = {
                "subject": substitute(subject, substitutions),
                "text": substitute(bodies.get("text/plain"), substitutions),
                "html": substitute(bodies.get("text/html"), substitutions),
            }
        yield record


class FakeSendGrid:
    """State shared by the request threads: faults, stats and the record file."""

    def __init__(self, record_file, api_key=None, render=False):
        self.api_key = api_key
        self.render = render
        self.lock = threading.Lock()
        if os.path.dirname(record_file):
            os.makedirs(os.path.dirname(record_file), exist_ok=True)
        self.records = open(record_file, "a", encoding="utf-8")
        self.reset()

    def reset(self):
        with self.lock:
            self.fault = {"mode": "ok", "count": 0, "reset_after": 1, "hang_seconds": 30,
                          "after_accepting": False, "header_case": "canonical", "clock_offset": 0.0,
                          "reject_to": None}
            self.requests_by_status = collections.Counter()
            self.personalizations_accepted = 0
            self.hung_recipients = []  # the addresses of requests held by "hang" (in flight)
            self.seen_recipients = []  # the addresses of every mail-send request, whatever the answer

    def set_fault(self, control):
        mode = str(control.get("mode", "ok"))
        if mode not in FAULT_MODES:
            raise ValueError(f"mode must be one of {sorted(FAULT_MODES)}")
        count = int(control.get("count", -1))
        with self.lock:
            self.fault = {
                "mode": mode,
                "count": 0 if mode == "ok" else count,
                "reset_after": float(control.get("reset_after", 1)),
                "hang_seconds": float(control.get("hang_seconds", 30)),
                "after_accepting": bool(control.get("after_accepting", False)),
                "header_case": "lower" if control.get("header_case") == "lower" else "canonical",
                "clock_offset": float(control.get("clock_offset", 0)),
                "reject_to": control.get("reject_to") or None,
            }
            if self.fault["reject_to"]:
                re.compile(self.fault["reject_to"])  # a bad pattern is the caller's error (400), now
            return dict(self.fault)

    def take_fault(self):
        """The fault this request must suffer, or None; counts it down."""
        with self.lock:
            fault = dict(self.fault)
            if fault["mode"] == "ok" or fault["count"] == 0:
                return None
            if self.fault["count"] > 0:
                self.fault["count"] -= 1
                if self.fault["count"] == 0:
                    self.fault["mode"] = "ok"
            return fault

    def count(self, status, personalizations=0):
        with self.lock:
            self.requests_by_status[str(status)] += 1
            self.personalizations_accepted += personalizations

    def stats(self):
        with self.lock:
            return {
                "requests_by_status": dict(self.requests_by_status),
                "personalizations_accepted": self.personalizations_accepted,
                "hung_recipients": list(self.hung_recipients),
                "seen_recipients": list(self.seen_recipients),
            }

    def hold(self, body):
        """Remember the recipients of a request that "hang" holds (what is in flight)."""
        with self.lock:
            self.hung_recipients.extend(recipients_of(body))

    def saw(self, body):
        """Remember the recipients of a mail-send request, whatever the answer to it."""
        with self.lock:
            self.seen_recipients.extend(recipients_of(body))

    def record(self, payload, message_id, received_at):
        lines = "".join(
            json.dumps({**r, "received_at": round(received_at, 6)}) + "\n"
            for r in personalization_records(payload, message_id, self.render))
        with self.lock:
            self.records.write(lines)
            self.records.flush()


class SendGridRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeSendGrid/1.0"

    @property
    def app(self):
        return self.server.app

    def log_message(self, format, *args):
        pass  # one line per request would drown the startup line and slow benchmarks

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send_json(self, status, body=None, headers=(), content_type="application/json"):
        data = b"" if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if data:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/_stats":
            self.send_json(200, self.app.stats())
        elif path == "/_control":
            with self.app.lock:
                self.send_json(200, dict(self.app.fault))
        else:
            self.send_json(404, error_body(error("Not found")))

    def do_POST(self):
        self.received_at = time.time()
        body = self.read_body()
        path = self.path.split("?")[0]
        if path == "/v3/mail/send":
            self.mail_send(body)
        elif path == "/_control":
            try:
                self.send_json(200, self.app.set_fault(json.loads(body or b"{}")))
            except (ValueError, TypeError, AttributeError, re.error) as exc:
                self.send_json(400, error_body(error(str(exc))))
        elif path == "/_reset":
            self.app.reset()
            self.send_json(200, {})
        else:
            self.send_json(404, error_body(error("Not found")))

    def mail_send(self, body):
        self.app.saw(body)
        fault = self.app.take_fault()
        self.clock_offset = fault["clock_offset"] if fault else 0.0
        if fault and not fault["after_accepting"]:
            self.reply_fault(fault, body=body)
            return
        if self.app.api_key is not None:
            authorization = self.headers.get("Authorization")
            if not authorization:
                self.reply(401, error_body(error("authorization required")))
                return
            if authorization != f"Bearer {self.app.api_key}":
                self.reply(401, error_body(error(INVALID_KEY)))
                return
        try:
            payload = json.loads(body)
        except ValueError:
            self.reply(400, error_body(error("Bad Request")))
            return
        errors = validate_mail(payload) or self.refused_addresses(payload)
        if errors:
            self.reply(400, error_body(*errors))
            return
        if ((payload.get("mail_settings") or {}).get("sandbox_mode") or {}).get("enable"):
            # Sandbox mode: validated and answered as SendGrid does (200, no body), never delivered.
            self.app.count(200)
            self.send_json(200)
            return
        message_id = secrets.token_urlsafe(16)  # 22 characters, like SendGrid's
        self.app.record(payload, message_id, self.received_at)
        if fault:
            # Accepted, but the answer that reaches the client is the fault.
            self.reply_fault(fault, f"{fault['mode']} after accepting", len(payload["personalizations"]), body)
            return
        self.app.count(202, len(payload["personalizations"]))
        self.send_json(202, headers=[("X-Message-Id", message_id)])

    def refused_addresses(self, payload):
        with self.app.lock:
            pattern = self.app.fault.get("reject_to")
        if not pattern:
            return []
        return [error("Does not contain a valid address.", f"personalizations.{i}.to.0.email")
                for i, personalization in enumerate(payload["personalizations"])
                if re.search(pattern, personalization["to"][0]["email"], re.IGNORECASE)]

    def reply(self, status, body, headers=()):
        self.app.count(status)
        self.send_json(status, body, headers)

    def date_time_string(self, timestamp=None):
        # The Date header, on this server's clock (see clock_offset).
        return super().date_time_string(time.time() + self.clock_offset if timestamp is None else timestamp)

    clock_offset = 0.0

    def reply_fault(self, fault, count_as=None, personalizations=0, body=b""):
        mode = fault["mode"]
        self.app.count(count_as or mode, personalizations)
        if mode == "hang":
            self.app.hold(body)
            time.sleep(fault["hang_seconds"])
            self.close_connection = True
            return
        if mode in GATEWAY_MODES:
            page = f"<html><body><h1>{mode} {GATEWAY_MODES[mode]}</h1></body></html>".encode()
            self.send_json(int(mode), page, content_type="text/html")
            return
        status, message = FAULT_REPLIES[mode]
        headers = []
        if mode == "429":
            reset_at = math.ceil(time.time() + self.clock_offset + fault["reset_after"])
            headers = [("X-RateLimit-Limit", str(RATE_LIMIT)),
                       ("X-RateLimit-Remaining", "0"),
                       ("X-RateLimit-Reset", str(reset_at))]
            if fault["header_case"] == "lower":
                headers = [(name.lower(), value) for name, value in headers]
        self.send_json(status, error_body(error(message)), headers)


class FakeSendGridServer(ThreadingHTTPServer):
    daemon_threads = True  # a hanging request must not hold up shutdown
    request_queue_size = 128  # several sender workers may connect at once

    def __init__(self, address, app):
        super().__init__(address, SendGridRequestHandler)
        self.app = app


# Helpers for tests that drive a running server.

def _call(base_url, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        base_url.rstrip("/") + path, data=data, method=method,
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"{}")


def set_fault(base_url, mode, count=-1, **options):
    return _call(base_url, "POST", "/_control", {"mode": mode, "count": count, **options})


def get_stats(base_url):
    return _call(base_url, "GET", "/_stats")


def reset(base_url):
    return _call(base_url, "POST", "/_reset", {})


def recipients_of(body):
    """The addresses of a mail-send request's personalizations ([] if it cannot be read)."""
    try:
        return [to.get("email") for p in json.loads(body).get("personalizations") or [] for to in p.get("to") or []]
    except (ValueError, AttributeError, TypeError):
        return []


def read_records(record_file):
    try:
        with open(record_file, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--record-file", default="var/sendgrid.jsonl")
    parser.add_argument("--api-key", help="require 'Authorization: Bearer API_KEY'")
    parser.add_argument("--render", action="store_true",
                        help="record each personalization's substituted subject and bodies")
    args = parser.parse_args(argv)

    app = FakeSendGrid(args.record_file, api_key=args.api_key, render=args.render)
    server = FakeSendGridServer((args.host, args.port), app)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    host, port = server.server_address[:2]
    print(f"Fake SendGrid API listening on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        app.records.close()
        print("Fake SendGrid API stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
