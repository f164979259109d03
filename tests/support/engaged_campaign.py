"""A sent campaign with known opens, clicks and outcomes, made through the real engagement functions.

Ten recipients, each with one delivery log (sent an hour ago unless noted):

    r0  opened (person), clicked link A         r5  sent, nothing; suppressed
    r1  opened (person)                         r6  opened (person); suppressed
    r2  opened by a machine only (Apple MPP)    r7  failed
    r3  clicked link B, no open seen            r8  unknown
    r4  sent, nothing                           r9  sent, bounced

Tests state their expected groups by these names, computed by hand from this table.
"""

import datetime as dt
import time

from django.utils import timezone

from campaigns.engagement import opens_and_clicks
from campaigns.models import Campaign, DeliveryLog, Recipient
from tests.support.factories import CampaignFactory, SuppressionFactory

LINK_A = "https://shop.acme.test/sale?x=1&y=<2>"
LINK_B = "https://acme.test/blog"
APPLE_MPP = "Mozilla/5.0"
IPHONE_MAIL = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
               "Mobile/15E148")
STATUSES = ["sent"] * 7 + ["failed", "unknown", "sent"]


def make_engaged_campaign(domain="example.com", **fields):
    sent_at = timezone.now() - dt.timedelta(hours=1)
    campaign = CampaignFactory(status="completed", started_at=sent_at, completed_at=sent_at, **fields)
    recipients = Recipient.objects.bulk_create(
        Recipient(campaign=campaign, email=f"r{i}@{domain}", first_name=f"First{i}", last_name=f"Last{i}",
                  data={"city": f"City{i}", "plan": "<b>gold</b>" if i % 2 else "basic"}) for i in range(10))
    logs = DeliveryLog.objects.bulk_create(
        DeliveryLog(campaign=campaign, recipient=r, email=r.email, status=status, provider="smtp",
                    sent_at=sent_at if status == "sent" else None) for r, status in zip(recipients, STATUSES))
    Campaign.objects.filter(pk=campaign.pk).update(total_recipients=10, sent_count=8, failed_count=1,
                                                   unknown_count=1)
    ids = {f"r{i}": log.pk for i, log in enumerate(logs)}
    now = time.time()
    for name in ("r0", "r1", "r6"):
        opens_and_clicks.record_open(ids[name], IPHONE_MAIL, at=now)
    opens_and_clicks.record_open(ids["r2"], APPLE_MPP, at=now)
    opens_and_clicks.record_click(ids["r0"], LINK_A, at=now)
    opens_and_clicks.record_click(ids["r3"], LINK_B, at=now)
    DeliveryLog.objects.filter(pk=ids["r9"]).update(bounced_at=timezone.now())
    Campaign.objects.filter(pk=campaign.pk).update(bounced_count=1)
    for name in ("r5", "r6"):
        SuppressionFactory(email=f"{name}@{domain}")
    campaign.refresh_from_db()
    return campaign, ids


def emails(*names, domain="example.com"):
    return sorted(f"{name}@{domain}" for name in names)
