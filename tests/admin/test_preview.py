"""Preview for a chosen recipient in a sandboxed iframe, whose HTML is a URL of its own (the frame)."""

import html

import pytest
from django.urls import reverse

from tests.admin.conftest import add_recipients
from tests.support.factories import CampaignFactory, UserFactory


def preview(client, campaign, **params):
    return client.get(reverse("admin:campaigns_campaign_preview", args=[campaign.pk]), params)


def frame(client, campaign, **params):
    return client.get(reverse("admin:campaigns_campaign_preview_frame", args=[campaign.pk]), params)


@pytest.mark.django_db
def test_preview_for_a_chosen_recipient(staff_client):
    campaign = CampaignFactory(subject="Hi {{ first_name }} in {{ city }}",
                               html_body='<p>{{ city }}</p><a href="{{ unsubscribe_url }}">x</a>')
    add_recipients(campaign, 3)
    campaign.recipients.filter(email="r0002@example.com").update(data={"city": "<script>alert(1)</script>"})
    page = preview(staff_client, campaign, recipient="R0002@example.com").content.decode()
    assert 'id="preview-subject">Hi First2 in &lt;script&gt;alert(1)&lt;/script&gt;<' in page
    assert '<iframe class="preview-frame" id="preview-html" sandbox ' in page
    src = html.unescape(page.split('id="preview-html" sandbox title="HTML part" src="')[1].split('"')[0])
    frame_url = reverse("admin:campaigns_campaign_preview_frame", args=[campaign.pk])
    assert src == f"{frame_url}?recipient=R0002%40example.com"
    email_html = staff_client.get(src).content.decode()
    assert email_html.startswith("<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>")  # escaped inside the email too
    text = page.split('id="preview-text">')[1].split("</pre>")[0]
    assert text.startswith("&lt;script&gt;")  # the plain-text part, shown as text, never as markup


@pytest.mark.django_db
def test_preview_falls_back_to_first_recipient_then_sample(staff_client):
    campaign = CampaignFactory(subject="Hi {{ first_name }}")
    page = preview(staff_client, campaign).content.decode()
    assert "sample data" in page and "Hi Sam" in page
    add_recipients(campaign, 2)
    page = preview(staff_client, campaign, recipient="nobody@example.com").content.decode()
    assert "No recipient nobody@example.com" in page and "Hi First0" in page


@pytest.mark.django_db
def test_the_frame_shows_sample_data_without_the_export_permission(viewer_client):
    campaign = CampaignFactory(html_body="<p>{{ email }} {{ first_name }}</p>")
    add_recipients(campaign, 2)
    shown = frame(viewer_client, campaign, recipient="r0001@example.com").content.decode()
    assert shown == "<p>sample@example.com Sam</p>"
    viewer_client.logout()
    assert frame(viewer_client, campaign).status_code == 302  # to the login page


@pytest.mark.django_db
def test_the_live_frame_takes_posts_from_users_who_may_write_campaigns(viewer_client):
    url = reverse("admin:campaigns_campaign_live_preview_frame")
    assert viewer_client.post(url, {"html_body": "<p>Hi</p>"}).status_code == 403
    viewer_client.force_login(UserFactory(is_superuser=True))
    assert viewer_client.get(url).status_code == 405
    assert viewer_client.post(url, {"html_body": "<p>Hi {{ first_name }}</p>"}).content == b"<p>Hi {{ first_name }}</p>"
    markdown = viewer_client.post(url, {"html_body": "<p>old</p>", "body_format": "markdown",
                                        "markdown_body": "*Hi* {{ first_name }}"}).content.decode()
    assert "<p><em>Hi</em> {{ first_name }}</p>" in markdown and "old" not in markdown
