"""The audience builder's JSON endpoint and panel on the campaign page (campaigns/admin/segments.py)."""

import json

import pytest
from django.urls import reverse

from campaigns.models import Campaign
from tests.admin.conftest import add_recipients


def url(campaign):
    return reverse("admin:campaigns_campaign_segment_json", args=[campaign.pk])


def post(client, campaign, body):
    return client.post(url(campaign), data=json.dumps(body), content_type="application/json")


LISBON = {"match": "all", "conditions": [{"column": "city", "operator": "equals", "value": "City1"}]}


@pytest.fixture
def audience(campaign):
    add_recipients(campaign, 4)  # City0 … City3
    return campaign


def test_get_gives_columns_operators_and_the_count(staff_client, audience):
    data = staff_client.get(url(audience)).json()
    assert data["columns"] == ["email", "first_name", "last_name", "city"]
    assert {op["name"] for op in data["operators"]} == {"equals", "contains", "in", "before", "after", "empty",
                                                         "not_empty"}
    assert (data["matching"], data["total"], data["editable"]) == (4, 4, True)


def test_post_counts_without_saving(staff_client, audience):
    data = post(staff_client, audience, {"segment": LISBON}).json()
    assert (data["matching"], data["total"]) == (1, 4)
    audience.refresh_from_db()
    assert audience.segment is None


def test_post_with_save_stores_the_segment(staff_client, audience):
    data = post(staff_client, audience, {"segment": LISBON, "save": True}).json()
    assert data["message"].startswith("Segment saved: 1 of 4 recipients match")
    audience.refresh_from_db()
    assert audience.segment == LISBON


@pytest.mark.parametrize("segment, message", [
    ({"match": "all", "conditions": [{"column": "city) OR (1=1", "operator": "equals", "value": "x"}]},
     "unknown column"),
    ({"match": "all", "conditions": [{"column": "city", "operator": "raw_sql", "value": "1=1"}]},
     "unknown operator 'raw_sql'"),
])
def test_bad_filters_get_a_clear_400(staff_client, audience, segment, message):
    response = post(staff_client, audience, {"segment": segment, "save": True})
    assert response.status_code == 400
    assert message in response.json()["error"]
    audience.refresh_from_db()
    assert audience.segment is None


def test_a_body_that_is_not_json_is_refused(staff_client, audience):
    response = staff_client.post(url(audience), data="city = 'x'", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"] == "The request body is not JSON."


def test_a_viewer_may_count_but_not_save(viewer_client, audience):
    assert post(viewer_client, audience, {"segment": LISBON}).json()["matching"] == 1
    response = post(viewer_client, audience, {"segment": LISBON, "save": True})
    assert response.status_code == 403
    audience.refresh_from_db()
    assert audience.segment is None


def test_a_started_campaign_keeps_its_segment(staff_client, audience):
    Campaign.objects.filter(pk=audience.pk).update(status="in_progress")
    response = post(staff_client, audience, {"segment": LISBON, "save": True})
    assert response.status_code == 400
    assert "only a draft or scheduled campaign's can change" in response.json()["error"]


def test_the_campaign_page_shows_the_builder_with_escaped_columns(staff_client, campaign):
    add_recipients(campaign, 2, data={"<script>alert(1)</script>": "x"})
    page = staff_client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()
    assert 'id="segment-builder"' in page
    assert "2</strong> of" in page
    assert "<script>alert(1)</script>" not in page


@pytest.fixture
def count_limit(settings):
    settings.SEGMENT_COUNTS_PER_USER_PER_MINUTE = 3
    from django.core.cache import cache
    cache.delete_pattern("*allowance:segment-counts:*")


def test_audience_counts_are_rate_limited_per_user_a_viewers_too(viewer_client, client, audience, count_limit):
    from tests.support.factories import UserFactory

    answers = [post(viewer_client, audience, {"segment": LISBON}).status_code for _ in range(3)]
    answers.append(viewer_client.get(url(audience)).status_code)
    refused = post(viewer_client, audience, {"segment": LISBON})
    assert answers == [200, 200, 200, 429] and refused.status_code == 429
    assert "at most 3 a minute" in refused.json()["error"] and refused["Retry-After"] == "60"
    client.force_login(UserFactory(is_superuser=True))  # the allowance is each user's own
    assert post(client, audience, {"segment": LISBON}).status_code == 200
