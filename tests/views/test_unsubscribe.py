"""Unsubscribe links through real HTTP requests: RFC 8058 one-click POST, the confirmation page, forged tokens."""

import pytest
from django.core import signing
from django.test import Client

from campaigns.message import signed_links
from campaigns.models import DeliveryLog, Suppression
from tests.support.factories import DeliveryLogFactory, SuppressionFactory

pytestmark = pytest.mark.django_db
ONE_CLICK = "List-Unsubscribe=One-Click"


@pytest.fixture
def mail_client():
    """What a mailbox provider's one-click POST looks like: no cookie, no CSRF token, CSRF enforced."""
    return Client(enforce_csrf_checks=True)


def path_of(url):
    """The path of an absolute link (SITE_URL + path), to request it from the test client."""
    return "/" + url.split("/", 3)[3]


def one_click(client, log):
    return client.post(path_of(signed_links.unsubscribe_url(log.pk)), data=ONE_CLICK,
                       content_type="application/x-www-form-urlencoded")


def test_one_click_post_suppresses_at_once_without_cookie_csrf_or_redirect(mail_client):
    log = DeliveryLogFactory(status=DeliveryLog.Status.SENT)

    response = one_click(mail_client, log)

    assert response.status_code == 200  # not a redirect: RFC 8058 clients do not follow one
    assert not response.cookies
    suppression = Suppression.objects.get()
    assert (suppression.email, suppression.reason, suppression.source, suppression.campaign_id) == (
        log.email, "unsubscribed", "one-click unsubscribe", log.campaign_id)
    log.refresh_from_db()
    log.campaign.refresh_from_db()
    assert log.unsubscribed_at is not None and log.campaign.unsubscribed_count == 1


def test_repeating_the_one_click_post_is_harmless(mail_client):
    log = DeliveryLogFactory(status=DeliveryLog.Status.SENT)
    one_click(mail_client, log)
    first_at = DeliveryLog.objects.get(pk=log.pk).unsubscribed_at

    again = one_click(mail_client, log)

    assert again.status_code == 200
    assert Suppression.objects.count() == 1
    log.campaign.refresh_from_db()
    assert log.campaign.unsubscribed_count == 1
    assert DeliveryLog.objects.get(pk=log.pk).unsubscribed_at == first_at


def test_unsubscribing_again_after_staff_removed_the_address_suppresses_it_again(mail_client):
    log = DeliveryLogFactory(status=DeliveryLog.Status.SENT)
    one_click(mail_client, log)
    Suppression.objects.all().delete()

    one_click(mail_client, log)

    assert Suppression.objects.get().email == log.email
    log.campaign.refresh_from_db()
    assert log.campaign.unsubscribed_count == 1


def test_the_link_opened_in_a_browser_asks_first_and_changes_nothing(client):
    log = DeliveryLogFactory(status=DeliveryLog.Status.SENT, recipient__campaign__from_email="Acme News <news@acme.test>")

    page = client.get(path_of(signed_links.unsubscribe_url(log.pk)))

    assert page.status_code == 200
    html = page.content.decode()
    assert log.email in html and "Acme News" in html
    assert '<form method="post"' in html and 'name="List-Unsubscribe" value="One-Click"' in html
    assert not Suppression.objects.exists()
    # Pressing the button posts the form (as a browser would, with its cookies) and unsubscribes.
    done = client.post(path_of(signed_links.unsubscribe_url(log.pk)), {"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200 and "You are unsubscribed" in done.content.decode()
    assert Suppression.objects.filter(email=log.email).exists()
    assert "already off" in client.get(path_of(signed_links.unsubscribe_url(log.pk))).content.decode()


def test_one_recipients_token_cannot_unsubscribe_another(mail_client, client):
    mine = DeliveryLogFactory(status=DeliveryLog.Status.SENT)
    theirs = DeliveryLogFactory(recipient__campaign=mine.campaign, status=DeliveryLog.Status.SENT)
    # Swap the neighbour's opaque id (the first 22 characters) into my token, keeping my signature.
    token, their_token = signed_links.unsubscribe_token(mine.pk), signed_links.unsubscribe_token(theirs.pk)
    forged = [their_token[:21] + token[21:], token[:21] + their_token[21:]]
    # The same with a legacy token (links mailed before one token per recipient, signed with SECRET_KEY).
    legacy = signing.dumps(mine.pk, salt=signed_links.UNSUBSCRIBE_SALT)
    their_payload = signing.dumps(theirs.pk, salt=signed_links.UNSUBSCRIBE_SALT).split(":")[0]
    forged.append(":".join([their_payload, *legacy.split(":")[1:]]))

    for bad in forged:
        for response in (mail_client.post(f"/u/{bad}/", data=ONE_CLICK,
                                          content_type="application/x-www-form-urlencoded"),
                         client.get(f"/u/{bad}/")):
            assert response.status_code == 404
            assert "This link is not valid" in response.content.decode()
    assert not Suppression.objects.exists()
    assert not DeliveryLog.objects.filter(unsubscribed_at__isnull=False).exists()


@pytest.mark.parametrize("token", [
    "1", "MQ:1tZ0Zx:forged", "not-a-token",
    signing.dumps(1, salt="campaigns.open"),  # a valid signature for another purpose
    "A" * 38,  # the new format's shape, unsigned
], ids=["short", "forged", "not-a-token", "signed-for-opens", "unsigned"])  # fixed: parallel processes collect alike
def test_forged_or_foreign_tokens_get_a_404_and_change_nothing(mail_client, token):
    DeliveryLogFactory(status=DeliveryLog.Status.SENT)
    response = mail_client.post(f"/u/{token}/", data=ONE_CLICK, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 404
    assert not Suppression.objects.exists()


def test_a_valid_token_for_a_deleted_delivery_is_a_404(mail_client):
    log = DeliveryLogFactory(status=DeliveryLog.Status.SENT)
    url = path_of(signed_links.unsubscribe_url(log.pk))
    log.campaign.delete()
    assert mail_client.post(url, data=ONE_CLICK, content_type="application/x-www-form-urlencoded").status_code == 404
    assert not Suppression.objects.exists()


def test_the_page_shows_recipient_and_sender_text_inert(client):
    log = DeliveryLogFactory(status=DeliveryLog.Status.SENT, email="<script>alert(1)</script>@example.com",
                             recipient__campaign__from_email='"<img src=x onerror=alert(1)>" <news@acme.test>')
    html = client.get(path_of(signed_links.unsubscribe_url(log.pk))).content.decode()
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;@example.com" in html


def test_an_already_suppressed_address_is_shown_as_such(client):
    log = DeliveryLogFactory(status=DeliveryLog.Status.SENT)
    SuppressionFactory(email=log.email, reason=Suppression.Reason.BOUNCED)
    assert "already off" in client.get(path_of(signed_links.unsubscribe_url(log.pk))).content.decode()

