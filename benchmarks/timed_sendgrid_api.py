"""The fake SendGrid API (campaigns.localservers.sendgrid_api) with one addition for the benchmarks:
each recorded personalization carries ``"t"``, the server's receive time (time.time()) of its request,
so that a shared rate limit can be checked at the server. Same arguments as the original.

    python benchmarks/timed_sendgrid_api.py --host 127.0.0.1 --port 8025 --record-file var/x.jsonl
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from campaigns.localservers import sendgrid_api as api  # noqa: E402

_records = api.personalization_records


def stamped_records(payload, message_id, render):
    received = round(time.time(), 4)
    for record in _records(payload, message_id, render):
        record["t"] = received
        yield record


api.personalization_records = stamped_records  # FakeSendGrid.record looks it up at call time

if __name__ == "__main__":
    sys.exit(api.main())
