"""The follow-up page (issue 16, item 1) and the engagement figures on the campaign page (item 2), as staff
see them: counts before creating, the draft it creates, permissions, refusals and escaping."""

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from campaigns.models import Campaign, CampaignLink, Recipient
from tests.support.engaged_campaign import LINK_A, make_engaged_campaign
from tests.support.factories import CampaignFactory

pytestmark = pytest.mark.django_db
PAYLOAD = "<img src=x onerror=alert(1)>"


def follow_up_url(campaign):
    return reverse("admin:campaigns_campaign_follow_up", args=[campaign.pk])


def change_url(campaign):
    return reverse("admin:campaigns_campaign_change", args=[campaign.pk])


def test_the_page_shows_each_groups_count_before_anything_is_created(staff_client):
    campaign, _ = make_engaged_campaign()
    before = Campaign.objects.count()
    response = staff_client.get(follow_up_url(campaign))
    assert response.status_code == 200 and Campaign.objects.count() == before
    page = response.content.decode()
    rows = {a.segment: (a.recipients, a.suppressed) for a in response.context["audiences"]}
    assert rows == {"non_openers": (2, 1), "openers": (3, 1), "clickers": (2, 0), "non_clickers": (3, 2),
                    "failed": (1, 0), "unknown": (1, 0)}
    assert 'id="audience-non_openers"' in page and "Create draft (2)" in page
    # The link is escaped like everything else, though no recipient wrote it.
    assert "https://shop.acme.test/sale?x=1&amp;y=&lt;2&gt;" in page and "<2>" not in page


def test_creating_a_follow_up_lands_on_the_new_draft_with_the_counts_said(staff_client):
    campaign, _ = make_engaged_campaign()
    response = staff_client.post(follow_up_url(campaign), {"segment": "non_openers"})
    follow_up = Campaign.objects.order_by("-pk").first()
    assert response.status_code == 302 and response["Location"] == change_url(follow_up)
    assert follow_up.status == "draft" and follow_up.total_recipients == 2
    [message] = [str(m) for m in get_messages(response.wsgi_request)]
    assert "created with 2 recipients. 1 suppressed address left out." in message


def test_a_follow_up_after_an_ab_test_says_whose_subject_it_has(staff_client):
    from tests.audience.test_follow_ups import ab_tested

    campaign = ab_tested()
    response = staff_client.post(follow_up_url(campaign), {"segment": "openers"})
    [message] = [str(m) for m in get_messages(response.wsgi_request)]
    assert ("After the A/B test its subject is each recipient's own ({{ ab_subject }}), and its content the "
            "winner's.") in message


def test_the_clickers_of_a_link_and_a_missing_link(staff_client):
    campaign, _ = make_engaged_campaign()
    link = CampaignLink.objects.get(campaign=campaign, url=LINK_A)
    response = staff_client.post(follow_up_url(campaign), {"segment": "link_clickers"})
    assert response.status_code == 200 and "Choose the link" in response.content.decode()
    response = staff_client.post(follow_up_url(campaign), {"segment": "link_clickers", "link": link.pk})
    follow_up = Campaign.objects.order_by("-pk").first()
    assert list(follow_up.recipients.values_list("email", flat=True)) == ["r0@example.com"]


def test_recipient_data_and_the_link_stay_escaped_on_the_follow_ups_pages(staff_client):
    campaign, _ = make_engaged_campaign()
    Recipient.objects.filter(campaign=campaign, email="r0@example.com").update(first_name=PAYLOAD)
    link = CampaignLink.objects.get(campaign=campaign, url=LINK_A)
    staff_client.post(follow_up_url(campaign), {"segment": "link_clickers", "link": link.pk})
    follow_up = Campaign.objects.order_by("-pk").first()
    assert LINK_A in follow_up.name
    recipients = reverse("admin:campaigns_recipient_changelist") + f"?campaign__id__exact={follow_up.pk}"
    for url in (change_url(follow_up), recipients, change_url(campaign)):
        page = staff_client.get(url).content.decode()
        assert "onerror=alert" not in page.replace("&lt;img src=x onerror=alert(1)&gt;", "") and "<2>" not in page


def test_a_viewer_sees_the_counts_but_cannot_create(viewer_client):
    campaign, _ = make_engaged_campaign()
    page = viewer_client.get(follow_up_url(campaign)).content.decode()
    assert 'id="audience-openers"' in page and "Create draft" not in page
    before = Campaign.objects.count()
    assert viewer_client.post(follow_up_url(campaign), {"segment": "openers"}).status_code == 403
    assert Campaign.objects.count() == before


def test_a_campaign_that_never_sent_offers_no_follow_up(staff_client):
    draft = CampaignFactory()
    assert 'id="follow-up-link"' not in staff_client.get(change_url(draft)).content.decode()
    assert "has not started sending" in staff_client.get(follow_up_url(draft)).content.decode()
    response = staff_client.post(follow_up_url(draft), {"segment": "openers"}, follow=True)
    assert "has not started sending" in response.content.decode()
    assert Campaign.objects.count() == 1


def test_the_campaign_page_shows_engagement_apart_with_rates_clicks_per_link_and_a_chart(staff_client):
    campaign, _ = make_engaged_campaign()
    page = staff_client.get(change_url(campaign)).content.decode()
    assert 'id="follow-up-link"' in page
    # 8 sent, none reported delivered (SMTP): rates are of the 8 sent. Opened by people: r0, r1, r6 and r3, who
    # clicked (issue 25, item 7: the same figure as the follow-up page's openers).
    assert 'id="dash-opened">4<' in page and 'id="dash-rate-opened">50.0%<' in page
    assert 'id="dash-machine_opened">1<' in page and 'id="dash-rate-machine_opened">12.5%<' in page
    assert 'id="dash-clicked">2<' in page and 'id="dash-bounced">1<' in page
    assert 'id="dash-links"' in page and "https://shop.acme.test/sale?x=1&amp;y=&lt;2&gt;" in page
    assert 'class="engagement-chart"' in page and "4 opened by people" in page
    data = staff_client.get(reverse("admin:campaigns_campaign_dashboard_json", args=[campaign.pk])).json()
    assert data["machine_opened"] == 1 and data["rates"]["clicked"] == 25.0
    assert "engagement-chart" in data["engagement_chart_svg"]
