"""The campaign admin (campaigns.admin.campaigns): the form (starter templates, merge-tag validation, the
unsubscribe link, scheduling), the list (badges, progress, colour-coded delivery rate, local schedule,
filters, search), and what a user with view permission only sees and may do."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from campaigns import services
from campaigns.exceptions import CampaignError
from campaigns.models import Campaign, CampaignVariant, DeliveryLog, SendBatch
from campaigns.sending import pipeline
from tests.admin.conftest import add_recipients
from tests.support.factories import HTML_BODY, CampaignFactory, EmailTemplateFactory, UserFactory

ADD = reverse("admin:campaigns_campaign_add")
LIST = reverse("admin:campaigns_campaign_changelist")


def change_url(campaign):
    return reverse("admin:campaigns_campaign_change", args=[campaign.pk])


def form_data(**overrides):
    data = {"name": "Autumn", "subject": "Hi {{ first_name }}", "from_email": "news@example.com", "reply_to": "",
            "body_format": "html", "html_body": HTML_BODY, "text_body": "", "batch_size": 200, "track_engagement": "on",
            "schedule_for_0": "", "schedule_for_1": ""}
    data.update(overrides)
    return data


@pytest.mark.django_db
def test_an_unknown_tag_on_a_draft_is_saved_with_a_warning_and_refused_when_scheduled(staff_client, campaign):
    """Issue 25 item 9: {{ country }} before the import that defines it is saved, with a warning naming it;
    scheduling (and Send now) refuse it, naming it and the available tags."""
    add_recipients(campaign, 3, data={"city": "Lisbon", "plan": "pro"})
    response = staff_client.post(change_url(campaign), form_data(html_body=HTML_BODY + "{{ country }}"),
                                 follow=True)
    notes = [str(m) for m in response.context["messages"]]
    assert any(note.startswith("{{ country }} is not a merge tag of this campaign yet") for note in notes), notes
    campaign.refresh_from_db()
    assert "{{ country }}" in campaign.html_body and campaign.status == Campaign.Status.DRAFT
    for action in (services.send_now, lambda pk: services.schedule(pk, timezone.now() + dt.timedelta(hours=1))):
        with pytest.raises(CampaignError) as refused:
            action(campaign.pk)
        error = str(refused.value)
        assert "cannot be sent yet: HTML body: Unknown merge tag {{ country }}" in error
        for tag in ("city", "plan", "email", "first_name", "last_name", "unsubscribe_url"):
            assert f"{{{{ {tag} }}}}" in error
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.DRAFT

    add_recipients(campaign, 1, data={"country": "PT"}, start=3)  # the import that defines it
    services.schedule(campaign.pk, timezone.now() + dt.timedelta(hours=1))
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.SCHEDULED


@pytest.mark.django_db
def test_a_markdown_body_is_saved_with_the_html_it_makes(staff_client, campaign):
    response = staff_client.post(change_url(campaign), form_data(
        body_format="markdown", markdown_body="**Hi** {{ first_name }}\n\n[Unsubscribe]({{ unsubscribe_url }})"))
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert "<p><strong>Hi</strong> {{ first_name }}</p>" in campaign.html_body
    response = staff_client.post(change_url(campaign), form_data(body_format="markdown", markdown_body=""))
    assert response.context["adminform"].form.errors["markdown_body"] == [
        "Write the Markdown body, or choose the HTML format."]


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
def test_content_over_512_kb_is_refused_with_its_size_and_the_limit(staff_client):
    padding = "<p>" + "x" * (600 * 1024) + "</p>"
    response = staff_client.post(ADD, form_data(html_body=HTML_BODY + padding, text_body=padding))
    errors = response.context["adminform"].form.errors
    assert "This is 600 KB; the limit is 512 KB." in str(errors["html_body"])
    assert "the limit is 512 KB" in str(errors["text_body"])
    assert not Campaign.objects.exists()
    assert staff_client.post(ADD, form_data(html_body=HTML_BODY + "<p>" + "x" * (500 * 1024) + "</p>")
                             ).status_code == 302


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
    campaign.html_body = '<p>{{ nope }}</p><a href="{{ unsubscribe_url }}">x</a>'
    campaign.full_clean()  # a tag an import may still define: accepted on a draft
    campaign.html_body = "<p>{{ Nope }}</p>"  # no column becomes a tag with capitals
    with pytest.raises(ValidationError) as error:
        campaign.full_clean()
    assert "Unknown merge tag {{ Nope }}" in str(error.value)


# --- the list -----------------------------------------------------------------------------------


def row_of(html, name):
    start = html.index(f">{name}<")
    return html[start:html.index("</tr>", start)]


@pytest.mark.django_db
def test_badges_progress_and_rate_colors(staff_client):
    CampaignFactory(name="Great", status="completed", total_recipients=1000, sent_count=990, failed_count=10)
    CampaignFactory(name="Middling", status="in_progress", total_recipients=1000, sent_count=450, failed_count=50)
    CampaignFactory(name="Poor", status="failed", total_recipients=100, sent_count=50, failed_count=50)
    CampaignFactory(name="Fresh", status="draft")
    html = staff_client.get(LIST).content.decode()

    great = row_of(html, "Great")
    assert 'campaign-badge status-completed">Completed<' in great
    assert 'value="100"' in great and "990 / 1,000 sent" in great
    assert 'rate-good">99.0%' in great
    middling = row_of(html, "Middling")
    assert 'rate-fair">90.0%' in middling and 'value="50"' in middling
    assert 'rate-poor">50.0%' in row_of(html, "Poor")
    assert "—" in row_of(html, "Fresh")  # nothing attempted: no rate rather than 0 %


@pytest.mark.django_db
def test_list_reads_counters_and_never_counts_delivery_logs(staff_client):
    CampaignFactory.create_batch(5, status="completed", total_recipients=10, sent_count=10)
    with CaptureQueriesContext(connection) as queries:
        assert staff_client.get(LIST).status_code == 200
    assert not [q["sql"] for q in queries if "campaigns_deliverylog" in q["sql"]]


@pytest.mark.django_db
def test_scheduled_time_is_shown_in_the_configured_zone(staff_client, settings):
    settings.TIME_ZONE = "America/New_York"
    CampaignFactory(name="Later", status="scheduled",
                    scheduled_at=dt.datetime(2030, 1, 15, 15, 0, tzinfo=dt.timezone.utc))
    assert "2030-01-15 10:00 EST" in row_of(staff_client.get(LIST).content.decode(), "Later")


@pytest.mark.django_db
def test_filter_by_status_and_search_by_name(staff_client):
    CampaignFactory(name="Spring sale", status="draft")
    CampaignFactory(name="Summer sale", status="completed")
    CampaignFactory(name="Newsletter", status="completed")
    html = staff_client.get(LIST, {"status__exact": "completed"}).content.decode()
    assert "Summer sale" in html and "Newsletter" in html and "Spring sale" not in html
    html = staff_client.get(LIST, {"q": "sale"}).content.decode()
    assert "Summer sale" in html and "Spring sale" in html and "Newsletter" not in html


# --- view permission only ------------------------------------------------------------------------


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
                                      "admin:campaigns_campaign_preview_frame", "admin:campaigns_campaign_export"])
def test_non_staff_are_sent_to_login(client, url_name):
    campaign = CampaignFactory()
    client.force_login(UserFactory(is_staff=False))
    response = client.get(reverse(url_name, args=[campaign.pk]))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


# --- A/B tests ---------------------------------------------------------------------------------------

def variants_data(*variants):
    data = {"variants-TOTAL_FORMS": len(variants), "variants-INITIAL_FORMS": 0, "variants-MIN_NUM_FORMS": 0,
            "variants-MAX_NUM_FORMS": 4}
    for i, (letter, subject, from_name) in enumerate(variants):
        data.update({f"variants-{i}-letter": letter, f"variants-{i}-subject": subject,
                     f"variants-{i}-from_name": from_name, f"variants-{i}-html_body": "",
                     f"variants-{i}-text_body": ""})
    return data


@pytest.mark.django_db
def test_variants_and_the_test_settings_are_set_on_the_campaign_page(staff_client):
    response = staff_client.post(ADD, {**form_data(ab_test_percent=20, ab_metric="clicks", ab_wait="02:30:00"),
                                       **variants_data(("A", "Hello", ""), ("B", "Hi there", "Ann at Acme"))})
    assert response.status_code == 302, response.context["adminform"].form.errors
    campaign = Campaign.objects.get()
    assert (campaign.ab_test_percent, campaign.ab_metric, campaign.ab_wait) == (20, "clicks", dt.timedelta(hours=2.5))
    assert list(campaign.variants.values_list("letter", "subject", "from_name")) == [
        ("A", "Hello", ""), ("B", "Hi there", "Ann at Acme")]
    # A form posted without the A/B part keeps the settings and the variants.
    assert staff_client.post(change_url(campaign), form_data(name="Renamed")).status_code == 302
    campaign.refresh_from_db()
    assert campaign.name == "Renamed" and campaign.ab_test_percent == 20 and campaign.variants.count() == 2


@pytest.mark.django_db
def test_the_campaign_page_shows_each_variants_figures_and_the_winner_and_staff_can_pick_it(staff_client):
    campaign = CampaignFactory(ab_test_percent=50, ab_wait=dt.timedelta(hours=1))
    add_recipients(campaign, 8)
    a = CampaignVariant.objects.create(campaign=campaign, letter="A", subject="<b>Subject A</b>")
    b = CampaignVariant.objects.create(campaign=campaign, letter="B", subject="Subject B")
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.SCHEDULED, scheduled_at=timezone.now())
    pipeline.start_campaign(campaign.pk)
    DeliveryLog.objects.filter(variant=b).update(status="sent")
    DeliveryLog.objects.filter(pk=DeliveryLog.objects.filter(variant=b).first().pk).update(opened_at=timezone.now())

    page = staff_client.get(change_url(campaign)).content.decode()
    assert 'id="ab-test"' in page and "&lt;b&gt;Subject A&lt;/b&gt;" in page
    assert "1 (50.0 %)" in page  # B: 1 of its 2 sent test rows opened
    assert "Send B to the rest now" in page and 'id="ab-winner"' not in page

    pick = reverse("admin:campaigns_campaign_ab_winner", args=[campaign.pk, b.pk])
    assert staff_client.get(pick).status_code == 405
    response = staff_client.post(pick, follow=True)
    assert "Variant B is the winner" in response.content.decode()
    campaign.refresh_from_db()
    assert campaign.ab_winner == b
    assert not SendBatch.objects.filter(campaign=campaign, status=SendBatch.Status.HELD).exists()
    page = staff_client.get(change_url(campaign)).content.decode()
    assert 'id="ab-winner"' in page and "Winner: variant B" in page and "Send A to the rest now" not in page
    # Picking again is refused with the reason.
    response = staff_client.post(reverse("admin:campaigns_campaign_ab_winner", args=[campaign.pk, a.pk]), follow=True)
    assert "already variant B" in response.content.decode()


@pytest.mark.django_db
def test_a_viewer_cannot_pick_the_winner(viewer_client):
    campaign = CampaignFactory(ab_test_percent=50)
    variant = CampaignVariant.objects.create(campaign=campaign, letter="A", subject="A")
    response = viewer_client.post(reverse("admin:campaigns_campaign_ab_winner", args=[campaign.pk, variant.pk]))
    assert response.status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize("field, value, error", [
    ("subject", "{{ first_name|upper }}", 'the filter "upper" is not supported'),
    ("html_body", "<p>Hi {{ Nickname }}</p>", "Unknown merge tag {{ Nickname }}"),
    ("html_body", "<p>Hi {{ first_name }}</p>", "must contain an unsubscribe link"),
    ("text_body", "Hi {{ first_name|upper }}", 'the filter "upper" is not supported'),
])
def test_a_variant_is_validated_like_the_campaigns_own_fields(staff_client, field, value, error):
    data = {**form_data(ab_test_percent=20), **variants_data(("A", "Hello", ""), ("B", "Hi there", ""))}
    data[f"variants-1-{field}"] = value
    response = staff_client.post(ADD, data)
    assert response.status_code == 200
    assert error in " ".join(response.context["inline_admin_formsets"][0].formset.errors[1][field])
    assert not Campaign.objects.exists() and not CampaignVariant.objects.exists()


# --- the error summary (issue 25, item 2) ---------------------------------------------------------------

@pytest.mark.django_db
def test_a_past_send_at_is_summed_up_at_the_top_with_a_link_to_its_field(staff_client):
    past = timezone.localtime() - dt.timedelta(days=1)
    response = staff_client.post(ADD, form_data(schedule_for_0=past.strftime("%Y-%m-%d"), schedule_for_1="10:00"))
    page = response.content.decode()
    assert response.status_code == 200 and not Campaign.objects.exists()
    summary = page[page.index('<div class="error-summary"'):]
    summary = summary[:summary.index("</div>")]
    assert 'role="alert"' in summary and 'tabindex="-1"' in summary and "There is a problem" in summary
    assert '<a href="#id_schedule_for_0">Send at: Choose a time in the future, or use Send now.</a>' in summary
    assert 'id="id_schedule_for_0"' in page
    # At the top: before the form and its own "Please correct" note; focused by a static script (no inline one).
    assert page.index('id="error-summary"') < page.index('id="campaign_form"') < page.index('class="errornote"')
    assert "campaigns/admin/error_summary.js" in page


@pytest.mark.django_db
def test_a_campaign_page_without_errors_has_no_summary(staff_client, campaign):
    page = staff_client.get(change_url(campaign)).content.decode()
    assert 'id="error-summary"' not in page and "error_summary.js" not in page

