"""Issue 13, item 2: recipients, delivery logs and imports are a record, not editable in the admin; addresses
and data are validated at the model; a campaign that has started sending is archived, never deleted."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.messages import get_messages
from django.core.exceptions import ValidationError
from django.urls import reverse

from campaigns.models import Campaign, DeliveryLog, Recipient, RecipientImport
from tests.admin.conftest import add_logs, add_recipients, staff_client, viewer_client  # noqa: F401  (fixtures)
from tests.support.factories import HTML_BODY, CampaignFactory, DeliveryLogFactory, RecipientFactory

LIST = reverse("admin:campaigns_campaign_changelist")


def messages_of(response):
    return [m.message for m in get_messages(response.wsgi_request)]


# --- read-only ledgers ----------------------------------------------------------------------------------

@pytest.mark.django_db
def test_a_delivery_log_cannot_be_edited_even_by_a_superuser(staff_client):
    log = DeliveryLogFactory(email="ann@example.com")
    url = reverse("admin:campaigns_deliverylog_change", args=[log.pk])
    assert staff_client.get(url).status_code == 200  # viewable
    response = staff_client.post(url, {"email": "someone-else@example.com", "status": "sent",
                                       "campaign": log.campaign_id, "recipient": log.recipient_id})
    assert response.status_code == 403
    assert DeliveryLog.objects.get().email == "ann@example.com"
    assert staff_client.get(reverse("admin:campaigns_deliverylog_add")).status_code == 403


@pytest.mark.django_db
def test_a_recipient_cannot_be_added_or_edited(staff_client):
    recipient = RecipientFactory(email="ann@example.com", data={"city": "Lisbon"})
    url = reverse("admin:campaigns_recipient_change", args=[recipient.pk])
    response = staff_client.post(url, {"campaign": recipient.campaign_id, "email": "x@example.com\r\nBcc: y@z.com",
                                       "data": '["not", "an", "object"]'})
    assert response.status_code == 403
    recipient.refresh_from_db()
    assert (recipient.email, recipient.data) == ("ann@example.com", {"city": "Lisbon"})
    assert staff_client.get(reverse("admin:campaigns_recipient_add")).status_code == 403


@pytest.mark.django_db
def test_an_import_record_cannot_be_added_edited_or_deleted(staff_client):
    record = RecipientImport.objects.create(campaign=CampaignFactory(status="completed"), file="imports/a.csv",
                                            original_name="a.csv", status="succeeded", imported=5)
    assert staff_client.get(reverse("admin:campaigns_recipientimport_add")).status_code == 403
    assert staff_client.post(reverse("admin:campaigns_recipientimport_change", args=[record.pk]),
                             {"imported": 9}).status_code == 403
    assert staff_client.post(reverse("admin:campaigns_recipientimport_delete", args=[record.pk]),
                             {"post": "yes"}).status_code == 403
    assert RecipientImport.objects.get().imported == 5


@pytest.mark.django_db
def test_a_recipient_who_was_mailed_cannot_be_deleted(staff_client):
    campaign = CampaignFactory(status="completed")
    [log] = add_logs(campaign, ["sent"])
    staff_client.post(reverse("admin:campaigns_recipient_changelist"),
                      {"action": "delete_selected", ACTION_CHECKBOX_NAME: [log.recipient_id], "post": "yes"})
    assert Recipient.objects.count() == 1 and DeliveryLog.objects.count() == 1


@pytest.mark.django_db
def test_a_draft_recipient_is_deleted_after_a_confirmation_page(staff_client):
    campaign = CampaignFactory()
    first, second = add_recipients(campaign, 2)
    url = reverse("admin:campaigns_recipient_changelist")
    page = staff_client.post(url, {"action": "delete_selected", ACTION_CHECKBOX_NAME: [first.pk]})
    assert page.status_code == 200 and 'name="post" value="yes"' in page.content.decode()
    assert Recipient.objects.count() == 2
    staff_client.post(url, {"action": "delete_selected", ACTION_CHECKBOX_NAME: [first.pk], "post": "yes"})
    assert list(Recipient.objects.values_list("pk", flat=True)) == [second.pk]
    campaign.refresh_from_db()
    assert campaign.total_recipients == 1


# --- model validation -----------------------------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("email", ["ann@example.com\r\nBcc: eve@example.com", "ann@example.com\n", "a\rb@example.com"])
def test_line_breaks_in_addresses_are_refused(email):
    campaign = CampaignFactory()
    with pytest.raises(ValidationError, match="Line breaks"):
        Recipient(campaign=campaign, email=email).full_clean()
    recipient = RecipientFactory(campaign=campaign)
    with pytest.raises(ValidationError, match="Line breaks"):
        DeliveryLog(campaign=campaign, recipient=recipient, email=email).full_clean()


@pytest.mark.django_db
@pytest.mark.parametrize("data", [[1, 2], "text", 5])
def test_recipient_data_must_be_an_object(data):
    with pytest.raises(ValidationError, match="JSON object"):
        Recipient(campaign=CampaignFactory(), email="ann@example.com", data=data).full_clean()
    Recipient(campaign=CampaignFactory(), email="ann@example.com", data={"city": "Lisbon"}).full_clean()


def form_data(from_email):
    return {"name": "Autumn", "subject": "Hi", "from_email": from_email, "reply_to": "", "html_body": HTML_BODY,
            "text_body": "", "batch_size": 200, "schedule_for_0": "", "schedule_for_1": ""}


@pytest.mark.django_db
@pytest.mark.parametrize("from_email", ["not an address", "news@", "a@example.com, b@example.com",
                                        "Acme <news@example.com>\r\nBcc: eve@example.com", "news@localhost",
                                        "Acme <news@example.com> trailing"])
def test_an_invalid_from_email_is_refused(staff_client, from_email):
    response = staff_client.post(reverse("admin:campaigns_campaign_add"), form_data(from_email))
    assert response.status_code == 200 and "from_email" in response.context["adminform"].form.errors
    assert not Campaign.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("from_email", ["news@example.com", "Acme <news@example.com>", '"Acme, Inc." <n@example.com>',
                                        ""])
def test_a_valid_from_email_is_accepted(staff_client, from_email):
    response = staff_client.post(reverse("admin:campaigns_campaign_add"), form_data(from_email))
    assert response.status_code == 302
    assert Campaign.objects.get().from_email == from_email


@pytest.mark.django_db
def test_from_email_must_use_an_allowed_domain_when_they_are_set(staff_client, settings):
    settings.ALLOWED_FROM_DOMAINS = ["acme.com", "News.Acme.com"]
    response = staff_client.post(reverse("admin:campaigns_campaign_add"), form_data("Acme <news@example.com>"))
    assert response.context["adminform"].form.errors["from_email"] == [
        "The sender's domain must be one of: acme.com, news.acme.com."]
    assert staff_client.post(reverse("admin:campaigns_campaign_add"),
                             form_data("Acme <hello@news.acme.com>")).status_code == 302


@pytest.mark.django_db
@pytest.mark.parametrize("from_email", ["news@example.com", ""])  # empty: DEFAULT_FROM_EMAIL, on example.com
def test_a_campaign_from_a_domain_no_longer_allowed_is_not_scheduled(staff_client, settings, from_email):
    campaign = CampaignFactory(from_email=from_email)
    add_recipients(campaign, 1)
    settings.ALLOWED_FROM_DOMAINS = ["acme.com"]
    response = staff_client.post(reverse("admin:campaigns_campaign_action", args=[campaign.pk, "send_now"]),
                                 {"confirm": "yes"})
    assert "cannot send from this address: The sender's domain must be one of: acme.com." in messages_of(response)[0]
    campaign.refresh_from_db()
    assert campaign.status == "draft"


# --- deleting and archiving campaigns -------------------------------------------------------------------

ADVICE = {
    "in_progress": "To stop it, cancel it on the campaign page (Pause only holds the rest); once cancelled, archive "
                   "it to hide it from the list.",
    "scheduled": "scheduled, so first unschedule it on the campaign page (it goes back to draft), then delete it.",
    "completed": "To hide it from the list, archive it",
}
ADVICE.update(paused=ADVICE["in_progress"], failed=ADVICE["completed"], cancelled=ADVICE["completed"])


@pytest.mark.django_db
@pytest.mark.parametrize("status, started", [("in_progress", True), ("paused", True), ("completed", True),
                                             ("failed", True), ("cancelled", True), ("scheduled", False)])
def test_a_campaign_that_started_sending_cannot_be_deleted(staff_client, status, started):
    campaign = CampaignFactory(status=status)
    if started:
        Campaign.objects.filter(pk=campaign.pk).update(started_at="2026-01-01T10:00Z")
        add_logs(campaign, ["sent"])
    page = staff_client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()
    assert "deletelink" not in page
    response = staff_client.post(reverse("admin:campaigns_campaign_delete", args=[campaign.pk]), {"post": "yes"})
    # An admin page that says what to do instead (issue 25, item 12), not a bare "403 Forbidden".
    page = response.content.decode()
    assert response.status_code == 403 and 'id="not-deletable"' in page and 'id="site-name"' in page
    advice = ADVICE[status]
    assert advice in page
    bulk = staff_client.post(LIST, {"action": "delete_selected", ACTION_CHECKBOX_NAME: [campaign.pk], "post": "yes"})
    assert "Nothing deleted: 1 of the selected campaigns cannot be deleted." in messages_of(bulk)[0]
    assert advice in messages_of(bulk)[0]
    assert Campaign.objects.filter(pk=campaign.pk).exists()
    assert DeliveryLog.objects.count() == (1 if started else 0)


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["draft", "cancelled"])
def test_drafts_and_campaigns_cancelled_before_sending_can_be_deleted(staff_client, status):
    campaign = CampaignFactory(status=status)
    add_recipients(campaign, 2)
    page = staff_client.post(LIST, {"action": "delete_selected", ACTION_CHECKBOX_NAME: [campaign.pk]})
    assert 'name="post" value="yes"' in page.content.decode()
    staff_client.post(LIST, {"action": "delete_selected", ACTION_CHECKBOX_NAME: [campaign.pk], "post": "yes"})
    assert not Campaign.objects.exists() and not Recipient.objects.exists()


@pytest.mark.django_db
def test_archived_campaigns_are_hidden_from_the_default_list(staff_client):
    done = CampaignFactory(name="Spring sale", status="completed")
    live = CampaignFactory(name="Summer sale", status="in_progress")
    response = staff_client.post(LIST, {"action": "archive", ACTION_CHECKBOX_NAME: [done.pk, live.pk]})
    assert messages_of(response) == [
        "Archived 1 campaign. The Archived filter shows them.",
        "Only completed, failed and cancelled campaigns are archived. Not archived: “Summer sale”, still sending: "
        "cancel it on the campaign page, then archive it."]
    assert list(Campaign.objects.filter(archived=True)) == [done]
    default = staff_client.get(LIST).content.decode()
    assert "Summer sale" in default and "Spring sale" not in default
    archived = staff_client.get(LIST, {"archived": "yes"}).content.decode()
    assert "Spring sale" in archived and "Summer sale" not in archived
    everything = staff_client.get(LIST, {"archived": "all"}).content.decode()
    assert "Spring sale" in everything and "Summer sale" in everything
    staff_client.post(LIST + "?archived=yes", {"action": "unarchive", ACTION_CHECKBOX_NAME: [done.pk]})
    assert not Campaign.objects.filter(archived=True).exists()


@pytest.mark.django_db
def test_a_viewer_cannot_archive(viewer_client):
    done = CampaignFactory(status="completed")
    viewer_client.post(LIST, {"action": "archive", ACTION_CHECKBOX_NAME: [done.pk]})
    assert not Campaign.objects.filter(archived=True).exists()
