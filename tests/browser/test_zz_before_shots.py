"""THROWAWAY: before screenshots (not committed)."""
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from campaigns import services
from campaigns.models import Campaign, CampaignVariant, DeliveryLog
from campaigns.sending import pipeline
from tests.browser.test_campaign_journey import PASSWORD, Journey
from tests.support.factories import CampaignFactory, RecipientFactory, SendingAccountFactory, SuppressionFactory, UserFactory, pool_of
from campaigns.models import Recipient

OUT = Path("/tmp/uxpage")


def shot(page, name):
    page.set_viewport_size({"width": 1280, "height": 800})
    page.screenshot(path=str(OUT / f"{name}.png"), full_page=False)


def test_before(page, live_server):
    UserFactory(username="staff", is_superuser=True, password=PASSWORD)
    pool = pool_of(SendingAccountFactory(name="smtp-eu-1", per_second=20), SendingAccountFactory(name="smtp-eu-2", per_second=20), name="Newsletter pool")
    campaign = CampaignFactory(name="Spring sale", pool=pool, ab_test_percent=20, ab_wait=timedelta(hours=2),
                               segment={"match": "all", "conditions": [{"column": "city", "operator": "equals", "value": "Lisbon"}]})
    Recipient.objects.bulk_create([Recipient(campaign=campaign, email=f"p{i:04d}@example.com", first_name=f"F{i}",
                                             data={"city": "Lisbon" if i % 3 == 0 else "Porto"}) for i in range(300)])
    campaign.total_recipients = 300
    campaign.save()
    for i in range(0, 15, 3):
        SuppressionFactory(email=f"p{i:04d}@example.com")
    CampaignVariant.objects.create(campaign=campaign, letter="A", subject="Spring sale")
    CampaignVariant.objects.create(campaign=campaign, letter="B", subject="Last days of spring")
    j = Journey(page, live_server.url, OUT)
    j.go("/admin/")
    page.fill("#id_username", "staff")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    j.go(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    shot(page, "before-campaign-page")
    page.locator("button.action-send_now").click()
    shot(page, "before-send-now-confirmation")
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.SCHEDULED, scheduled_at=timezone.now())
    pipeline.start_campaign(campaign.pk)
    a, b = campaign.variants.order_by("letter")
    DeliveryLog.objects.filter(variant__isnull=False).update(status="sent", sent_at=timezone.now())
    Campaign.objects.filter(pk=campaign.pk).update(sent_count=DeliveryLog.objects.filter(status="sent").count())
    for v, n in ((a, 2), (b, 4)):
        ids = list(DeliveryLog.objects.filter(variant=v).values_list("pk", flat=True)[:n])
        DeliveryLog.objects.filter(pk__in=ids).update(opened_at=timezone.now())
    Campaign.objects.filter(pk=campaign.pk).update(opened_count=6)
    j.go(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    shot(page, "before-ab-wait")
    services.cancel(campaign.pk)
    j.go(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    shot(page, "before-cancelled")
