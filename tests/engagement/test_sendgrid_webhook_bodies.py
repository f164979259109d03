"""Issue 13, item 10: a correctly signed webhook body of the wrong shape is a 400 and changes nothing.

Before the fix, deep nesting raised RecursionError (a 500), and Infinity or 1e999 timestamps were
stored (or broke PostgreSQL's to_timestamp, another 500).
"""

import json

import pytest

from campaigns.engagement import sendgrid_webhook
from tests.engagement.conftest import event
from tests.engagement.test_sendgrid_webhook import state

pytestmark = pytest.mark.django_db


def post_signed(sendgrid, body: bytes):
    return sendgrid.post_raw(body, sendgrid.headers(body))


def with_event(sent_campaign, text_of_timestamp=None, **fields):
    """A signed body of one otherwise genuine event; TEXT_OF_TIMESTAMP is spliced in raw."""
    _, (ann, *_) = sent_campaign
    body = json.dumps([event("open", ann, **fields)])
    if text_of_timestamp is not None:
        body = body.replace('"timestamp": ', f'"timestamp": {text_of_timestamp}, "was": ', 1)
    return body.encode()


@pytest.mark.parametrize("timestamp", ["Infinity", "-Infinity", "NaN", "1e999", "-1e999", "1e300", "-5",
                                       "99999999999999999999999"])
def test_non_finite_or_impossible_timestamps_are_refused(sendgrid, sent_campaign, timestamp):
    before = state()
    response = post_signed(sendgrid, with_event(sent_campaign, timestamp))
    assert response.status_code == 400, response.content
    assert state() == before


@pytest.mark.parametrize("depth", [5, 50, 100_000])
def test_deeply_nested_bodies_are_refused(sendgrid, sent_campaign, depth):
    before = state()
    nested = "[" * depth + "]" * depth
    body = with_event(sent_campaign).replace(b'"event": "open"', b'"event": "open", "deep": ' + nested.encode())
    response = post_signed(sendgrid, body)
    assert response.status_code == 400, response.content
    assert "nested too deeply" in response.json()["error"]
    assert state() == before


@pytest.mark.parametrize("field, value", [
    ("timestamp", "1700000000"), ("timestamp", True), ("timestamp", None), ("timestamp", [1]),
    ("event", ["open"]), ("event", 1), ("sg_event_id", {"id": 1}), ("email", 5), ("sg_message_id", 1.5),
    ("reason", ["x"]), ("delivery_id", True), ("delivery_id", 1.5), ("campaign_id", [1]),
])
def test_wrong_types_are_refused(sendgrid, sent_campaign, field, value):
    before = state()
    response = post_signed(sendgrid, with_event(sent_campaign, **{field: value}))
    assert response.status_code == 400, response.content
    assert state() == before


@pytest.mark.parametrize("body", [b'[1]', b'["open"]', b'[null]', b'[[]]', b'{"event": "open"}', b'"x"', b"1"])
def test_bodies_that_are_not_an_array_of_objects_are_refused(sendgrid, sent_campaign, body):
    before = state()
    assert post_signed(sendgrid, body).status_code == 400
    assert state() == before


def test_oversized_arrays_are_refused(sendgrid, sent_campaign):
    _, (ann, *_) = sent_campaign
    before = state()
    too_many_events = json.dumps([event("processed", ann) for _ in range(sendgrid_webhook.MAX_EVENTS + 1)]).encode()
    long_category = json.dumps([event("open", ann, category=["c"] * (sendgrid_webhook.MAX_ITEMS + 1))]).encode()
    many_fields = json.dumps([event("open", ann, **{f"arg{i}": "v" for i in range(sendgrid_webhook.MAX_KEYS)})]).encode()
    for body in (too_many_events, long_category, many_fields):
        response = post_signed(sendgrid, body)
        assert response.status_code == 400, response.content
        assert "too many" in response.json()["error"]
    assert state() == before


def test_one_bad_event_refuses_the_whole_batch(sendgrid, sent_campaign):
    _, (ann, bob, _) = sent_campaign
    before = state()
    body = json.dumps([event("open", bob), event("open", ann, timestamp="soon")]).encode()
    assert post_signed(sendgrid, body).status_code == 400
    assert state() == before


def test_what_sendgrid_really_sends_is_still_applied(sendgrid, sent_campaign):
    """Nested values SendGrid does send (category arrays, the pool object, float timestamps) pass."""
    campaign, (ann, *_) = sent_campaign
    response = sendgrid.post([event("open", ann, category=["news", "2026"], pool={"name": "main", "id": 7},
                                    timestamp=1764600000.25, useragent="Mozilla/5.0", ip="203.0.113.7",
                                    sg_machine_open=False)])
    assert response.status_code == 200
    assert response.json()["applied"] == 1
