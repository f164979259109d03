"""A local HTTP server that answers the two GETs an SNS endpoint makes to Amazon SNS.

    python -m localservers.sns_api --host 127.0.0.1 --port 8026 \\
        --record-file var/sns.jsonl [--certificate cert.pem]

* ``GET /?Action=ConfirmSubscription&TopicArn=...&Token=...`` (a SubscribeURL): 200 with SNS's
  ConfirmSubscriptionResponse XML, and one JSON line ``{"action", "topic_arn", "token"}`` appended
  to --record-file; without TopicArn or Token, 400.
* ``GET /SimpleNotificationService-<id>.pem`` (a SigningCertURL): the --certificate file, and a JSON
  line ``{"action": "certificate", "path"}``; 404 without --certificate.
* Anything else: 404.

Tests point the production code's URLs (https on sns.<region>.amazonaws.com) here by wrapping the one
function that fetches them; the production checks of those URLs stay as they are.
"""

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

CONFIRMED = """<ConfirmSubscriptionResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">
  <ConfirmSubscriptionResult><SubscriptionArn>{topic}:local-subscription</SubscriptionArn></ConfirmSubscriptionResult>
  <ResponseMetadata><RequestId>local</RequestId></ResponseMetadata>
</ConfirmSubscriptionResponse>
"""


def make_handler(record_file, certificate):
    lock = threading.Lock()

    def record(line):
        with lock, open(record_file, "a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")

    class Handler(BaseHTTPRequestHandler):
        def answer(self, status, body=b"", content_type="text/plain"):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            if parts.path == "/" and query.get("Action") == ["ConfirmSubscription"]:
                topic, token = query.get("TopicArn", [""])[0], query.get("Token", [""])[0]
                if not topic or not token:
                    return self.answer(400, b"TopicArn and Token are required")
                record({"action": "ConfirmSubscription", "topic_arn": topic, "token": token})
                return self.answer(200, CONFIRMED.format(topic=topic).encode(), "text/xml")
            if parts.path.startswith("/SimpleNotificationService-") and parts.path.endswith(".pem") and certificate:
                record({"action": "certificate", "path": parts.path})
                return self.answer(200, Path(certificate).read_bytes(), "application/x-pem-file")
            return self.answer(404, b"not found")

        def log_message(self, *args):
            pass

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--record-file", required=True)
    parser.add_argument("--certificate")
    options = parser.parse_args()
    server = ThreadingHTTPServer((options.host, options.port), make_handler(options.record_file, options.certificate))
    server.serve_forever()


if __name__ == "__main__":
    main()
