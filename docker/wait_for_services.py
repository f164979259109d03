"""Wait until PostgreSQL and Redis accept connections, so containers may start in any order.

WAIT_TIMEOUT (seconds, default 60) bounds the wait; past it the process exits non-zero naming what
did not answer, and the container's restart policy tries again.
"""

import os
import sys
import time

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailer_project.settings")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
django.setup()

from django.db import connection  # noqa: E402

from campaigns.operations.health import check_database, check_redis  # noqa: E402  (needs django.setup())

SERVICES = {"PostgreSQL": check_database, "Redis": check_redis}


def wait_for(name, check, deadline):
    while True:
        try:
            check()
            print(f"{name} is reachable.", flush=True)
            return True
        except Exception as error:
            connection.close()
            if time.monotonic() >= deadline:
                print(f"error: {name} is not reachable: {error}", file=sys.stderr, flush=True)
                return False
            print(f"Waiting for {name}...", flush=True)
            time.sleep(1)


def main():
    deadline = time.monotonic() + float(os.environ.get("WAIT_TIMEOUT", "60"))
    ok = all([wait_for(name, check, deadline) for name, check in SERVICES.items()])
    connection.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
