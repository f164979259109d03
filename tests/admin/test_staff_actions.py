"""Staff actions as buttons and bulk actions: POST only (a GET asks again or goes back to the campaign), CSRF,
confirmation, messages with counts, clear errors."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign, DeliveryLog
from tests.admin.conftest import add_logs, add_recipients
from tests.support.factories import CampaignFactory, SendingAccountFactory, UserFactory, pool_of

LIST = reverse("admin:campaigns_campaign_changelist")


def action_url(campaign, name):
    return reverse("admin:campaigns_campaign_action", args=[campaign.pk, name])


def change_url(campaign_id):
    return reverse("admin:campaigns_campaign_change", args=[campaign_id])


def status_of(campaign):
    campaign.refresh_from_db()
    return campaign.status


def messages_of(response):
    return [(m.level_tag, m.message) for m in get_messages(response.wsgi_request)]


@pytest.mark.django_db
def test_buttons_match_the_campaign_state(staff_client):
    draft = CampaignFactory(status="draft")
    page = staff_client.get(reverse("admin:campaigns_campaign_change", args=[draft.pk])).content.decode()
    assert "action-send_now" in page and "action-duplicate" in page
    # No Cancel next to Send now on a draft: nothing is under way to cancel.
    assert "action-pause" not in page and "action-resume" not in page and "action-cancel" not in page
    # One schedule control: the actions panel's, not a second one in the form.
    assert 'id="schedule-form"' in page and 'name="schedule_for_0"' not in page and 'id="test-email-form"' in page
    assert 'method="post"' in page and "csrfmiddlewaretoken" in page
    scheduled = CampaignFactory(status="scheduled")
    page = staff_client.get(reverse("admin:campaigns_campaign_change", args=[scheduled.pk])).content.decode()
    assert "action-cancel" in page and "action-unschedule" in page
    live = CampaignFactory(status="in_progress", failed_count=2)
    page = staff_client.get(reverse("admin:campaigns_campaign_change", args=[live.pk])).content.decode()
    assert "action-pause" in page and "action-retry_failed" in page and "action-send_now" not in page


@pytest.mark.django_db
def test_pause_button(staff_client):
    campaign = CampaignFactory(status="in_progress")
    response = staff_client.post(action_url(campaign, "pause"))
    assert response.status_code == 302
    assert status_of(campaign) == "paused"
    assert messages_of(response) == [("success", "Pause: Paused: batches already sending finish, no new batch starts.")]


@pytest.mark.django_db
def test_get_on_an_action_does_nothing_and_says_so_on_the_campaign_page(staff_client):
    campaign = CampaignFactory(status="in_progress")
    response = staff_client.get(action_url(campaign, "pause"))
    assert response.status_code == 302 and response["Location"] == change_url(campaign.pk)
    assert messages_of(response) == [("warning", "Nothing was done: “Pause” is done with its button on this page.")]
    assert status_of(campaign) == "in_progress"
    assert staff_client.get(action_url(campaign, "no-such-action")).status_code == 404


@pytest.mark.django_db
def test_reloading_the_send_now_confirmation_shows_it_again(staff_client):
    """Issue 25, item 12: a reload (GET) of the confirmation page is the confirmation again, not an empty 405."""
    campaign = CampaignFactory(status="draft", name="Spring sale")
    add_recipients(campaign, 2)
    response = staff_client.get(action_url(campaign, "send_now"))
    page = response.content.decode()
    assert response.status_code == 200 and 'id="confirm-button"' in page and "Spring sale" in page
    assert 'id="site-name"' in page  # the admin's page, with its header
    assert status_of(campaign) == "draft"
    # Once sending started, the question no longer applies: back to the campaign page, saying why.
    Campaign.objects.filter(pk=campaign.pk).update(status="in_progress")
    response = staff_client.get(action_url(campaign, "send_now"))
    assert response.status_code == 302 and response["Location"] == change_url(campaign.pk)
    assert messages_of(response) == [
        ("warning", "Nothing was done: the campaign is in progress now, so “Send now” no longer applies.")]


@pytest.mark.django_db
def test_a_viewer_reloading_a_confirmation_is_refused(viewer_client):
    campaign = CampaignFactory(status="draft")
    assert viewer_client.get(action_url(campaign, "send_now")).status_code == 403


@pytest.mark.django_db
def test_actions_are_csrf_protected(db):
    campaign = CampaignFactory(status="in_progress")
    client = Client(enforce_csrf_checks=True)
    client.force_login(UserFactory(is_superuser=True))
    assert client.post(action_url(campaign, "pause")).status_code == 403
    assert status_of(campaign) == "in_progress"


@pytest.mark.django_db
def test_send_now_asks_for_confirmation_first(staff_client):
    campaign = CampaignFactory()
    add_recipients(campaign, 2)
    page = staff_client.post(action_url(campaign, "send_now"))
    assert page.status_code == 200 and "Sent mail cannot be recalled" in page.content.decode()
    assert status_of(campaign) == "draft"
    response = staff_client.post(action_url(campaign, "send_now"), {"confirm": "yes"})
    assert status_of(campaign) == "scheduled"
    assert messages_of(response) == [("success", "Send now: Sending starts now.")]


@pytest.mark.django_db
def test_illegal_transition_is_a_clear_error(staff_client):
    campaign = CampaignFactory(status="completed")
    response = staff_client.post(action_url(campaign, "pause"))
    [(level, text)] = messages_of(response)
    assert level == "error"
    assert text == f"Cannot pause campaign #{campaign.pk}: it is completed; only a campaign that is in progress can be paused."


@pytest.mark.django_db
def test_campaign_error_is_shown(staff_client):
    campaign = CampaignFactory()  # no recipients
    response = staff_client.post(action_url(campaign, "send_now"), {"confirm": "yes"})
    [(level, text)] = messages_of(response)
    assert level == "error" and "has no recipients" in text


@pytest.mark.django_db
def test_schedule_form_reads_the_configured_zone(staff_client, settings):
    settings.TIME_ZONE = "Asia/Tokyo"
    campaign = CampaignFactory()
    add_recipients(campaign, 1)
    page = staff_client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()
    assert "Asia/Tokyo" in page
    local = (timezone.now() + dt.timedelta(days=2)).astimezone(ZoneInfo("Asia/Tokyo")).replace(second=0, microsecond=0)
    response = staff_client.post(action_url(campaign, "schedule"), {"when": local.strftime("%Y-%m-%dT%H:%M")})
    campaign.refresh_from_db()
    assert campaign.status == "scheduled" and campaign.scheduled_at == local
    assert messages_of(response)[0][1] == f"Scheduled for {local:%Y-%m-%d %H:%M} JST."


@pytest.mark.django_db
def test_schedule_in_the_past_is_refused(staff_client):
    campaign = CampaignFactory()
    add_recipients(campaign, 1)
    response = staff_client.post(action_url(campaign, "schedule"), {"when": "2001-01-01T10:00"})
    assert messages_of(response) == [("error", "Schedule: Choose a time in the future, or use Send now.")]
    assert status_of(campaign) == "draft"


@pytest.mark.django_db
def test_send_test_email_refuses_bad_addresses(staff_client):
    campaign = CampaignFactory()
    response = staff_client.post(action_url(campaign, "send_test_email"), {"addresses": "me@example.com, nope"})
    assert messages_of(response) == [("error", "Test email: Not an email address: nope.")]


@pytest.mark.django_db
def test_send_test_email_with_the_data_of_a_chosen_recipient(staff_client, smtp_sink_server, no_sendgrid):
    campaign = CampaignFactory(subject="Hello {{ first_name }}")
    add_recipients(campaign, 2)
    response = staff_client.post(action_url(campaign, "send_test_email"),
                                 {"addresses": "a@example.com", "recipient": "nope"})
    assert messages_of(response) == [("error", "Test email: Not an email address: nope.")]
    response = staff_client.post(action_url(campaign, "send_test_email"),
                                 {"addresses": "a@example.com", "recipient": "R0001@example.com"})
    assert messages_of(response)[-1][1] == ("Test email sent to 1 of 1 addresses via smtp (the data of "
                                            "r0001@example.com).")
    assert [m["Subject"] for m in smtp_sink_server.messages()] == ["[TEST] Hello First1"]


@pytest.mark.django_db
def test_send_test_email_reaches_the_smtp_sink(staff_client, smtp_sink_server, no_sendgrid):
    campaign = CampaignFactory(subject="Hello {{ first_name }}")
    add_recipients(campaign, 1)
    response = staff_client.post(action_url(campaign, "send_test_email"), {"addresses": "a@example.com b@example.com"})
    assert messages_of(response)[0][1].startswith("Test email sent to 2 of 2 addresses via smtp")
    assert sorted(m["X-Sink-Rcpt-To"] for m in smtp_sink_server.messages()) == ["a@example.com", "b@example.com"]
    assert all(m["Subject"] == "[TEST] Hello First0" for m in smtp_sink_server.messages())
    assert not DeliveryLog.objects.exists()


@pytest.mark.django_db
def test_duplicate_copies_content_and_recipients_as_a_draft(staff_client):
    campaign = CampaignFactory(name="Original", status="completed", sent_count=3)
    add_recipients(campaign, 3, data={"city": "Lisbon"})
    response = staff_client.post(action_url(campaign, "duplicate"))
    copy = Campaign.objects.exclude(pk=campaign.pk).get()
    assert response["Location"] == reverse("admin:campaigns_campaign_change", args=[copy.pk])
    assert (copy.name, copy.status, copy.html_body, copy.sent_count) == ("Copy of Original", "draft",
                                                                        campaign.html_body, 0)
    assert copy.total_recipients == 3
    assert sorted(copy.recipients.values_list("email", "data")) == sorted(
        campaign.recipients.values_list("email", "data"))
    assert "city" in copy.available_merge_tags()


@pytest.mark.django_db
def test_bulk_pause_reports_count_and_refusals(staff_client):
    running = CampaignFactory.create_batch(2, status="in_progress")
    draft = CampaignFactory(status="draft")
    response = staff_client.post(LIST, {"action": "bulk_pause", "_selected_action": [c.pk for c in running + [draft]]})
    assert [status_of(c) for c in running] == ["paused", "paused"]
    found = messages_of(response)
    assert ("success", "Pause: done for 2 campaigns.") in found
    assert ("error", f"Cannot pause campaign #{draft.pk}: it is draft; only a campaign that is in progress can be "
                     "paused.") in found


@pytest.mark.django_db
def test_bulk_cancel_asks_for_confirmation(staff_client):
    campaigns = CampaignFactory.create_batch(2, status="scheduled")
    ids = [c.pk for c in campaigns]
    page = staff_client.post(LIST, {"action": "bulk_cancel", "_selected_action": ids})
    assert page.status_code == 200 and "cannot be restarted" in page.content.decode()
    assert [status_of(c) for c in campaigns] == ["scheduled", "scheduled"]
    response = staff_client.post(LIST, {"action": "bulk_cancel", "_selected_action": ids, "confirm": "yes"})
    assert [status_of(c) for c in campaigns] == ["cancelled", "cancelled"]
    assert ("success", "Cancel: done for 2 campaigns.") in messages_of(response)


@pytest.mark.django_db
def test_retry_failed_button_reopens_a_completed_campaign(staff_client):
    campaign = CampaignFactory(status="completed")
    add_logs(campaign, ["sent", "failed", "failed"])
    campaign.refresh_from_db()
    Campaign.objects.filter(pk=campaign.pk).update(sent_count=1, failed_count=2)
    response = staff_client.post(action_url(campaign, "retry_failed"), {"confirm": "yes"})
    assert messages_of(response) == [("success", "Retry failed: Retrying 2 failed recipients.")]
    assert status_of(campaign) == "in_progress" and campaign.failed_count == 0
    assert DeliveryLog.objects.filter(campaign=campaign, status="pending").count() == 2


@pytest.mark.django_db
def test_duplicate_keeps_the_pool_and_the_segment(staff_client):
    pool = pool_of(SendingAccountFactory(name="relay-of-the-original"))
    segment = {"match": "all", "conditions": [{"column": "city", "operator": "equals", "value": "Lisbon"}]}
    campaign = CampaignFactory(pool=pool, segment=segment)
    add_recipients(campaign, 3, data={"city": "Lisbon"})
    response = staff_client.post(action_url(campaign, "duplicate"))
    assert response.status_code == 302
    copy = Campaign.objects.exclude(pk=campaign.pk).get()
    assert copy.status == Campaign.Status.DRAFT and copy.total_recipients == 3
    assert copy.pool == pool and copy.segment == segment
