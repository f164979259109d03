"""The web version ({{ web_url }}) and the public archive (campaigns/views/web_version.py): signatures,
escaping of recipient data, no tracking pixel, sample data only in the archive."""

import pytest
from django.test import Client
from django.utils import timezone

from campaigns.experiments import ab_tests
from campaigns.message import signed_links
from campaigns.models import Campaign, CampaignVariant, DeliveryLog
from campaigns.sending import pipeline
from tests.support.factories import CampaignFactory, DeliveryLogFactory, RecipientFactory

HTML = ('<html><body><p>Hi {{ first_name }} from {{ city|default:"somewhere" }}</p>'
        '<a href="https://shop.example/sale">Sale</a> <a href="{{ web_url }}">View in browser</a> '
        '<a href="{{ unsubscribe_url }}">Unsubscribe</a></body></html>')


def path_of(url):
    return "/" + url.split("/", 3)[3]


@pytest.fixture
def delivery(db):
    campaign = CampaignFactory(html_body=HTML, track_engagement=True, status=Campaign.Status.COMPLETED)
    return DeliveryLogFactory(recipient__campaign=campaign, recipient__first_name='<script>alert("x")</script>',
                              recipient__data={"city": "Porto & <b>Gaia</b>"}, status=DeliveryLog.Status.SENT)


def test_the_web_version_shows_the_message_as_the_recipient_got_it_escaped(delivery):
    response = Client().get(path_of(signed_links.web_url(delivery.pk)))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Hi &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; from Porto &amp; &lt;b&gt;Gaia&lt;/b&gt;" in page
    assert "<script>" not in page and "<b>Gaia" not in page
    assert f'href="{signed_links.unsubscribe_url(delivery.pk)}"' in page
    assert f'href="{signed_links.web_url(delivery.pk)}"' in page
    assert response["Referrer-Policy"] == "no-referrer"
    assert "script-src 'self'" in response["Content-Security-Policy"]


def test_the_web_version_has_no_tracking_even_for_a_tracked_campaign(delivery):
    page = Client().get(path_of(signed_links.web_url(delivery.pk))).content.decode()
    assert "/t/o/" not in page and "/t/c/" not in page
    assert 'width="1" height="1"' not in page
    assert 'href="https://shop.example/sale"' in page
    delivery.refresh_from_db()
    assert (delivery.opened_at, delivery.clicked_at) == (None, None)  # viewing is not an open


def test_the_mailed_web_url_is_the_recipients_own(delivery):
    batch = pipeline.build_batch({"id": delivery.campaign_id, "from_email": "", "reply_to": "", "subject": "s",
                                  "html_body": HTML, "text_body": "", "updated_at": "v", "track_engagement": False},
                                 [(delivery.pk, "sending", 1, delivery.email, "Ann", "", {})])
    rendered = batch.compiled.render(batch.messages[0].context)
    assert f'href="{signed_links.web_url(delivery.pk)}"' in rendered.html


@pytest.mark.parametrize("forge", [
    lambda pk: signed_links.web_token(pk)[:-1] + ("A" if signed_links.web_token(pk)[-1] != "A" else "B"),
    lambda pk: signed_links.web_token(pk + 1)[:16] + signed_links.web_token(pk)[16:],  # another's handle
    lambda pk: signed_links.unsubscribe_token(pk),  # another kind of link
    lambda pk: signed_links.tracking_token(pk),
    lambda pk: str(pk),
    lambda pk: "A" * 32,
])
def test_forged_or_tampered_web_links_get_the_404_page(delivery, forge):
    response = Client().get(f"/w/{forge(delivery.pk)}/")
    assert response.status_code == 404
    assert "This link is not valid" in response.content.decode()


def test_a_web_link_to_a_deleted_delivery_is_404(delivery):
    url = path_of(signed_links.web_url(delivery.pk))
    DeliveryLog.objects.filter(pk=delivery.pk).delete()
    assert Client().get(url).status_code == 404


def test_the_archive_lists_only_published_campaigns_with_sample_data(delivery):
    Campaign.objects.filter(pk=delivery.campaign_id).update(public_archive=True, subject="Hello {{ first_name }}")
    hidden = CampaignFactory(html_body=HTML, status=Campaign.Status.COMPLETED, subject="Not public")
    draft = CampaignFactory(html_body=HTML, public_archive=True, subject="Draft news")
    index = Client().get("/archive/").content.decode()
    assert "Hello Sam" in index and "Not public" not in index and "Draft news" not in index
    page = Client().get(f"/archive/{delivery.campaign_id}/").content.decode()
    assert "Hi Sam from somewhere" in page  # the sample recipient, no imported data
    assert "Porto" not in page and "alert" not in page and delivery.email not in page
    assert "/t/o/" not in page and "/u/" not in page
    assert Client().get(f"/archive/{hidden.pk}/").status_code == 404
    assert Client().get(f"/archive/{draft.pk}/").status_code == 404


def test_staff_mark_a_sent_campaign_for_the_archive(admin_client, delivery):
    from django.urls import reverse
    url = reverse("admin:campaigns_campaign_change", args=[delivery.campaign_id])
    campaign = Campaign.objects.get(pk=delivery.campaign_id)
    form = {"name": campaign.name, "public_archive": "on", "_save": "Save"}
    response = admin_client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Campaign.objects.get(pk=delivery.campaign_id).public_archive


def variant_html(letter):
    return f'<p>Variant {letter} for {{{{ first_name }}}}</p><a href="{{{{ unsubscribe_url }}}}">Unsubscribe</a>'


@pytest.mark.django_db
def test_the_web_version_of_an_ab_test_shows_the_recipients_own_variant_or_the_winner():
    campaign = CampaignFactory(html_body=HTML, ab_test_percent=50, status=Campaign.Status.SCHEDULED,
                               scheduled_at=timezone.now())
    RecipientFactory.create_batch(8, campaign=campaign, first_name="Ann")
    for letter in "AB":
        CampaignVariant.objects.create(campaign=campaign, letter=letter, subject=f"Subject {letter}",
                                       html_body=variant_html(letter))
    assert pipeline.start_campaign(campaign.pk)
    b = CampaignVariant.objects.get(campaign=campaign, letter="B")
    assert ab_tests.send_winner(campaign.pk, b.pk) == "B"

    def page_of(row):
        return Client().get(path_of(signed_links.web_url(row.pk))).content.decode()

    rows = DeliveryLog.objects.filter(campaign=campaign)
    assert "Variant A for Ann" in page_of(rows.filter(variant__letter="A").first())
    assert "Variant B for Ann" in page_of(rows.filter(variant__letter="B").first())
    rest = page_of(rows.filter(variant__isnull=True).first())
    assert "Variant B for Ann" in rest and "Hi Ann from" not in rest  # the winner, not the campaign's own
