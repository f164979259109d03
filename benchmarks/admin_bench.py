"""The admin at scale: each page's time with 1M delivery logs in one campaign, against the same page on an
almost empty database measured in the same run (the ratio is the figure; target <= 3x).

    make bench-admin
    python scripts/devstack.py exec .venv/bin/python benchmarks/admin_bench.py [--rows N] [--repeat N]

Pages are rendered by Django's test Client, logged in as a superuser, so the time is the server's
(queries, templates), not a browser's. Each time is the median of several runs after a warm-up; the
first (cold) load of the big campaign's page is printed too: it fills the per-import merge-tag cache
and the settled minutes of the sends chart, once. The almost empty database holds one campaign of 200
recipients (a full page of rows, so both runs render the same HTML); after the bulk load the tables are
VACUUM ANALYZEd, as autovacuum would, so it does not run during the timings.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailer_project.settings")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.cache import cache  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402
from django.urls import reverse  # noqa: E402
from django.utils import timezone  # noqa: E402

from campaigns.models import Campaign  # noqa: E402

HTML = '<p>Hello {{ first_name|default:"there" }} from {{ city }}</p><a href="{{ unsubscribe_url }}">Unsubscribe</a>'

# Recipients and logs for one campaign, made on the server: ~97 % sent, 2 % failed, 1 % unknown, sent over
# the last two hours, half through SendGrid and half through SMTP.
FILL = """
WITH r AS (
    INSERT INTO campaigns_recipient (campaign_id, email, first_name, last_name, data)
    SELECT %(campaign)s, 'person' || g || '@example.com', 'First' || g, 'Last' || g,
           jsonb_build_object('city', 'City' || (g %% 500), 'plan', 'p' || (g %% 3))
    FROM generate_series(1, %(rows)s) AS g
    RETURNING id, email
)
INSERT INTO campaigns_deliverylog (campaign_id, recipient_id, email, status, batch_number, provider,
                                   provider_message_id, attempts, last_error, sent_at, updated_at)
SELECT %(campaign)s, r.id, r.email,
       CASE WHEN r.id %% 100 < 2 THEN 'failed' WHEN r.id %% 100 = 2 THEN 'unknown' ELSE 'sent' END,
       (r.id - %(first_id)s) / 200,
       CASE WHEN r.id %% 2 = 0 THEN 'sendgrid' ELSE 'smtp' END,
       '', 1,
       CASE WHEN r.id %% 100 < 2 THEN '550 mailbox unavailable' ELSE '' END,
       CASE WHEN r.id %% 100 > 2 THEN now() - interval '2 hours' + (r.id - %(first_id)s) * interval '7 milliseconds' END,
       now()
FROM r
"""


def make_campaign(name, rows):
    campaign = Campaign.objects.create(name=name, subject="Hi {{ first_name }}", html_body=HTML,
                                       status=Campaign.Status.COMPLETED)
    with connection.cursor() as cursor:
        cursor.execute("SELECT COALESCE(max(id), 0) + 1 FROM campaigns_recipient")
        first_id = cursor.fetchone()[0]
        cursor.execute(FILL, {"campaign": campaign.pk, "rows": rows, "first_id": first_id})
        cursor.execute(
            "SELECT count(*) FILTER (WHERE status = 'sent'), count(*) FILTER (WHERE status = 'failed'), "
            "count(*) FILTER (WHERE status = 'unknown'), min(sent_at), max(sent_at) "
            "FROM campaigns_deliverylog WHERE campaign_id = %s", [campaign.pk])
        sent, failed, unknown, first, last = cursor.fetchone()
    Campaign.objects.filter(pk=campaign.pk).update(
        total_recipients=rows, sent_count=sent, failed_count=failed, unknown_count=unknown,
        started_at=first or timezone.now(), completed_at=last or timezone.now())
    campaign.refresh_from_db()
    return campaign


def pages(campaign):
    logs = reverse("admin:campaigns_deliverylog_changelist")
    return {
        "campaign list": reverse("admin:campaigns_campaign_changelist"),
        "campaign page": reverse("admin:campaigns_campaign_change", args=[campaign.pk]),
        "dashboard.json": reverse("admin:campaigns_campaign_dashboard_json", args=[campaign.pk]),
        "delivery logs (all)": logs,
        "delivery logs of the campaign": f"{logs}?campaign__id__exact={campaign.pk}",
        "... failed only": f"{logs}?campaign__id__exact={campaign.pk}&status__exact=failed",
        "... search by address": f"{logs}?q=person{campaign.total_recipients // 2}@example.com",
    }


def time_page(client, url, repeat):
    for _ in range(2):
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        response = client.get(url)
        samples.append(time.perf_counter() - start)
        assert response.status_code == 200
    return statistics.median(samples)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()

    setup_test_environment()
    call_command("migrate", verbosity=0)
    cache.clear()
    user = get_user_model().objects.create_superuser("bench", "bench@example.com", "bench")
    client = Client()
    client.force_login(user)

    # A full page of rows (200, one batch), so both runs render the same amount of HTML.
    small = make_campaign("Small campaign", 200)
    baseline = {name: time_page(client, url, args.repeat) for name, url in pages(small).items()}

    print(f"Inserting {args.rows:,} recipients and delivery logs ...", flush=True)
    start = time.perf_counter()
    big = make_campaign("Big campaign", args.rows)
    with connection.cursor() as cursor:
        # What autovacuum does soon after a bulk load anyway; done here so it does not run during the timings.
        cursor.execute("VACUUM ANALYZE campaigns_recipient")
        cursor.execute("VACUUM ANALYZE campaigns_deliverylog")
    print(f"  done in {time.perf_counter() - start:.1f}s", flush=True)

    big_pages = pages(big)
    start = time.perf_counter()
    client.get(big_pages["campaign page"])
    cold = time.perf_counter() - start
    large = {name: time_page(client, url, args.repeat) for name, url in big_pages.items()}

    print(f"\nAdmin pages, median of {args.repeat} (ms): almost empty database vs {args.rows:,} delivery logs")
    print(f"{'page':34} {'empty':>8} {'large':>8} {'ratio':>7}")
    worst = 0.0
    for name in baseline:
        ratio = large[name] / baseline[name]
        worst = max(worst, ratio)
        print(f"{name:34} {baseline[name] * 1000:8.1f} {large[name] * 1000:8.1f} {ratio:6.2f}x")
    print(f"\nFirst (cold) load of the big campaign's page: {cold * 1000:.0f} ms "
          "(fills the merge-tag cache and the chart's settled minutes once).")
    print(f"Worst ratio: {worst:.2f}x (target <= 3x): {'OK' if worst <= 3 else 'OVER TARGET'}")
    return 0 if worst <= 3 else 1


if __name__ == "__main__":
    sys.exit(main())
