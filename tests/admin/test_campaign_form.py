"""The campaign form: starter templates, merge-tag validation, the unsubscribe link, scheduling."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign
from tests.admin.conftest import add_recipients
from tests.factories import HTML_BODY, CampaignFactory, EmailTemplateFactory

ADD = reverse("admin:campaigns_campaign_add")


def change_url(campaign):
    return reverse("admin:campaigns_campaign_change", args=[campaign.pk])


def form_data(**overrides):
    data = {"name": "Autumn", "subject": "Hi {{ first_name }}", "from_email": "news@example.com", "reply_to": "",
            "html_body": HTML_BODY, "text_body": "", "batch_size": 200, "track_engagement": "on",
            "schedule_for_0": "", "schedule_for_1": ""}
    data.update(overrides)
    return data


@pytest.mark.django_db
def test_unknown_tag_is_refused_listing_the_available_ones(staff_client, campaign):
    add_recipients(campaign, 3, data={"city": "Lisbon", "plan": "pro"})
    response = staff_client.post(change_url(campaign), form_data(html_body=HTML_BODY + "{{ country }}"))
    assert response.status_code == 200
    error = str(response.context["adminform"].form.errors["html_body"])
    assert "Unknown merge tag {{ country }}" in error
    for tag in ("city", "plan", "email", "first_name", "last_name", "unsubscribe_url"):
        assert f"{{{{ {tag} }}}}" in error
    campaign.refresh_from_db()
    assert "{{ country }}" not in campaign.html_body


@pytest.mark.django_db
def test_imported_columns_are_accepted_and_listed_on_the_form(staff_client, campaign):
    add_recipients(campaign, 2, data={"city": "Lisbon"})
    page = staff_client.get(change_url(campaign)).content.decode()
    assert "Available merge tags:" in page and "{{ city }}" in page
    response = staff_client.post(change_url(campaign), form_data(subject="News for {{ city }}"))
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.subject == "News for {{ city }}"


@pytest.mark.django_db
def test_html_without_unsubscribe_link_is_refused(staff_client):
    response = staff_client.post(ADD, form_data(html_body="<p>Hello {{ first_name }}</p>"))
    assert "must contain an unsubscribe link" in str(response.context["adminform"].form.errors["html_body"])
    assert not Campaign.objects.exists()


@pytest.mark.django_db
def test_malformed_tag_is_refused(staff_client):
    response = staff_client.post(ADD, form_data(subject="Hi {{ first name }}"))
    assert "Malformed merge tag" in str(response.context["adminform"].form.errors["subject"])


@pytest.mark.django_db
def test_new_columns_from_a_later_import_become_available(campaign):
    add_recipients(campaign, 2, data={"city": "Lisbon"})
    assert "plan" not in campaign.available_merge_tags()
    add_recipients(campaign, 2, data={"city": "Porto", "plan": "pro"}, start=10)  # changes total_recipients
    campaign.refresh_from_db()
    assert "plan" in campaign.available_merge_tags()
    campaign.subject = "{{ plan }}"
    campaign.full_clean()


@pytest.mark.django_db
def test_starting_from_a_template_prefills_subject_and_bodies(staff_client):
    template = EmailTemplateFactory(name="Welcome", subject="Welcome {{ first_name }}", html_body=HTML_BODY,
                                    text_body="Plain welcome")
    form = staff_client.get(ADD, {"start_from": template.pk}).context["adminform"].form
    assert form.initial["subject"] == "Welcome {{ first_name }}"
    assert form.initial["html_body"] == HTML_BODY
    # Without JavaScript: choose the template, leave the content empty, save.
    response = staff_client.post(ADD, form_data(start_from=template.pk, subject="", html_body="", text_body=""))
    assert response.status_code == 302
    campaign = Campaign.objects.get()
    assert (campaign.subject, campaign.html_body, campaign.text_body, campaign.template) == (
        template.subject, template.html_body, "Plain welcome", template)


@pytest.mark.django_db
def test_schedule_on_the_form_is_read_in_the_configured_zone(staff_client, settings, campaign):
    settings.TIME_ZONE = "Europe/Lisbon"
    add_recipients(campaign, 1)
    page = staff_client.get(change_url(campaign)).content.decode()
    assert "Europe/Lisbon" in page
    when = timezone.now().astimezone(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(days=30)
    local = when.astimezone(ZoneInfo("Europe/Lisbon"))
    response = staff_client.post(change_url(campaign), form_data(
        schedule_for_0=local.strftime("%Y-%m-%d"), schedule_for_1=local.strftime("%H:%M:%S")), follow=True)
    campaign.refresh_from_db()
    assert campaign.status == "scheduled" and campaign.scheduled_at == when
    assert "Scheduled for" in response.content.decode()


@pytest.mark.django_db
def test_content_is_read_only_once_sending_started(staff_client):
    campaign = CampaignFactory(status="in_progress")
    form = staff_client.get(change_url(campaign)).context["adminform"].form
    assert "html_body" not in form.fields and "subject" not in form.fields


@pytest.mark.django_db
def test_model_clean_is_where_validation_lives(campaign):
    campaign.html_body = "<p>{{ nope }}</p>"
    with pytest.raises(ValidationError) as error:
        campaign.full_clean()
    assert "Unknown merge tag {{ nope }}" in str(error.value)
