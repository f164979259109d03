"""The API at scale, and the webhook dispatcher's throughput.

    make bench-api
    python scripts/devstack.py exec .venv/bin/python benchmarks/api_bench.py [--rows N] [--repeat N] [--events N]

1. The API's own overhead: stats/ and delivery-logs/ (a first page, the failed ones, a page deep in the
   cursor) against the admin's campaign page and dashboard.json, on a campaign of 200 recipients and on one
   of --rows (1,000,000) delivery logs, in the same run; then the whole delivery-log CSV, the API's
   (Accept: text/csv) against the admin's Export. Requests go through Django's test Client with a bearer
   token (the API) or a superuser's session (the admin), so the time is the server's.
2. The webhook dispatcher: --events delivery.sent events recorded for one endpoint (one INSERT … SELECT),
   then packed, signed and POSTed in batches of WEBHOOK_BATCH_SIZE to a local receiver on this machine,
   on one process (one worker of the webhooks queue): events per second, and requests per second.
"""

import argparse
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailer_project.settings")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")
os.environ.setdefault("API_RATE_LIMIT", "1000000/min")
os.environ.setdefault("WEBHOOK_ALLOW_PRIVATE_URLS", "1")

import django  # noqa: E402

django.setup()

from django.core.cache import cache  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402
from django.urls import reverse  # noqa: E402

from benchmarks.sent_campaign import make_sent_campaign, median_page_seconds, superuser_client, timed  # noqa: E402
from campaigns.api import tokens  # noqa: E402
from campaigns.models import DeliveryLog, WebhookMessage  # noqa: E402
from campaigns.webhooks import dispatch, endpoints, events  # noqa: E402


def api_client(user):
    _, token = tokens.create_token(user, "bench")
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


def urls(campaign):
    api = f"/api/v1/campaigns/{campaign.pk}"
    deep = DeliveryLog.objects.filter(campaign=campaign).order_by("id").values_list("id", flat=True)[
        max(0, campaign.total_recipients - 150)]
    return {
        "admin: campaign page": ("admin", reverse("admin:campaigns_campaign_change", args=[campaign.pk])),
        "admin: dashboard.json": ("admin", reverse("admin:campaigns_campaign_dashboard_json", args=[campaign.pk])),
        "admin: delivery logs of the campaign": (
            "admin", f"{reverse('admin:campaigns_deliverylog_changelist')}?campaign__id__exact={campaign.pk}"),
        "api: stats/": ("api", f"{api}/stats/"),
        "api: delivery-logs/ (first 100)": ("api", f"{api}/delivery-logs/"),
        "api: delivery-logs/?status=failed": ("api", f"{api}/delivery-logs/?status=failed"),
        "api: delivery-logs/ deep page": ("api", f"{api}/delivery-logs/?page_size=100&cursor={cursor_after(deep)}"),
        "api: recipients/ (first 100)": ("api", f"{api}/recipients/"),
    }


def cursor_after(delivery_id):
    """DRF's cursor for "the page after id DELIVERY_ID" (position only)."""
    import base64
    from urllib.parse import quote

    return quote(base64.b64encode(f"p={delivery_id}".encode()).decode())


def csv_seconds(client, url, **headers):
    def read():
        response = client.get(url, **headers)
        assert response.status_code == 200, (url, response.status_code)
        return sum(len(chunk) for chunk in response.streaming_content)
    return timed(read)


class Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def webhook_throughput(campaign, count):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoints.create(None, f"http://127.0.0.1:{server.server_address[1]}/hooks", ["delivery.sent"])
    ids = list(DeliveryLog.objects.filter(campaign=campaign, status="sent").order_by("id")
               .values_list("id", flat=True)[:count])
    recording, recorded = timed(lambda: events.record_delivery_results(ids))
    delivering, (delivered, failed) = timed(lambda: dispatch.deliver_due(max_seconds=3600))
    server.shutdown()
    return recorded, recording, delivered, failed, delivering


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--events", type=int, default=50_000)
    args = parser.parse_args()

    setup_test_environment()
    call_command("migrate", verbosity=0)
    cache.clear()
    admin = superuser_client()
    from django.contrib.auth import get_user_model

    api = api_client(get_user_model().objects.get(username="bench"))
    clients = {"admin": admin, "api": api}

    small = make_sent_campaign("Small campaign", 200)
    baseline = {name: median_page_seconds(clients[who], url, args.repeat) for name, (who, url) in urls(small).items()}
    print(f"Inserting {args.rows:,} recipients and delivery logs ...", flush=True)
    seconds, big = timed(lambda: make_sent_campaign("Big campaign", args.rows))
    print(f"  done in {seconds:.1f}s", flush=True)
    large = {name: median_page_seconds(clients[who], url, args.repeat) for name, (who, url) in urls(big).items()}

    print(f"\nMedian of {args.repeat} (ms): 200 delivery logs vs {args.rows:,}")
    print(f"{'request':40} {'small':>8} {'large':>8} {'ratio':>7}")
    for name in baseline:
        print(f"{name:40} {baseline[name] * 1000:8.1f} {large[name] * 1000:8.1f} {large[name] / baseline[name]:6.2f}x")

    export = reverse("admin:campaigns_campaign_export", args=[big.pk])
    admin_s, admin_bytes = csv_seconds(admin, export)
    api_s, api_bytes = csv_seconds(api, f"/api/v1/campaigns/{big.pk}/delivery-logs/", HTTP_ACCEPT="text/csv")
    print(f"\nWhole delivery-log CSV of {args.rows:,} rows: admin Export {admin_s:.1f}s ({admin_bytes / 2**20:.0f} MB), "
          f"API text/csv {api_s:.1f}s ({api_bytes / 2**20:.0f} MB): {api_s / admin_s:.2f}x")

    recorded, recording, delivered, failed, delivering = webhook_throughput(big, args.events)
    requests = WebhookMessage.objects.filter(status="delivered").count()
    print(f"\nWebhooks: {recorded:,} delivery.sent events recorded in {recording * 1000:.0f} ms "
          f"({recorded / recording:,.0f} events/s, one INSERT … SELECT)")
    print(f"          delivered in {delivering:.1f}s on one process: {recorded / delivering:,.0f} events/s, "
          f"{requests / delivering:,.1f} signed requests/s of up to {os.environ.get('WEBHOOK_BATCH_SIZE', 100)} "
          f"events ({delivered} delivered, {failed} failed attempts)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
