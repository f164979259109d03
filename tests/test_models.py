"""campaigns/models.py: what the models compute themselves."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns.models import Campaign
from tests.support.factories import CampaignFactory, RecipientFactory


@pytest.mark.django_db
def test_a_started_campaigns_merge_tags_are_not_read_again_while_its_start_moves_the_recipient_count():
    """Issue 26: the chunked start counts total_recipients from 0 up; each count used to void the cached
    column names, so every campaign page load during a 10M start read every recipient (15 s a page)."""
    campaign = CampaignFactory()
    for city in ("Lisbon", "Porto"):
        RecipientFactory(campaign=campaign, data={"city": city})
    Campaign.objects.filter(pk=campaign.pk).update(total_recipients=2)
    campaign.refresh_from_db()
    assert campaign.recipient_data_keys() == ["city"]

    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.IN_PROGRESS, started_at=timezone.now(),
                                                   total_recipients=1)  # a start part way through its chunks
    campaign.refresh_from_db()
    with CaptureQueriesContext(connection) as queries:
        assert campaign.recipient_data_keys() == ["city"]
    assert not [q for q in queries.captured_queries if "jsonb_object_keys" in q["sql"]]

    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.DRAFT, started_at=None, total_recipients=3)
    RecipientFactory(campaign=campaign, data={"city": "Faro", "plan": "gold"})  # a draft's import: read again
    campaign.refresh_from_db()
    assert campaign.recipient_data_keys() == ["city", "plan"]
