"""Issue 23, item 1: every answer is JSON in one shape ({code, message, errors}); illegal state changes are
409 with the reason, bad input 400, never a 500; over the rate limit, 429 with Retry-After."""

import pytest

from campaigns.models import Campaign
from tests.support.factories import CampaignFactory


def test_an_illegal_transition_is_409_with_the_reason(api_client):
    campaign = CampaignFactory(status="completed")
    response = api_client.post(f"/api/v1/campaigns/{campaign.pk}/pause/")
    assert response.status_code == 409
    assert response.json() == {"code": "illegal_transition", "errors": {},
                               "message": f"Cannot pause campaign #{campaign.pk}: it is completed; only a campaign "
                                          "that is in progress can be paused."}


def test_bad_input_is_400_with_field_errors_and_nothing_is_written(api_client):
    response = api_client.post("/api/v1/campaigns/", {"name": "", "subject": "Hi {{ nope }}",
                                                      "html_body": "<p>no unsubscribe link</p>"})
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert set(body["errors"]) >= {"name"}
    assert not Campaign.objects.exists()
    # {{ Nope }}: no column becomes a tag with capitals (a draft may use {{ nope }}, which an import may bring).
    response = api_client.post("/api/v1/campaigns/", {"name": "N", "subject": "Hi {{ Nope }}",
                                                      "html_body": "<p>no unsubscribe link</p>"})
    assert response.status_code == 400
    assert "Nope" in response.json()["errors"]["subject"][0]
    assert "unsubscribe_url" in response.json()["errors"]["html_body"][0]


@pytest.mark.parametrize("body,content_type", [("{not json", "application/json"), ("a=b", "text/plain")])
def test_an_unreadable_body_is_400_or_415_in_the_same_shape(api_client, body, content_type):
    response = api_client.post("/api/v1/campaigns/", body, content_type=content_type)
    assert response.status_code in (400, 415)
    assert set(response.json()) == {"code", "message", "errors"}


def test_changing_a_campaign_that_has_started_is_409(api_client):
    campaign = CampaignFactory(status="in_progress")
    response = api_client.patch(f"/api/v1/campaigns/{campaign.pk}/", {"name": "Other"})
    assert response.status_code == 409
    assert Campaign.objects.get(pk=campaign.pk).name == campaign.name


def test_only_drafts_are_deleted(api_client):
    sent, draft = CampaignFactory(status="completed", started_at="2026-01-01T00:00:00Z"), CampaignFactory()
    assert api_client.delete(f"/api/v1/campaigns/{sent.pk}/").status_code == 409
    assert api_client.delete(f"/api/v1/campaigns/{draft.pk}/").status_code == 204
    assert list(Campaign.objects.values_list("pk", flat=True)) == [sent.pk]


def test_unknown_addresses_and_objects_are_json_404s(api_client):
    # (a newline in the path, found by Schemathesis' fuzzing, once slipped past the catch-all to Django's HTML 404)
    for url in ("/api/v1/nothing/", "/api/v1/campaigns/999999/", "/api/v1/campaigns/999999/stats/",
                "/api/v1/campaigns/a%0Ab/variants/1/", "/api/%0A"):
        response = api_client.get(url)
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"


def test_bad_filters_are_400(api_client):
    assert api_client.get("/api/v1/campaigns/?status=bogus").status_code == 400
    campaign = CampaignFactory()
    assert api_client.get(f"/api/v1/campaigns/{campaign.pk}/delivery-logs/?status=bogus").status_code == 400


def test_over_the_rate_limit_is_429_with_retry_after(api_client, settings, clean_broker):
    settings.API_RATE_LIMIT = "3/min"
    answers = [api_client.get("/api/v1/campaigns/") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert int(answers[-1]["Retry-After"]) > 0
    assert answers[-1].json()["code"] == "throttled"
