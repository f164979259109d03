"""Batches built the way the pipeline builds them, and helpers for provider tests.

The local servers come from tests/conftest.py (`smtp_sink_server`, here also `sink`, and
`fake_sendgrid`).
"""

import time

import pytest

from campaigns.message.rendering import compile_campaign, recipient_context
from campaigns.sending.providers.base import Batch, OutgoingMessage
from localservers.ports import free_port


@pytest.fixture
def sink(smtp_sink_server):
    """The session's SMTP sink (tests/conftest.py), under the short name these tests use."""
    return smtp_sink_server


@pytest.fixture
def closed_port():
    """A port nothing listens on: connections to it are refused."""
    return free_port()


class SleepRecorder:
    """Stands in for time.sleep: records each wait instead of waiting."""

    def __init__(self):
        self.waits = []

    def __call__(self, seconds):
        self.waits.append(seconds)


@pytest.fixture
def no_sleep():
    return SleepRecorder()


SUBJECT = 'News for {{ first_name|default:"you" }}'
HTML = ('<p>Hi {{ first_name|default:"there" }} {{ last_name }}, your code is <b>{{ code }}</b>.</p>'
        '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>')
TEXT = "Hi {{ first_name|default:\"there\" }}, your code is {{ code }}.\nUnsubscribe: {{ unsubscribe_url }}\n"


def unsubscribe_url(delivery_id):
    return f"https://mail.example.com/u/{delivery_id}/signed-token"


def make_recipients(count, start=1):
    """(delivery_id, email, first_name, last_name, data) rows like the pipeline's claim returns."""
    return [(start + i, f"user{start + i}@example.com", f"User{start + i}", "Smith", {"code": f"C{start + i:04d}"})
            for i in range(count)]


def make_batch(recipients, campaign_id=42, from_email="Acme News <news@example.com>", reply_to="",
               subject=SUBJECT, html=HTML, text=TEXT, categories=("campaign-42",)):
    compiled = compile_campaign(subject, html, text)
    messages = [
        OutgoingMessage(delivery_id, email,
                        recipient_context(email, first, last, data, unsubscribe_url(delivery_id)))
        for delivery_id, email, first, last, data in recipients
    ]
    return Batch(campaign_id=campaign_id, from_email=from_email, reply_to=reply_to, compiled=compiled,
                 messages=messages, categories=tuple(categories))


@pytest.fixture
def batch_of():
    def build(count, **kwargs):
        return make_batch(make_recipients(count), **kwargs)
    return build


def wait_until(predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)
