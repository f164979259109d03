"""An A/B test's start against an ordinary start of the same campaign, in the same run: the one statement
that creates every delivery log and batch (campaigns.sending.pipeline.create_delivery_logs), with and
without the random split (20 % to three variants, the rest held).

    python scripts/devstack.py exec .venv/bin/python benchmarks/ab_start_bench.py [--rows N] [--repeat N]

Each start runs in a transaction that is rolled back, so every run starts the same campaign afresh.
Prints the median time of each and the ratio of the A/B start to the ordinary one.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailer_project.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from campaigns.experiments.ab_tests import AbSplit  # noqa: E402
from campaigns.models import Campaign, CampaignVariant  # noqa: E402
from campaigns.sending.pipeline import create_delivery_logs  # noqa: E402

HTML = '<p>Hello {{ first_name|default:"there" }}</p><a href="{{ unsubscribe_url }}">Unsubscribe</a>'
FILL = """
INSERT INTO campaigns_recipient (campaign_id, email, first_name, last_name, data)
SELECT %(campaign)s, 'person' || g || '@example.com', 'First' || g, '', '{}'::jsonb
FROM generate_series(1, %(rows)s) AS g
"""


class Rollback(Exception):
    pass


def timed_start(campaign_id, split):
    started = time.perf_counter()
    try:
        with transaction.atomic():
            created, _skipped, batches, _queued = create_delivery_logs(campaign_id, 200, ab=split)
            elapsed = time.perf_counter() - started
            raise Rollback
    except Rollback:
        pass
    return elapsed, created, batches


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    campaign = Campaign.objects.create(name="A/B bench", subject="Hi", html_body=HTML, ab_test_percent=20)
    variants = [CampaignVariant.objects.create(campaign=campaign, letter=c, subject=f"Subject {c}").pk for c in "ABC"]
    with connection.cursor() as cursor:
        cursor.execute(FILL, {"campaign": campaign.pk, "rows": args.rows})
        cursor.execute("ANALYZE campaigns_recipient")
    split = AbSplit(percent=20, variant_ids=variants, seed=f"{campaign.pk}")
    plain, ab = [], []
    for _ in range(args.repeat):
        seconds, created, batches = timed_start(campaign.pk, None)
        plain.append(seconds)
        seconds, ab_created, ab_batches = timed_start(campaign.pk, split)
        ab.append(seconds)
    plain_s, ab_s = statistics.median(plain), statistics.median(ab)
    print(f"{args.rows} recipients: ordinary start {plain_s:.2f} s ({created} rows, {batches} batches); "
          f"A/B start (20 % to 3 variants) {ab_s:.2f} s ({ab_created} rows, {ab_batches} batches); "
          f"ratio {ab_s / plain_s:.2f}")


if __name__ == "__main__":
    main()
