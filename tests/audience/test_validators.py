"""One check of an email address wherever one is accepted (campaigns.audience.validators.validate_email_address)."""

from io import StringIO

import pytest
from django.contrib.messages import get_messages
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.urls import reverse

from campaigns.models import Campaign, Suppression
from tests.support.factories import CampaignFactory, UserFactory

# Each with whether it is refused; the first five are where Django's validator and email-validator disagree.
ADDRESSES = [
    ("ann@localhost", True),  # no dot in the domain
    ("ann@[127.0.0.1]", True),  # a domain literal
    ("ann@example.invalid", True),  # a special-use domain
    ('"ann lee"@example.com', True),  # a quoted local part
    ("josé@example.com", False),  # an internationalised local part (SMTPUTF8)
    ("not-an-address", True),
    ("qa@example.com", False),
]


def refused_by_the_admin_test_send(client, campaign, address):
    url = reverse("admin:campaigns_campaign_action", args=[campaign.pk, "send_test_email"])
    response = client.post(url, {"addresses": address})
    return any(m.message.startswith("Test email: Not an email address") for m in get_messages(response.wsgi_request))


def refused_by_the_command_test_send(campaign, address):
    try:
        call_command("send_test_email", campaign.pk, address, stdout=StringIO())
    except CommandError as error:
        assert "Not an email address" in str(error)
        return True
    return False


@pytest.mark.django_db
@pytest.mark.parametrize("address, refused", ADDRESSES)
def test_the_admin_and_the_command_test_send_accept_and_refuse_the_same_addresses(
        client, smtp_sink_server, no_sendgrid, address, refused):
    client.force_login(UserFactory(is_superuser=True))
    campaign = CampaignFactory()
    assert refused_by_the_admin_test_send(client, campaign, address) == refused
    assert refused_by_the_command_test_send(campaign, address) == refused


def refused_as_reply_to(address):
    try:
        Campaign(name="x", subject="x", html_body="x", reply_to=address).clean_fields(
            exclude=[f.name for f in Campaign._meta.fields if f.name != "reply_to"])
    except ValidationError:
        return True
    return False


def refused_by_the_suppression_form(client, address):
    client.post(reverse("admin:campaigns_suppression_add"), {"email": address, "reason": "manual", "source": ""})
    return not Suppression.objects.filter(email=address.lower()).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("address, refused", ADDRESSES)
def test_a_reply_to_address_and_a_suppressed_address_follow_the_same_rule(client, address, refused):
    client.force_login(UserFactory(is_superuser=True))
    assert refused_as_reply_to(address) == refused
    assert refused_by_the_suppression_form(client, address) == refused
