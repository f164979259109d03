"""Preflight at scale (issue 16, item 6): time and peak memory of one preflight of a campaign of N
recipients (default 1,000,000), against a same-run baseline: reading the same rows through the same
server-side cursor, in the same chunks, without rendering anything.

    python scripts/devstack.py exec .venv/bin/python benchmarks/preflight_bench.py [--rows N] [--segment]

The campaign has four imported columns; one recipient in ten has no `city`, which the HTML uses with no
default (so the missing-value count is known: N / 10), and one in a hundred is suppressed. With
--segment the audience is narrowed to half the rows (`plan` in a list) first. Peak memory is this
process's maximum resident set size (ru_maxrss) before and after the run; the rows and the report
are what the preflight itself holds, so the growth is the figure, not the total.
"""

import argparse
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailer_project.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from campaigns.audience import segments
from campaigns.message import preflight  # noqa: E402
from campaigns.models import Campaign  # noqa: E402

HTML = ('<html><body><p>Hello {{ first_name|default:"there" }} in {{ city }}</p>'
        '<p>Your plan: {{ plan }}; since {{ joined }}.</p>' + '<p>Filler paragraph of news. </p>' * 40 +
        '<p><a href="https://example.com/a">A</a> <a href="https://example.com/b">B</a> '
        '<a href="{{ web_url }}">View online</a> <a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>')


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_campaign(rows):
    campaign = Campaign.objects.create(name="Preflight bench", subject="News for {{ first_name }}", html_body=HTML,
                                       from_email="News <news@example.com>", track_engagement=True)
    with connection.cursor() as cursor:
        cursor.execute("""
            INSERT INTO campaigns_recipient (campaign_id, email, first_name, last_name, data)
            SELECT %s, 'r' || n || '@example.com', 'First' || n, 'Last' || n,
                   jsonb_strip_nulls(jsonb_build_object(
                       'city', CASE WHEN n %% 10 = 0 THEN NULL ELSE 'City' || (n %% 50) END,
                       'plan', (ARRAY['free', 'pro', 'team', 'enterprise'])[1 + n %% 4],
                       'joined', to_char(date '2020-01-01' + (n %% 1500), 'YYYY-MM-DD'),
                       'ref', md5(n::text)))
            FROM generate_series(1, %s) AS n""", [campaign.pk, rows])
        cursor.execute("INSERT INTO campaigns_suppression (email, reason, source, created_at) "
                       "SELECT 'r' || n || '@example.com', 'bounced', 'bench', now() "
                       "FROM generate_series(1, %s, 100) AS n ON CONFLICT DO NOTHING", [rows])
        cursor.execute("VACUUM ANALYZE campaigns_recipient")
        cursor.execute("VACUUM ANALYZE campaigns_suppression")
    Campaign.objects.filter(pk=campaign.pk).update(total_recipients=rows)
    campaign.refresh_from_db()
    campaign.recipient_data_keys()  # the merge-tag cache, filled once per import as the admin would
    return campaign


class CountOnly:
    """The baseline's 'scan': take the rows, render nothing."""

    def __init__(self):
        self.rows = 0

    def add(self, rows):
        self.rows += len(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--segment", action="store_true", help="narrow the audience to half the rows first")
    args = parser.parse_args()
    call_command("migrate", verbosity=0)

    print(f"Inserting {args.rows:,} recipients ...", flush=True)
    start = time.perf_counter()
    campaign = make_campaign(args.rows)
    print(f"  done in {time.perf_counter() - start:.1f}s", flush=True)
    if args.segment:
        segments.save_segment(campaign.pk, {"match": "all", "conditions": [
            {"column": "plan", "operator": "in", "value": ["free", "team"]}]})
        campaign.refresh_from_db()

    at_start = peak_mb()
    baseline = CountOnly()
    start = time.perf_counter()
    preflight.scan_recipients(campaign, baseline)
    baseline_seconds = time.perf_counter() - start

    before = peak_mb()
    chunks = []
    start = time.perf_counter()
    report = preflight.preflight(campaign, chunks.append)
    seconds = time.perf_counter() - start
    after = peak_mb()

    figures = report["figures"]
    missing = {w["tag"]: w["count"] for w in report["warnings"] if w["code"] == "missing_value"}
    print(f"audience={figures['audience']:,} rendered={figures['rendered']:,} suppressed={figures['suppressed']:,} "
          f"missing={missing} largest_html={figures['largest_html_bytes']:,} B errors={len(report['errors'])} "
          f"warnings={len(report['warnings'])} progress_updates={len(chunks)}")
    print(f"baseline (same cursor and chunks, no rendering): {baseline_seconds:.1f}s for {baseline.rows:,} rows; "
          f"peak RSS {at_start:.0f} MB before it, {before:.0f} MB after")
    print(f"preflight: {seconds:.1f}s = {figures['audience'] / seconds:,.0f} recipients/s; "
          f"peak RSS {before:.0f} MB before, {after:.0f} MB after (+{after - before:.0f} MB)")
    print(f"seconds={seconds:.1f} ratio_vs_read={seconds / baseline_seconds:.2f} "
          f"peak_rss_growth_mb={after - before:.0f}")


if __name__ == "__main__":
    main()
