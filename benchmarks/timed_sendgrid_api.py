"""The fake SendGrid API (localservers.sendgrid_api) with one addition for the benchmarks:
each recorded personalization carries ``"t"``, the time (time.time()) at which the server began to
handle its request (before reading the body), so that a shared rate limit can be checked at the
server. Same arguments as the original.

    python benchmarks/timed_sendgrid_api.py --host 127.0.0.1 --port 8025 --record-file var/x.jsonl
"""

import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from localservers import sendgrid_api as api  # noqa: E402

_records = api.personalization_records
_do_post = api.SendGridRequestHandler.do_POST
_arrival = threading.local()  # one handler thread per connection: requests on it come one at a time


def do_post(self):
    _arrival.t = time.time()
    return _do_post(self)


def stamped_records(payload, message_id, render):
    received = round(getattr(_arrival, "t", None) or time.time(), 4)
    for record in _records(payload, message_id, render):
        record["t"] = received
        yield record


api.personalization_records = stamped_records  # FakeSendGrid.record looks it up at call time
api.SendGridRequestHandler.do_POST = do_post

if __name__ == "__main__":
    sys.exit(api.main())
