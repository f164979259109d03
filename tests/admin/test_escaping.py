"""Issue 13, item 1: everything derived from recipient data is escaped in the admin, and a data key
that is not a merge-tag name (^[a-z][a-z0-9_]*$) is never offered or accepted as a tag."""

import pytest
from django.urls import reverse

from campaigns.message.rendering import available_tags
from campaigns.models import DeliveryLog, RecipientImport
from tests.admin.conftest import add_recipients, campaign, staff_client  # noqa: F401  (fixtures)
from tests.support.factories import HTML_BODY, CampaignFactory, DeliveryLogFactory, RecipientFactory

PAYLOAD = "<img src=x onerror=alert(1)>"


def change_url(campaign):
    return reverse("admin:campaigns_campaign_change", args=[campaign.pk])


@pytest.mark.django_db
def test_a_planted_data_key_is_neither_run_nor_offered_on_the_campaign_page(staff_client, campaign):
    add_recipients(campaign, 2, data={PAYLOAD: 1, "city": "Lisbon"})
    page = staff_client.get(change_url(campaign)).content.decode()
    assert "onerror" not in page
    assert "Available merge tags:" in page and "{{ city }}" in page


@pytest.mark.django_db
def test_a_planted_data_key_is_escaped_wherever_the_help_text_is_built(campaign):
    # Even if a key of that shape were ever offered, the help text escapes it.
    from campaigns.admin.forms import CampaignForm

    campaign.available_merge_tags = lambda: [PAYLOAD]
    help_text = CampaignForm(instance=campaign).fields["html_body"].help_text
    assert "<img" not in help_text and "&lt;img src=x onerror=alert(1)&gt;" in help_text


@pytest.mark.parametrize("key", [PAYLOAD, "City", "naïve", "1st", "_private", "a-b", "x y", "é"])
def test_keys_that_are_not_tag_names_are_not_available(key):
    assert available_tags([key, "plan_2"]) == sorted(["email", "first_name", "last_name", "unsubscribe_url",
                                                      "web_url", "plan_2"])


@pytest.mark.django_db
def test_a_template_using_a_key_that_is_not_a_tag_name_is_refused(staff_client, campaign):
    add_recipients(campaign, 1, data={"City": "Lisbon"})
    response = staff_client.post(change_url(campaign), {
        "name": "x", "subject": "Hi {{ City }}", "from_email": "news@example.com", "reply_to": "",
        "html_body": HTML_BODY, "text_body": "", "batch_size": 200, "schedule_for_0": "", "schedule_for_1": ""})
    assert response.status_code == 200
    assert "Unknown merge tag {{ City }}" in str(response.context["adminform"].form.errors["subject"])
    campaign.refresh_from_db()
    assert "City" not in campaign.subject


@pytest.mark.django_db
def test_duplicate_does_not_offer_a_planted_key(staff_client, campaign):
    add_recipients(campaign, 1, data={PAYLOAD: 1})
    copy = campaign.duplicate()
    assert "onerror" not in staff_client.get(change_url(copy)).content.decode()


@pytest.mark.django_db
def test_recipient_values_are_escaped_in_the_preview(staff_client):
    campaign = CampaignFactory(html_body=HTML_BODY.replace("{{ email }}", "{{ city }}"))
    RecipientFactory(campaign=campaign, first_name="<script>alert(1)</script>", data={"city": PAYLOAD})
    page = staff_client.get(reverse("admin:campaigns_campaign_preview", args=[campaign.pk])).content.decode()
    assert "<script>alert(1)" not in page and "<img src=x" not in page
    # The HTML part is the sandboxed iframe's own URL (the frame): the value is escaped in it as text.
    frame_url = reverse("admin:campaigns_campaign_preview_frame", args=[campaign.pk])
    email_html = staff_client.get(frame_url).content.decode()
    assert "<img src=x" not in email_html and "&lt;img src=x onerror=alert(1)&gt;" in email_html


@pytest.mark.django_db
def test_delivery_log_errors_and_addresses_are_escaped_in_the_list(staff_client):
    log = DeliveryLogFactory(status=DeliveryLog.Status.FAILED, last_error=f"550 {PAYLOAD}")
    DeliveryLog.objects.filter(pk=log.pk).update(email=f"{PAYLOAD}@example.com")
    page = staff_client.get(reverse("admin:campaigns_deliverylog_changelist")).content.decode()
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


@pytest.mark.django_db
def test_import_reports_are_escaped(staff_client, campaign):
    record = RecipientImport.objects.create(campaign=campaign, file="imports/x.csv", original_name=f"{PAYLOAD}.csv",
                                            status=RecipientImport.Status.FAILED, error=f"No email column: {PAYLOAD}")
    page = staff_client.get(reverse("admin:campaigns_campaign_import_status", args=[record.pk])).content.decode()
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
