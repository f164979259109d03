"""Preview for a chosen recipient in a sandboxed iframe, and the admin index overview."""

import datetime as dt
import html

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.admin.conftest import add_logs, add_recipients
from tests.factories import CampaignFactory


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


@pytest.mark.django_db
def test_index_overview(staff_client):
    now = timezone.now()
    live = CampaignFactory(name="Live one", status="in_progress", started_at=now - dt.timedelta(days=2),
                           sent_count=8, failed_count=2)
    add_logs(live, ["sent"] * 3, sent_at=now - dt.timedelta(minutes=5))
    add_logs(live, ["sent"] * 5, sent_at=now - dt.timedelta(days=2))
    CampaignFactory.create_batch(2, status="draft")
    page = staff_client.get(reverse("admin:index")).content.decode()
    assert 'id="overview-sent-week">8<' in page
    sent_today = int(page.split('id="overview-sent-today">')[1].split("<")[0])
    assert sent_today in (3, 8) and (sent_today == 8) == (timezone.localtime(now - dt.timedelta(days=2)).date()
                                                          == timezone.localdate())
    assert 'id="overview-failure-rate">20.0%' in page
    by_status = page.split('id="overview-by-status">')[1].split("</tbody>")[0]
    assert "Draft</span></a></th><td>2<" in by_status and "In progress</span></a></th><td>1<" in by_status
    assert "Live one" in page.split('id="overview-recent">')[1]
