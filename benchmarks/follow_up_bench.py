"""Follow-ups at scale: counting the groups and creating a follow-up on a 1M-recipient campaign, against
Campaign.duplicate() of the same campaign (one INSERT ... SELECT of every recipient) in the same run.

    python scripts/devstack.py exec .venv/bin/python benchmarks/follow_up_bench.py [--rows N] [--repeat N]

The campaign is made on the server: ~97 % sent, 2 % failed, 1 % unknown; a third of the sent opened by a
person, a tenth by a machine only, 5 % clicked (one of five links each, LinkClick rows and link counters
as campaigns.engagement writes them), 1 % bounced, and 0.5 % of all addresses suppressed. Prints the
follow-up page's time (the counts, through the admin, median of --repeat), each follow-up's time and
recipients, and the ratio of a follow-up's time to the duplicate's.
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
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402
from django.urls import reverse  # noqa: E402
from django.utils import timezone  # noqa: E402

from campaigns import follow_ups  # noqa: E402
from campaigns.models import Campaign, CampaignLink  # noqa: E402

HTML = '<p>Hello {{ first_name|default:"there" }} from {{ city }}</p><a href="{{ unsubscribe_url }}">Unsubscribe</a>'

FILL = """
WITH r AS (
    INSERT INTO campaigns_recipient (campaign_id, email, first_name, last_name, data)
    SELECT %(campaign)s, 'person' || g || '@example.com', 'First' || g, 'Last' || g,
           jsonb_build_object('city', 'City' || (g %% 500), 'plan', 'p' || (g %% 3))
    FROM generate_series(1, %(rows)s) AS g
    RETURNING id, email
)
INSERT INTO campaigns_deliverylog (campaign_id, recipient_id, email, status, batch_number, provider,
                                   provider_message_id, attempts, last_error, sent_at, updated_at,
                                   opened_at, machine_opened_at, clicked_at, bounced_at)
SELECT %(campaign)s, r.id, r.email, s.status, r.id / 200, 'smtp', '', 1, '',
       CASE WHEN s.status = 'sent' THEN now() - interval '1 day' END, now(),
       CASE WHEN s.status = 'sent' AND r.id %% 3 = 0 THEN now() - interval '20 hours' END,
       CASE WHEN s.status = 'sent' AND r.id %% 10 = 1 THEN now() - interval '1 day' END,
       CASE WHEN s.status = 'sent' AND r.id %% 20 = 3 THEN now() - interval '19 hours' END,
       CASE WHEN s.status = 'sent' AND r.id %% 100 = 50 THEN now() - interval '1 day' END
FROM r, LATERAL (SELECT CASE WHEN r.id %% 100 < 2 THEN 'failed' WHEN r.id %% 100 = 2 THEN 'unknown'
                             ELSE 'sent' END AS status) s
"""

LINKS = """
INSERT INTO campaigns_campaignlink (campaign_id, url, clickers)
SELECT %(campaign)s, 'https://shop.example.com/item/' || g, 0 FROM generate_series(0, 4) AS g
"""
LINK_CLICKS = """
INSERT INTO campaigns_linkclick (link_id, delivery_id, clicked_at)
SELECT l.id, d.id, d.clicked_at
FROM campaigns_deliverylog d
JOIN campaigns_campaignlink l ON l.campaign_id = d.campaign_id AND l.url = 'https://shop.example.com/item/' || ((d.id / 20) %% 5)
WHERE d.campaign_id = %(campaign)s AND d.clicked_at IS NOT NULL
"""
LINK_COUNTERS = """
UPDATE campaigns_campaignlink l SET clickers = v.n
FROM (SELECT link_id, count(*) AS n FROM campaigns_linkclick GROUP BY link_id) v WHERE l.id = v.link_id
"""
SUPPRESS = """
INSERT INTO campaigns_suppression (email, reason, source, created_at)
SELECT 'person' || g || '@example.com', 'unsubscribed', 'bench', now()
FROM generate_series(1, %(rows)s, 199) AS g
ON CONFLICT DO NOTHING
"""


def make_campaign(rows):
    campaign = Campaign.objects.create(name="Big campaign", subject="Hi {{ first_name }}", html_body=HTML,
                                       status=Campaign.Status.COMPLETED, started_at=timezone.now(),
                                       completed_at=timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(FILL, {"campaign": campaign.pk, "rows": rows})
        cursor.execute(LINKS, {"campaign": campaign.pk})
        cursor.execute(LINK_CLICKS, {"campaign": campaign.pk})
        cursor.execute(LINK_COUNTERS)
        cursor.execute(SUPPRESS, {"rows": rows})
        for table in ("recipient", "deliverylog", "linkclick", "campaignlink", "suppression"):
            cursor.execute(f"VACUUM ANALYZE campaigns_{table}")  # as autovacuum would, before the timings
    Campaign.objects.filter(pk=campaign.pk).update(total_recipients=rows)
    campaign.refresh_from_db()
    return campaign


def timed(call):
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    setup_test_environment()
    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_superuser("bench", "bench@example.com", "bench")
    client = Client()
    client.force_login(user)

    print(f"Inserting {args.rows:,} recipients, delivery logs and their engagement ...", flush=True)
    seconds, campaign = timed(lambda: make_campaign(args.rows))
    print(f"  done in {seconds:.1f}s", flush=True)

    url = reverse("admin:campaigns_campaign_follow_up", args=[campaign.pk])
    assert client.get(url).status_code == 200  # warm-up
    samples = []
    for _ in range(args.repeat):
        seconds, response = timed(lambda: client.get(url))
        assert response.status_code == 200
        samples.append(seconds)
    page = statistics.median(samples)
    groups = {(a.segment, a.link.pk if a.link else None): (a.recipients, a.suppressed)
              for a in response.context["audiences"] + response.context["link_audiences"]}

    duplicate_seconds, copy = timed(lambda: campaign.duplicate())
    print(f"\nFollow-up page (every group counted), median of {args.repeat}: {page * 1000:.0f} ms")
    print(f"Baseline, Campaign.duplicate() of all {copy.total_recipients:,} recipients: {duplicate_seconds:.2f} s\n")
    print(f"{'follow-up to':40} {'recipients':>10} {'suppressed':>10} {'seconds':>8} {'vs duplicate':>12}")
    link = CampaignLink.objects.filter(campaign=campaign).order_by("url").first()
    for segment, link_id, label in ((follow_ups.Segment.NON_OPENERS, None, "Did not open"),
                                    (follow_ups.Segment.OPENERS, None, "Opened (people)"),
                                    (follow_ups.Segment.NON_CLICKERS, None, "Did not click"),
                                    (follow_ups.Segment.LINK_CLICKERS, link.pk, f"Clicked {link.url}"),
                                    (follow_ups.Segment.FAILED, None, "Failed")):
        seconds, made = timed(lambda: follow_ups.create_follow_up(campaign.pk, segment, link_id=link_id))
        expected = groups[(segment.value, link_id)]
        assert (made.recipients, made.suppressed) == expected, (label, made, expected)
        print(f"{label:40} {made.recipients:10,} {made.suppressed:10,} {seconds:8.2f} "
              f"{seconds / duplicate_seconds:11.2f}x")
    print(f"\nfollow_up_page_ms={page * 1000:.0f} duplicate_s={duplicate_seconds:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
