"""Issue 22, items 3 and 10: what a scheduled campaign sends, and to whom, is what a Sender scheduled; and a
save of the campaign form writes only what the form changed, under the row lock."""

import datetime as dt
import json
import logging
from unittest import mock

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from campaigns.admin.campaigns import CampaignAdmin
from campaigns.models import Campaign
from tests.admin.conftest import add_recipients
from tests.audience.importing.conftest import csv_upload, media_root  # noqa: F401  (autouse: uploads to tmp)
from tests.support.factories import HTML_BODY, CampaignFactory, pool_of, SendingAccountFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def scheduled():
    campaign = CampaignFactory(status="scheduled", scheduled_at=timezone.now() + dt.timedelta(days=2))
    add_recipients(campaign, 3)
    return campaign


def change_url(campaign):
    return reverse("admin:campaigns_campaign_change", args=[campaign.pk])


def form_of(campaign, **changes):
    data = {"name": campaign.name, "subject": campaign.subject, "from_email": campaign.from_email,
            "reply_to": campaign.reply_to, "html_body": campaign.html_body, "text_body": campaign.text_body,
            "batch_size": campaign.batch_size, "track_engagement": "on" if campaign.track_engagement else "",
            "pool": campaign.pool_id or "", "ab_test_percent": campaign.ab_test_percent,
            "ab_metric": campaign.ab_metric, "ab_wait": "04:00:00"}
    data.update(changes)
    return {k: v for k, v in data.items() if v != ""}


def messages_of(response):
    return [m.message for m in get_messages(response.wsgi_request)]


def variants_data(*variants, initial=0):
    data = {"variants-TOTAL_FORMS": len(variants), "variants-INITIAL_FORMS": initial, "variants-MIN_NUM_FORMS": 0,
            "variants-MAX_NUM_FORMS": 4}
    for i, (letter, subject) in enumerate(variants):
        data.update({f"variants-{i}-letter": letter, f"variants-{i}-subject": subject, f"variants-{i}-from_name": "",
                     f"variants-{i}-html_body": "", f"variants-{i}-text_body": ""})
    return data


def change_content(staff, campaign):
    return staff.post(change_url(campaign), form_of(campaign, html_body=HTML_BODY + "<p>New offer!</p>"))


def change_from(staff, campaign):
    return staff.post(change_url(campaign), form_of(campaign, from_email="Other <other@example.com>"))


def change_pool(staff, campaign):
    pool = pool_of(SendingAccountFactory())
    return staff.post(change_url(campaign), form_of(campaign, pool=pool.pk))


def change_variants(staff, campaign):
    return staff.post(change_url(campaign), {**form_of(campaign, ab_test_percent=20),
                                             **variants_data(("A", "Hello"), ("B", "Hi there"))})


def change_segment(staff, campaign):
    segment = {"match": "all", "conditions": [{"column": "city", "operator": "equals", "value": "City1"}]}
    return staff.post(reverse("admin:campaigns_campaign_segment_json", args=[campaign.pk]),
                      data=json.dumps({"segment": segment, "save": True}), content_type="application/json")


def import_recipients(staff, campaign):
    return staff.post(reverse("admin:campaigns_campaign_import", args=[campaign.pk]),
                      {"file": csv_upload("email\nnew@example.com\n")})


def delete_a_recipient(staff, campaign):
    recipient = campaign.recipients.first()
    return staff.post(reverse("admin:campaigns_recipient_delete", args=[recipient.pk]), {"post": "yes"})


CHANGES = {"content": change_content, "From": change_from, "pool": change_pool, "A/B variants": change_variants,
           "segment": change_segment, "an import": import_recipients, "recipients": delete_a_recipient}


@pytest.mark.parametrize("change", CHANGES)
@pytest.mark.parametrize("group", ["Campaign editor", "Campaign sender"])
def test_a_change_to_what_is_sent_or_to_whom_takes_a_scheduled_campaign_back_to_draft(
        member, scheduled, group, change, caplog, django_capture_on_commit_callbacks):
    staff = member(group)
    with caplog.at_level(logging.WARNING, logger="campaigns.services"), django_capture_on_commit_callbacks():
        response = CHANGES[change](staff, scheduled)
    assert response.status_code in (200, 302), response.content[:2000]
    scheduled.refresh_from_db()
    assert (scheduled.status, scheduled.scheduled_at) == ("draft", None)
    said = messages_of(response) if response["Content-Type"].startswith("text/html") or response.status_code == 302 \
        else []
    said += [response.json()["message"]] if response["Content-Type"] == "application/json" else []
    assert any("so it is a draft again" in text and "schedule it again" in text for text in said), said
    [line] = [r.getMessage() for r in caplog.records if "unscheduled" in r.getMessage()]
    assert f"Campaign {scheduled.pk} unscheduled" in line and f"by user {staff.user.pk}" in line


def test_a_change_that_sends_nothing_different_keeps_the_schedule(member, scheduled):
    staff = member("Campaign editor")
    response = staff.post(change_url(scheduled), form_of(scheduled, name="Renamed internally", batch_size=100))
    assert response.status_code == 302
    scheduled.refresh_from_db()
    assert (scheduled.name, scheduled.status) == ("Renamed internally", "scheduled")


def test_after_an_editors_change_a_sender_schedules_again(member, scheduled, client):
    editor = member("Campaign editor")
    change_content(editor, scheduled)
    scheduled.refresh_from_db()
    assert scheduled.status == "draft"
    when = (timezone.localtime() + dt.timedelta(days=3)).strftime("%Y-%m-%dT%H:%M")
    action = reverse("admin:campaigns_campaign_action", args=[scheduled.pk, "schedule"])
    assert editor.post(action, {"when": when}).status_code == 403
    sender = member("Campaign sender")
    assert sender.post(action, {"when": when}).status_code == 302
    scheduled.refresh_from_db()
    assert scheduled.status == "scheduled"


# --- item 10: a save writes only what the form changed, under the row lock -----------------------------------

def while_the_form_is_saved(**row):
    """Patch the admin so that right after it read the campaign, a worker or another user changes ROW."""
    read = CampaignAdmin.get_object

    def read_then_change(self, request, object_id, from_field=None):
        campaign = read(self, request, object_id, from_field)
        if request.method == "POST":
            Campaign.objects.filter(pk=campaign.pk).update(**row)
        return campaign

    return mock.patch.object(CampaignAdmin, "get_object", read_then_change)


def test_a_save_during_sending_keeps_the_counters_workers_wrote(staff_client):
    campaign = CampaignFactory(status="in_progress", total_recipients=10, sent_count=5)
    with while_the_form_is_saved(sent_count=7, failed_count=1):
        response = staff_client.post(change_url(campaign), {"public_archive": "on"})
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert (campaign.public_archive, campaign.sent_count, campaign.failed_count) == (True, 7, 1)


def test_a_save_of_a_draft_cancelled_meanwhile_keeps_the_cancel_and_not_the_content(staff_client):
    campaign = CampaignFactory(status="draft")
    with while_the_form_is_saved(status="cancelled"):
        response = staff_client.post(change_url(campaign), form_of(campaign, subject="Changed"))
    campaign.refresh_from_db()
    assert (campaign.status, campaign.subject) == ("cancelled", CampaignFactory.subject)
    assert response.status_code == 302
    assert ("Content not saved: the campaign is cancelled now, and only a draft or scheduled campaign's content "
            "can change.") in messages_of(response)
