"""Preview for a chosen recipient in a sandboxed iframe."""

import html

import pytest
from django.urls import reverse

from tests.admin.conftest import add_recipients
from tests.support.factories import CampaignFactory


def preview(client, campaign, **params):
    return client.get(reverse("admin:campaigns_campaign_preview", args=[campaign.pk]), params)


@pytest.mark.django_db
def test_preview_for_a_chosen_recipient(staff_client):
    campaign = CampaignFactory(subject="Hi {{ first_name }} in {{ city }}",
                               html_body='<p>{{ city }}</p><a href="{{ unsubscribe_url }}">x</a>')
    add_recipients(campaign, 3)
    campaign.recipients.filter(email="r0002@example.com").update(data={"city": "<script>alert(1)</script>"})
    page = preview(staff_client, campaign, recipient="R0002@example.com").content.decode()
    assert 'id="preview-subject">Hi First2 in &lt;script&gt;alert(1)&lt;/script&gt;<' in page
    assert '<iframe class="preview-frame" id="preview-html" sandbox ' in page
    srcdoc = html.unescape(page.split('srcdoc="')[1].split('"></iframe>')[0])
    assert "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>" in srcdoc  # escaped inside the email too
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
