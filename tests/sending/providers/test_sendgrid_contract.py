"""Every kind of request body the SendGrid provider builds conforms to SendGrid's published OpenAPI
description (contracts/sendgrid/tsg_mail_v3.yaml, validated with jsonschema-rs), and is exactly what the
official `sendgrid` library builds for the same mail: the two disagree about the top-level
custom_args, so the payload has none and carries the campaign id in each personalization."""

import dataclasses
import json

import pytest
from sendgrid.helpers.mail import (
    Category,
    ClickTracking,
    Content,
    CustomArg,
    From,
    Header,
    Mail,
    OpenTracking,
    Personalization,
    ReplyTo,
    Substitution,
    To,
    TrackingSettings,
)

from localservers.sendgrid_contract import contract_violations
from campaigns.sending.providers.sendgrid import SendGridProvider
from tests.sending.conftest import make_batch, make_recipients

PAYLOAD_KINDS = {
    "plain": dict(),
    "reply-to with a name": dict(reply_to="Help Desk <help@example.com>"),
    "reply-to without a name": dict(reply_to="help@example.com"),
    "sender without a name": dict(from_email="news@example.com"),
    "non-ASCII sender name": dict(from_email="Société Générale <news@example.com>"),
    "no categories": dict(categories=()),
    "html only": dict(text=""),
    "no merge tags": dict(subject="Hello", html="<p>Hello</p>", text="Hello"),
}


def payload_for(count=3, tracking=False, recipients=None, **batch_options):
    batch = make_batch(recipients or make_recipients(count), **batch_options)
    if tracking:
        batch = dataclasses.replace(batch, tracking=object())
    return json.loads(SendGridProvider(api_key="key").build_payload(batch))  # the bytes sent, decoded


def library_payload(payload):
    """The same mail built with the official library's helpers."""
    mail = Mail()
    mail.from_email = From(payload["from"]["email"], payload["from"].get("name"))
    mail.subject = payload["subject"]
    for block in payload["content"]:
        mail.add_content(Content(block["type"], block["value"]))
    for personalization in reversed(payload["personalizations"]):  # the library prepends each one
        built = Personalization()
        for to in personalization["to"]:
            built.add_to(To(to["email"], to.get("name")))
        for key, value in personalization.get("substitutions", {}).items():
            built.add_substitution(Substitution(key, value))
        for key, value in personalization["custom_args"].items():
            built.add_custom_arg(CustomArg(key, value))
        for key, value in personalization.get("headers", {}).items():
            built.add_header(Header(key, value))
        mail.add_personalization(built)
    if "reply_to" in payload:
        mail.reply_to = ReplyTo(payload["reply_to"]["email"], payload["reply_to"].get("name"))
    for category in payload.get("categories", ()):
        mail.add_category(Category(category))
    tracking = payload["tracking_settings"]
    mail.tracking_settings = TrackingSettings(
        ClickTracking(tracking["click_tracking"]["enable"], tracking["click_tracking"]["enable_text"]),
        OpenTracking(tracking["open_tracking"]["enable"]))
    return mail.get()


@pytest.mark.parametrize("options", PAYLOAD_KINDS.values(), ids=PAYLOAD_KINDS.keys())
@pytest.mark.parametrize("tracking", [False, True], ids=["untracked", "tracked"])
def test_every_payload_kind_conforms_to_the_published_description_and_to_the_official_library(options, tracking):
    payload = payload_for(tracking=tracking, **options)

    assert contract_violations(payload) == []
    assert library_payload(payload) == payload


def test_a_full_batch_of_1000_with_unnamed_recipients_and_an_internationalised_domain_conforms():
    recipients = make_recipients(1000)
    recipients[0] = (1, "anon@example.com", "", "", {"code": "1"})
    recipients[1] = (2, "jurgen@bücher.example", "Jürgen", "Müller", {"code": "Grüße"})

    payload = payload_for(recipients=recipients, reply_to="help@example.com")

    assert contract_violations(payload) == []
    assert payload["personalizations"][0]["to"] == [{"email": "anon@example.com"}]
    assert payload["personalizations"][1]["to"][0]["email"] == "jurgen@xn--bcher-kva.example"


def test_the_campaign_id_travels_in_each_personalization_not_in_the_top_level_custom_args():
    payload = payload_for(count=2, campaign_id=77)

    assert "custom_args" not in payload
    assert [p["custom_args"]["campaign_id"] for p in payload["personalizations"]] == ["77", "77"]


def test_the_description_refuses_what_the_provider_used_to_send():
    payload = payload_for(count=1)
    payload["custom_args"] = {"campaign_id": "42"}  # the object the library builds at the top level

    assert contract_violations(payload) == [("custom_args", '{"campaign_id":"42"} is not of type "string"')]
