"""Which delivery a bounce is about: the signed token first, then the returned Message-ID (with the
address when several deliveries share it), then the address's latest sent delivery in the window."""

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.engagement.bounce_mail import matching, reading
from campaigns.message.signed_links import bounce_token
from campaigns.models import DeliveryLog
from tests.support.bounces import dsn
from tests.support.factories import CampaignFactory, DeliveryLogFactory

pytestmark = pytest.mark.django_db


def sent(email, **fields):
    fields = {"status": DeliveryLog.Status.SENT, "sent_at": timezone.now() - timedelta(minutes=5), **fields}
    return DeliveryLogFactory(recipient__email=email, recipient__campaign=CampaignFactory(), **fields)


def matched(raw):
    found = matching.match([reading.read(raw)])[0]
    return {position: (pk, how) for position, (pk, _, _, how) in found.items()}


def test_the_token_names_the_delivery_before_the_message_id_and_the_address():
    older = sent("ann@example.org", provider_message_id="<a@x>")
    newest = sent("ann@example.org")
    assert matched(dsn("ann@example.org", token=bounce_token(older.pk), message_id="<other@x>")) == {
        0: (older.pk, "bounce token")}
    assert matched(dsn("ann@example.org", message_id="<a@x>")) == {0: (older.pk, "Message-ID")}
    assert matched(dsn("ann@example.org", message_id="<unknown@x>")) == {
        0: (newest.pk, "address, latest sent delivery")}


def test_a_message_id_shared_by_a_request_s_recipients_is_narrowed_by_the_address():
    ann = sent("ann@example.org", provider_message_id="sendgrid-request-1")
    sent("bob@example.org", provider_message_id="sendgrid-request-1")
    assert matched(dsn("ann@example.org", message_id="sendgrid-request-1")) == {0: (ann.pk, "Message-ID")}


def test_only_sent_deliveries_within_the_window_match_by_address(settings):
    settings.BOUNCE_MATCH_WINDOW_DAYS = 14
    old = sent("ann@example.org")
    DeliveryLog.objects.filter(pk=old.pk).update(sent_at=timezone.now() - timedelta(days=15))
    sent("bob@example.org", status=DeliveryLog.Status.FAILED)
    assert matched(dsn("ann@example.org", message_id="<x@x>")) == {}
    assert matched(dsn("bob@example.org", message_id="<x@x>")) == {}


def test_tokens_that_do_not_verify_are_ignored():
    ann = sent("ann@example.org")
    token = bounce_token(ann.pk)
    forged = token[:-5] + ("a" if token[-5] != "a" else "b") + token[-4:]  # a tag character changed
    assert matching.delivery_ids_of([token, forged, "short", ""]) == [ann.pk]
