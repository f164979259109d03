"""A large campaign that has been sent, made on the server in a few statements, for the benchmarks that
read one (the admin pages, follow-ups): its recipients and delivery logs, and on request its
engagement, and the helpers those benchmarks time it with.

Of the delivery logs ~97 % are sent, 2 % failed and 1 % unknown, sent over two hours, half through
SendGrid and half through SMTP. With engagement, a third of the sent were opened by a person, a tenth
by a machine only, 5 % clicked (one of five links each, with LinkClick rows and link counters as
campaigns.engagement.opens_and_clicks writes them) and 1 % bounced; 0.5 % of all addresses are
suppressed. The tables are VACUUM ANALYZEd afterwards, as autovacuum would soon do, so that it does
not run during the timings.
"""

import statistics
import time

from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.utils import timezone

from campaigns.models import Campaign

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
SELECT %(campaign)s, r.id, r.email, s.status, (r.id - %(first_id)s) / 200,
       CASE WHEN r.id %% 2 = 0 THEN 'sendgrid' ELSE 'smtp' END, '', 1,
       CASE WHEN s.status = 'failed' THEN '550 mailbox unavailable' ELSE '' END,
       s.sent_at, now(),
       CASE WHEN %(engagement)s AND s.sent_at IS NOT NULL AND r.id %% 3 = 0 THEN s.sent_at + interval '4 hours' END,
       CASE WHEN %(engagement)s AND s.sent_at IS NOT NULL AND r.id %% 10 = 1 THEN s.sent_at + interval '1 minute' END,
       CASE WHEN %(engagement)s AND s.sent_at IS NOT NULL AND r.id %% 20 = 3 THEN s.sent_at + interval '5 hours' END,
       CASE WHEN %(engagement)s AND s.sent_at IS NOT NULL AND r.id %% 100 = 50 THEN s.sent_at + interval '2 minutes' END
FROM r, LATERAL (
    SELECT status, CASE WHEN status = 'sent'
                        THEN now() - interval '2 hours' + (r.id - %(first_id)s) * interval '7 milliseconds' END AS sent_at
    FROM (SELECT CASE WHEN r.id %% 100 < 2 THEN 'failed' WHEN r.id %% 100 = 2 THEN 'unknown' ELSE 'sent' END
          AS status) AS drawn
) AS s
"""

LINKS = """
INSERT INTO campaigns_campaignlink (campaign_id, url, clickers)
SELECT %(campaign)s, 'https://shop.example.com/item/' || g, 0 FROM generate_series(0, 4) AS g
"""
LINK_CLICKS = """
INSERT INTO campaigns_linkclick (link_id, delivery_id, clicked_at)
SELECT l.id, d.id, d.clicked_at
FROM campaigns_deliverylog d
JOIN campaigns_campaignlink l
  ON l.campaign_id = d.campaign_id AND l.url = 'https://shop.example.com/item/' || ((d.id / 20) %% 5)
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
COUNTS = """
SELECT count(*) FILTER (WHERE status = 'sent'), count(*) FILTER (WHERE status = 'failed'),
       count(*) FILTER (WHERE status = 'unknown'), min(sent_at), max(sent_at)
FROM campaigns_deliverylog WHERE campaign_id = %s
"""


def make_sent_campaign(name, rows, engagement=False):
    """A completed campaign of ROWS recipients and delivery logs (with opens, clicks, bounces and
    suppressions when ENGAGEMENT), its counters set as sending would have set them."""
    campaign = Campaign.objects.create(name=name, subject="Hi {{ first_name }}", html_body=HTML,
                                       status=Campaign.Status.COMPLETED)
    tables = ["recipient", "deliverylog"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT COALESCE(max(id), 0) + 1 FROM campaigns_recipient")
        first_id = cursor.fetchone()[0]
        cursor.execute(FILL, {"campaign": campaign.pk, "rows": rows, "first_id": first_id, "engagement": engagement})
        if engagement:
            cursor.execute(LINKS, {"campaign": campaign.pk})
            cursor.execute(LINK_CLICKS, {"campaign": campaign.pk})
            cursor.execute(LINK_COUNTERS)
            cursor.execute(SUPPRESS, {"rows": rows})
            tables += ["linkclick", "campaignlink", "suppression"]
        cursor.execute(COUNTS, [campaign.pk])
        sent, failed, unknown, first, last = cursor.fetchone()
        for table in tables:
            cursor.execute(f"VACUUM ANALYZE campaigns_{table}")
    Campaign.objects.filter(pk=campaign.pk).update(
        total_recipients=rows, sent_count=sent, failed_count=failed, unknown_count=unknown,
        started_at=first or timezone.now(), completed_at=last or timezone.now())
    campaign.refresh_from_db()
    return campaign


def superuser_client():
    """A test Client logged in as a superuser, so a page's time is the server's alone."""
    users = get_user_model().objects
    user = users.filter(username="bench").first() or users.create_superuser("bench", "bench@example.com", "bench")
    client = Client()
    client.force_login(user)
    return client


def timed(call):
    """(seconds, result) of CALL()."""
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def median_page_seconds(client, url, repeat, warm_up=2):
    """The median time of REPEAT loads of URL (after WARM_UP loads), each answering 200."""
    for _ in range(warm_up):
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
    samples = []
    for _ in range(repeat):
        seconds, response = timed(lambda: client.get(url))
        assert response.status_code == 200, (url, response.status_code)
        samples.append(seconds)
    return statistics.median(samples)
