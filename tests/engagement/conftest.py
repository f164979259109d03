"""Signed SendGrid Event Webhook requests, and a campaign whose messages SendGrid accepted, for the webhook tests."""

import base64
import json
import time

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.test import Client

from campaigns.models import DeliveryLog
from tests.support.factories import CampaignFactory, DeliveryLogFactory

WEBHOOK_URL = "/webhooks/sendgrid/"


def public_key_text(private_key):
    """The key as SendGrid shows it ("Verification Key"): base64 DER SubjectPublicKeyInfo."""
    der = private_key.public_key().public_bytes(serialization.Encoding.DER,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode("ascii")


def sign(private_key, timestamp, body: bytes):
    """What SendGrid sends: base64 of the ECDSA P-256/SHA-256 signature over timestamp + raw body."""
    signature = private_key.sign(str(timestamp).encode("ascii") + body, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(signature).decode("ascii")


class SendGridSigner:
    def __init__(self):
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.client = Client(enforce_csrf_checks=True)

    @property
    def public_key(self):
        return public_key_text(self.key)

    def headers(self, body, timestamp=None, key=None):
        timestamp = int(time.time()) if timestamp is None else timestamp
        return {"HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE": sign(key or self.key, timestamp, body),
                "HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_TIMESTAMP": str(timestamp)}

    def post_raw(self, body: bytes, headers):
        return self.client.post(WEBHOOK_URL, data=body, content_type="application/json", **headers)

    def post(self, events, **options):
        body = json.dumps(events).encode()
        return self.post_raw(body, self.headers(body, **options))


@pytest.fixture
def sendgrid(settings):
    signer = SendGridSigner()
    settings.SENDGRID_WEBHOOK_PUBLIC_KEY = signer.public_key
    return signer


_event_numbers = iter(range(10**9))


def event(kind, log, **fields):
    """One event as SendGrid posts it for a delivery we sent (custom_args come back as fields)."""
    return {"email": log.email, "timestamp": int(time.time()) - 60, "event": kind,
            "sg_event_id": f"evt-{next(_event_numbers)}", "sg_message_id": f"{log.provider_message_id}.filter0001",
            "campaign_id": str(log.campaign_id), "delivery_id": str(log.pk), **fields}


@pytest.fixture
def sent_campaign(db):
    """A campaign of three recipients whose messages SendGrid accepted in one request."""
    campaign = CampaignFactory()
    logs = [DeliveryLogFactory(recipient__campaign=campaign, status=DeliveryLog.Status.SENT, provider="sendgrid",
                               provider_message_id="msg-abc123") for _ in range(3)]
    return campaign, logs
