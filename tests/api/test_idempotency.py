"""Issue 23, item 2: Idempotency-Key on every POST. A repeat within 24 hours answers the first answer and
does nothing again; a duplicate while the first is still running acts not at all."""

from datetime import timedelta

from django.utils import timezone

from campaigns.models import Campaign, IdempotencyKey
from tests.admin.conftest import add_recipients
from tests.api.conftest import client_for
from tests.support.factories import CampaignFactory

BODY = {"name": "Spring", "subject": "Hello", "html_body": '<a href="{{ unsubscribe_url }}">Unsubscribe</a>'}


def test_a_repeated_create_answers_the_first_answer_and_creates_nothing_more(api_client):
    first = api_client.post("/api/v1/campaigns/", BODY, HTTP_IDEMPOTENCY_KEY="create-spring-1")
    again = api_client.post("/api/v1/campaigns/", BODY, HTTP_IDEMPOTENCY_KEY="create-spring-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Campaign.objects.filter(name="Spring").count() == 1
    other = api_client.post("/api/v1/campaigns/", BODY, HTTP_IDEMPOTENCY_KEY="create-spring-2")
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
    assert Campaign.objects.filter(name="Spring").count() == 2


def test_without_a_key_every_post_acts(api_client):
    api_client.post("/api/v1/campaigns/", BODY)
    api_client.post("/api/v1/campaigns/", BODY)
    assert Campaign.objects.filter(name="Spring").count() == 2


def test_a_repeated_action_is_not_run_twice_and_its_refusal_is_replayed_too(api_client):
    campaign = CampaignFactory(status="in_progress")
    first = api_client.post(f"/api/v1/campaigns/{campaign.pk}/pause/", HTTP_IDEMPOTENCY_KEY="pause-1")
    assert first.status_code == 200 and first.json()["campaign"]["status"] == "paused"
    Campaign.objects.filter(pk=campaign.pk).update(status="in_progress")  # resumed elsewhere meanwhile
    again = api_client.post(f"/api/v1/campaigns/{campaign.pk}/pause/", HTTP_IDEMPOTENCY_KEY="pause-1")
    assert again.json() == first.json()
    assert Campaign.objects.get(pk=campaign.pk).status == "in_progress"  # not paused a second time

    refused = api_client.post(f"/api/v1/campaigns/{campaign.pk}/resume/", HTTP_IDEMPOTENCY_KEY="resume-1")
    assert refused.status_code == 409
    assert api_client.post(f"/api/v1/campaigns/{campaign.pk}/resume/",
                           HTTP_IDEMPOTENCY_KEY="resume-1").json() == refused.json()


def test_a_duplicate_while_the_first_is_running_does_nothing(api_client):
    # The first request has inserted its key and not answered yet (a concurrent duplicate meets its row).
    IdempotencyKey.objects.create(user=api_client.user, key="k", method="POST", path="/api/v1/campaigns/")
    response = api_client.post("/api/v1/campaigns/", BODY, HTTP_IDEMPOTENCY_KEY="k")
    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_key_in_use"
    assert not Campaign.objects.filter(name="Spring").exists()


def test_a_key_older_than_24_hours_is_a_new_request(api_client):
    api_client.post("/api/v1/campaigns/", BODY, HTTP_IDEMPOTENCY_KEY="old")
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=25))
    assert api_client.post("/api/v1/campaigns/", BODY, HTTP_IDEMPOTENCY_KEY="old").status_code == 201
    assert Campaign.objects.filter(name="Spring").count() == 2


def test_keys_are_per_user_and_per_path(db):
    editor, sender = client_for("Campaign editor"), client_for("Campaign sender")
    assert editor.post("/api/v1/campaigns/", BODY, HTTP_IDEMPOTENCY_KEY="same").status_code == 201
    assert sender.post("/api/v1/campaigns/", BODY, HTTP_IDEMPOTENCY_KEY="same").status_code == 201
    assert Campaign.objects.filter(name="Spring").count() == 2
    draft = CampaignFactory()
    add_recipients(draft, 1)
    response = sender.post(f"/api/v1/campaigns/{draft.pk}/cancel/", HTTP_IDEMPOTENCY_KEY="same")
    assert response.status_code == 200 and Campaign.objects.get(pk=draft.pk).status == "cancelled"


def test_a_refused_request_keeps_no_key(db):
    viewer = client_for("Viewer")
    assert viewer.post("/api/v1/campaigns/", BODY, HTTP_IDEMPOTENCY_KEY="v").status_code == 403
    assert not IdempotencyKey.objects.exists()  # checked before the key: a refusal stores nothing


def test_expired_keys_are_forgotten_by_the_hourly_clean_up(api_client):
    from campaigns.tasks.scheduler import forget_idempotency_keys

    api_client.post("/api/v1/campaigns/", BODY, HTTP_IDEMPOTENCY_KEY="old")
    api_client.post("/api/v1/campaigns/", BODY, HTTP_IDEMPOTENCY_KEY="new")
    IdempotencyKey.objects.filter(key="old").update(created_at=timezone.now() - timedelta(hours=25))
    assert forget_idempotency_keys() == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["new"]
