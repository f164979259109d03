"""The SendGrid provider against the fake SendGrid API: what reaches the server, and the result or
typed error the pipeline gets back."""

import dataclasses
import json
from email.utils import parsedate_to_datetime

import pytest

from campaigns.exceptions import ProviderRefused, ProviderUnavailable, RateLimited, RecipientsRejected, TemporaryError
from campaigns.sending.providers.base import Outcome
from campaigns.sending.providers.sendgrid import SendGridProvider
from tests.sending.conftest import make_batch, make_recipients, unsubscribe_url


def test_sendgrid_sends_a_batch_of_200_as_one_request_with_a_personalization_each(fake_sendgrid, batch_of):
    batch = batch_of(200, reply_to="Help Desk <help@example.com>")

    results = SendGridProvider().send_batch(batch)

    stats = fake_sendgrid.stats()
    assert stats == {"requests_by_status": {"202": 1}, "personalizations_accepted": 200, "hung_recipients": [],
                     "seen_recipients": stats["seen_recipients"]}
    assert sorted(stats["seen_recipients"]) == sorted(message.email for message in batch.messages)
    records = {record["to"][0]: record for record in fake_sendgrid.records()}
    assert len(records) == 200
    message_ids = {record["message_id"] for record in records.values()}
    assert len(message_ids) == 1
    assert [r.outcome for r in results] == [Outcome.SENT] * 200
    assert {r.message_id for r in results} == message_ids
    for message in batch.messages:
        record = records[message.email]
        code = message.context["code"]
        assert record["custom_args"] == {"campaign_id": "42", "delivery_id": str(message.delivery_id)}
        assert record["rendered"]["subject"] == f"News for User{message.delivery_id}"
        assert record["rendered"]["text"] == (
            f"Hi User{message.delivery_id}, your code is {code}.\n"
            f"Unsubscribe: {unsubscribe_url(message.delivery_id)}\n"
        )
        assert f"your code is <b>{code}</b>" in record["rendered"]["html"]
        assert f'href="{unsubscribe_url(message.delivery_id)}"' in record["rendered"]["html"]


def test_sendgrid_personalizations_carry_one_click_unsubscribe_headers(settings, batch_of):
    settings.UNSUBSCRIBE_MAILTO = "unsubscribe@example.com"
    batch = batch_of(2, reply_to="help@example.com")

    payload = json.loads(SendGridProvider(api_key="key").build_payload(batch))

    first = payload["personalizations"][0]
    assert first["to"] == [{"email": "user1@example.com", "name": "User1 Smith"}]
    assert first["headers"] == {
        "List-Unsubscribe": f"<{unsubscribe_url(1)}>, <mailto:unsubscribe@example.com?subject=unsubscribe>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    assert payload["from"] == {"email": "news@example.com", "name": "Acme News"}
    assert payload["reply_to"] == {"email": "help@example.com"}
    assert payload["categories"] == ["campaign-42"]
    assert [block["type"] for block in payload["content"]] == ["text/plain", "text/html"]
    assert payload["tracking_settings"]["click_tracking"]["enable"] is False  # the campaign's switch is off


def test_sendgrid_tracks_opens_and_clicks_itself_when_the_campaign_tracks(batch_of):
    batch = dataclasses.replace(batch_of(1), tracking=object())  # SendGrid ignores the SMTP-side links

    payload = json.loads(SendGridProvider(api_key="key").build_payload(batch))

    assert payload["tracking_settings"]["click_tracking"]["enable"] is True
    assert payload["tracking_settings"]["open_tracking"]["enable"] is True


def test_sendgrid_escapes_recipient_data_in_the_html_part_only(fake_sendgrid):
    batch = make_batch([(7, "eve@example.com", "<script>x</script>", "O'Hara", {"code": "a&b"})])

    SendGridProvider().send_batch(batch)

    (record,) = fake_sendgrid.records()
    assert "&lt;script&gt;x&lt;/script&gt; O&#x27;Hara" in record["rendered"]["html"]
    assert "<script>" not in record["rendered"]["html"]
    assert "your code is <b>a&amp;b</b>" in record["rendered"]["html"]
    assert record["rendered"]["text"].startswith("Hi <script>x</script>, your code is a&b.")


def test_sendgrid_wrong_key_is_provider_unavailable(fake_sendgrid, batch_of):
    with pytest.raises(ProviderUnavailable) as raised:
        SendGridProvider(api_key="SG.wrong").send_batch(batch_of(3))

    assert raised.value.status == 401
    assert raised.value.provider == "sendgrid"
    assert raised.value.payload["personalizations_count"] == 3
    assert fake_sendgrid.records() == []


def test_sendgrid_429_is_rate_limited_for_the_seconds_its_reset_names(fake_sendgrid, batch_of):
    fake_sendgrid.fail("429", count=1, reset_after=5)

    with pytest.raises(RateLimited) as raised:
        SendGridProvider().send_batch(batch_of(3))

    headers = raised.value.response.headers
    reset, date = float(headers["x-ratelimit-reset"]), parsedate_to_datetime(headers["DATE"]).timestamp()
    assert raised.value.retry_after == reset - date and 5 <= raised.value.retry_after <= 7


@pytest.mark.parametrize("mode", ["500", "503"])
def test_sendgrid_503_or_500_with_sendgrids_error_body_is_temporary(fake_sendgrid, batch_of, mode):
    fake_sendgrid.fail(mode, count=1)

    with pytest.raises(TemporaryError) as raised:
        SendGridProvider().send_batch(batch_of(3))

    assert raised.value.status == int(mode)


@pytest.mark.parametrize("mode", ["502", "504"])
@pytest.mark.parametrize("after_accepting", [False, True], ids=["before", "after-accepting"])
def test_sendgrid_gateway_502_or_504_is_unknown_because_sendgrid_may_have_taken_the_request(
        fake_sendgrid, batch_of, mode, after_accepting):
    fake_sendgrid.fail(mode, count=1, after_accepting=after_accepting)

    results = SendGridProvider().send_batch(batch_of(4))

    assert [r.outcome for r in results] == [Outcome.UNKNOWN] * 4
    assert all(f"SendGrid answered {mode}" in r.error for r in results)
    assert len(fake_sendgrid.records()) == (4 if after_accepting else 0)


@pytest.mark.parametrize("mode, status", [("400", 400), ("401", 401), ("403", 403), ("413", 413)])
def test_sendgrid_refusal_of_the_request_as_a_whole_is_a_provider_problem(fake_sendgrid, batch_of, mode, status):
    fake_sendgrid.fail(mode, count=1)

    with pytest.raises(ProviderRefused) as raised:
        SendGridProvider().send_batch(batch_of(3))

    assert raised.value.status == status
    assert raised.value.results == []
    assert raised.value.response.body  # the answer travels with the error, for the logs and the pause reason


def test_sendgrid_unreachable_is_temporary(settings, closed_port, batch_of):
    settings.SENDGRID_API_HOST = f"http://127.0.0.1:{closed_port}"

    with pytest.raises(TemporaryError, match="unreachable"):
        SendGridProvider(api_key="key").send_batch(batch_of(3))


def test_sendgrid_400_names_the_rejected_personalization(fake_sendgrid):
    recipients = make_recipients(5)
    recipients[3] = (4, "not-an-address", "Bad", "Address", {"code": "X"})

    with pytest.raises(RecipientsRejected) as raised:
        SendGridProvider().send_batch(make_batch(recipients))

    assert list(raised.value.reasons) == [3]
    assert "personalizations.3.to.0.email" in raised.value.reasons[3]
    assert "valid address" in raised.value.reasons[3]
    assert fake_sendgrid.records() == []


@pytest.mark.parametrize("hang_seconds, timeout", [(5, 0.5), (0.2, 10)], ids=["read-timeout", "closed-unanswered"])
def test_sendgrid_without_an_answer_after_the_request_went_out_is_unknown(
        fake_sendgrid, settings, batch_of, hang_seconds, timeout):
    settings.SENDGRID_TIMEOUT_SECONDS = timeout
    fake_sendgrid.fail("hang", count=1, hang_seconds=hang_seconds)

    results = SendGridProvider().send_batch(batch_of(4))

    assert [r.outcome for r in results] == [Outcome.UNKNOWN] * 4
    assert all("did not answer" in r.error for r in results)
    assert fake_sendgrid.stats()["requests_by_status"] == {"hang": 1}
