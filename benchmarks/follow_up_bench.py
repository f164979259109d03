"""Follow-ups at scale: counting the groups and creating a follow-up on a 1M-recipient campaign, against
Campaign.duplicate() of the same campaign (one INSERT ... SELECT of every recipient) in the same run.

    python scripts/devstack.py exec .venv/bin/python benchmarks/follow_up_bench.py [--rows N] [--repeat N]

The campaign is made on the server with its engagement (benchmarks/sent_campaign.py). Prints the
follow-up page's time (the counts, through the admin, median of --repeat), each follow-up's time and
recipients, and the ratio of a follow-up's time to the duplicate's.
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

from django.core.management import call_command  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402
from django.urls import reverse  # noqa: E402

from benchmarks.sent_campaign import make_sent_campaign, median_page_seconds, superuser_client, timed  # noqa: E402
from campaigns.audience import follow_ups  # noqa: E402
from campaigns.models import CampaignLink  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    setup_test_environment()
    call_command("migrate", verbosity=0)
    client = superuser_client()

    print(f"Inserting {args.rows:,} recipients, delivery logs and their engagement ...", flush=True)
    seconds, campaign = timed(lambda: make_sent_campaign("Big campaign", args.rows, engagement=True))
    print(f"  done in {seconds:.1f}s", flush=True)

    url = reverse("admin:campaigns_campaign_follow_up", args=[campaign.pk])
    page = median_page_seconds(client, url, args.repeat, warm_up=1)
    response = client.get(url)
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
