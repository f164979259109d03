"""Staff only; a user with view permission sees campaigns but cannot send or change them."""

import pytest
from django.urls import reverse

from campaigns.models import Campaign
from tests.factories import CampaignFactory, UserFactory


@pytest.mark.django_db
def test_viewer_sees_the_dashboard_but_no_buttons(viewer_client):
    campaign = CampaignFactory(status="in_progress", sent_count=3, total_recipients=5)
    page = viewer_client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))
    html = page.content.decode()
    assert page.status_code == 200 and 'id="campaign-dashboard"' in html
    assert "action-pause" not in html and 'id="test-email-form"' not in html and "change permission" in html
    assert viewer_client.get(reverse("admin:campaigns_campaign_dashboard_json", args=[campaign.pk])).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["pause", "cancel", "duplicate", "send_test_email", "schedule"])
def test_viewer_cannot_act(viewer_client, name):
    campaign = CampaignFactory(status="in_progress")
    response = viewer_client.post(reverse("admin:campaigns_campaign_action", args=[campaign.pk, name]),
                                  {"confirm": "yes", "addresses": "a@example.com", "when": "2099-01-01T10:00"})
    assert response.status_code == 403
    assert Campaign.objects.get().status == "in_progress"


@pytest.mark.django_db
def test_viewer_has_no_bulk_actions(viewer_client):
    CampaignFactory(status="in_progress")
    response = viewer_client.get(reverse("admin:campaigns_campaign_changelist"))
    assert "bulk_pause" not in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("url_name", ["admin:campaigns_campaign_dashboard_json", "admin:campaigns_campaign_preview",
                                      "admin:campaigns_campaign_export"])
def test_non_staff_are_sent_to_login(client, url_name):
    campaign = CampaignFactory()
    client.force_login(UserFactory(is_staff=False))
    response = client.get(reverse(url_name, args=[campaign.pk]))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
