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
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailer_project.settings")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")

import django  # noqa: E402

django.setup()

from django.core.cache import cache  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402
from django.urls import reverse  # noqa: E402

from benchmarks.sent_campaign import make_sent_campaign, median_page_seconds, superuser_client, timed  # noqa: E402


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()

    setup_test_environment()
    call_command("migrate", verbosity=0)
    cache.clear()
    client = superuser_client()

    # A full page of rows (200, one batch), so both runs render the same amount of HTML.
    small = make_sent_campaign("Small campaign", 200)
    baseline = {name: median_page_seconds(client, url, args.repeat) for name, url in pages(small).items()}

    print(f"Inserting {args.rows:,} recipients and delivery logs ...", flush=True)
    seconds, big = timed(lambda: make_sent_campaign("Big campaign", args.rows))
    print(f"  done in {seconds:.1f}s", flush=True)

    big_pages = pages(big)
    cold, _ = timed(lambda: client.get(big_pages["campaign page"]))
    large = {name: median_page_seconds(client, url, args.repeat) for name, url in big_pages.items()}

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
