"""The provider chain against both local servers: retries, rate-limit waits, partial rejections and
fallback, and that nobody is mailed twice on the way."""

import logging
from collections import Counter

import pytest

from campaigns.exceptions import ProviderError, ProviderRefused, ProviderUnavailable
from campaigns.sending.chain import RetryPolicy, send_with_fallback
from campaigns.sending.providers.base import Outcome
from campaigns.sending.providers.sendgrid import SendGridProvider
from campaigns.sending.providers.smtp import SmtpProvider
from tests.sending.conftest import make_batch, make_recipients
from tests.support.scripted_smtp import scripted_smtp  # noqa: F401 (fixture)


@pytest.fixture
def providers(fake_sendgrid, sink):
    return [SendGridProvider(), SmtpProvider()]


def assert_each_mailed_once(batch, recipients):
    assert Counter(recipients) == Counter(m.email for m in batch.messages)


def test_default_chain_uses_only_configured_providers(settings, sink, batch_of):
    settings.SENDGRID_API_KEY = ""
    batch = batch_of(3)

    provider, results = send_with_fallback(batch)

    assert provider == "smtp"
    assert [r.outcome for r in results] == [Outcome.SENT] * 3


def test_no_configured_provider_raises(settings, batch_of):
    settings.SENDGRID_API_KEY = ""
    settings.EMAIL_HOST = ""

    with pytest.raises(ProviderUnavailable, match="No mail provider is configured"):
        send_with_fallback(batch_of(1))


def test_sendgrid_5xx_twice_then_recovery_sends_everyone_once_through_sendgrid(
        providers, fake_sendgrid, sink, no_sleep, batch_of):
    fake_sendgrid.fail("500", count=2)
    batch = batch_of(50)

    provider, results = send_with_fallback(batch, providers, sleep=no_sleep)

    assert provider == "sendgrid"
    assert [r.outcome for r in results] == [Outcome.SENT] * 50
    assert fake_sendgrid.stats()["requests_by_status"] == {"500": 2, "202": 1}
    assert_each_mailed_once(batch, fake_sendgrid.recipients())
    assert sink.messages() == []
    # Exponential backoff with full jitter: the n-th wait is at most 2**(n-1) seconds.
    assert len(no_sleep.waits) == 2
    assert 0 <= no_sleep.waits[0] <= 1 and 0 <= no_sleep.waits[1] <= 2


def test_sendgrid_5xx_for_good_falls_back_to_smtp_after_the_retries(providers, fake_sendgrid, sink, no_sleep, batch_of):
    fake_sendgrid.fail("503")
    batch = batch_of(30)

    provider, results = send_with_fallback(batch, providers, sleep=no_sleep)

    assert provider == "smtp"
    assert [r.outcome for r in results] == [Outcome.SENT] * 30
    assert fake_sendgrid.stats()["requests_by_status"] == {"503": 4}  # the first try and 3 retries
    assert fake_sendgrid.records() == []
    assert_each_mailed_once(batch, sink.recipients())
    assert len(no_sleep.waits) == 3


def test_sendgrid_unreachable_falls_back_to_smtp(fake_sendgrid, settings, closed_port, sink, no_sleep, batch_of):
    settings.SENDGRID_API_HOST = f"http://127.0.0.1:{closed_port}"
    batch = batch_of(5)

    provider, results = send_with_fallback(batch, [SendGridProvider(), SmtpProvider()], sleep=no_sleep)

    assert provider == "smtp"
    assert_each_mailed_once(batch, sink.recipients())


@pytest.mark.parametrize("how", ["wrong key", "403"])
def test_sendgrid_auth_error_falls_back_at_once_and_logs_the_campaign(
        fake_sendgrid, sink, settings, no_sleep, batch_of, caplog, how):
    if how == "wrong key":
        settings.SENDGRID_API_KEY = "SG.revoked"
    else:
        fake_sendgrid.fail("403")
    batch = batch_of(10, campaign_id=77)

    with caplog.at_level(logging.ERROR, logger="campaigns.sending"):
        provider, results = send_with_fallback(batch, [SendGridProvider(), SmtpProvider()], sleep=no_sleep)

    assert provider == "smtp"
    assert [r.outcome for r in results] == [Outcome.SENT] * 10
    assert sum(fake_sendgrid.stats()["requests_by_status"].values()) == 1
    assert no_sleep.waits == []
    assert_each_mailed_once(batch, sink.recipients())
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("Campaign 77" in e and "configuration error" in e and "sendgrid" in e for e in errors)


def test_sendgrid_429_waits_for_the_reset_then_sends(providers, fake_sendgrid, sink, no_sleep, batch_of):
    fake_sendgrid.fail("429", count=1, reset_after=3)
    batch = batch_of(20)

    provider, results = send_with_fallback(batch, providers, sleep=no_sleep)

    assert provider == "sendgrid"
    assert [r.outcome for r in results] == [Outcome.SENT] * 20
    # The reset is whole seconds, 3 s ahead rounded up, counted from the whole-second Date header.
    assert len(no_sleep.waits) == 1 and 3 <= no_sleep.waits[0] <= 5
    assert fake_sendgrid.stats()["requests_by_status"] == {"429": 1, "202": 1}
    assert_each_mailed_once(batch, fake_sendgrid.recipients())


def test_sendgrid_lower_case_429_reset_is_honored_on_sendgrid_without_falling_back(
        providers, fake_sendgrid, sink, no_sleep, batch_of):
    fake_sendgrid.fail("429", count=2, reset_after=2, header_case="lower")
    batch = batch_of(10)

    provider, results = send_with_fallback(batch, providers, sleep=no_sleep)

    assert provider == "sendgrid"
    assert [r.outcome for r in results] == [Outcome.SENT] * 10
    # No retry before the reset: each wait is at least the 2 s it named (not a short jittered backoff).
    assert len(no_sleep.waits) == 2 and all(2 <= wait <= 4 for wait in no_sleep.waits)
    assert fake_sendgrid.stats()["requests_by_status"] == {"429": 2, "202": 1}
    assert_each_mailed_once(batch, fake_sendgrid.recipients())
    assert sink.messages() == []


def test_sendgrid_429_reset_is_read_against_sendgrids_clock_not_the_workers(
        providers, fake_sendgrid, sink, no_sleep, batch_of):
    # SendGrid's clock an hour ahead of ours: its reset is 2 s after its own Date, not an hour away.
    fake_sendgrid.fail("429", count=1, reset_after=2, clock_offset=3600)
    batch = batch_of(5)

    provider, _ = send_with_fallback(batch, providers, sleep=no_sleep)

    assert provider == "sendgrid"
    assert len(no_sleep.waits) == 1 and 2 <= no_sleep.waits[0] <= 4
    assert_each_mailed_once(batch, fake_sendgrid.recipients())


def test_sendgrid_429_beyond_the_wait_budget_falls_back_at_once(providers, fake_sendgrid, sink, no_sleep, batch_of):
    fake_sendgrid.fail("429", reset_after=3600)
    batch = batch_of(5)

    provider, _ = send_with_fallback(batch, providers, sleep=no_sleep, policy=RetryPolicy(max_rate_limit_wait=60))

    assert provider == "smtp"
    assert no_sleep.waits == []  # waiting 60 s for a reset an hour away would only earn another 429
    assert fake_sendgrid.stats()["requests_by_status"] == {"429": 1}
    assert_each_mailed_once(batch, sink.recipients())


def test_sendgrid_429s_wait_on_sendgrid_until_the_batch_budget_is_spent_then_fall_back(
        providers, fake_sendgrid, sink, no_sleep, batch_of):
    fake_sendgrid.fail("429", reset_after=20)
    batch = batch_of(5)

    provider, _ = send_with_fallback(batch, providers, sleep=no_sleep, policy=RetryPolicy(max_rate_limit_wait=60))

    assert provider == "smtp"
    assert len(no_sleep.waits) == 2 and sum(no_sleep.waits) <= 60  # a third wait of 20+ s would pass 60
    assert fake_sendgrid.stats()["requests_by_status"] == {"429": 3}
    assert_each_mailed_once(batch, sink.recipients())


@pytest.mark.parametrize("hang_seconds, timeout", [(5, 0.5), (0.2, 10)], ids=["read-timeout", "closed-unanswered"])
def test_sendgrid_silence_after_the_request_is_unknown_and_never_resent(
        providers, fake_sendgrid, sink, settings, no_sleep, batch_of, hang_seconds, timeout):
    settings.SENDGRID_TIMEOUT_SECONDS = timeout
    fake_sendgrid.fail("hang", count=1, hang_seconds=hang_seconds)

    provider, results = send_with_fallback(batch_of(8), providers, sleep=no_sleep)

    assert provider == "sendgrid"
    assert [r.outcome for r in results] == [Outcome.UNKNOWN] * 8
    assert fake_sendgrid.stats()["requests_by_status"] == {"hang": 1}
    assert sink.messages() == []
    assert no_sleep.waits == []


def test_sendgrid_400_fails_only_the_bad_recipient_and_resends_the_rest_once(providers, fake_sendgrid, sink, no_sleep):
    recipients = make_recipients(200)
    recipients[3] = (4, "not-an-address", "Bad", "Address", {"code": "X"})
    batch = make_batch(recipients)

    provider, results = send_with_fallback(batch, providers, sleep=no_sleep)

    assert provider == "sendgrid"
    assert [r.delivery_id for r in results] == [m.delivery_id for m in batch.messages]
    assert results[3].outcome == Outcome.FAILED
    assert "personalizations.3.to.0.email" in results[3].error and not results[3].bounced
    assert [r.outcome for i, r in enumerate(results) if i != 3] == [Outcome.SENT] * 199
    assert fake_sendgrid.stats()["requests_by_status"] == {"400": 1, "202": 1}
    others = [m for m in batch.messages if m.email != "not-an-address"]
    assert Counter(fake_sendgrid.recipients()) == Counter(m.email for m in others)
    delivery_ids = {record["to"][0]: record["custom_args"]["delivery_id"] for record in fake_sendgrid.records()}
    assert delivery_ids == {m.email: str(m.delivery_id) for m in others}
    assert sink.messages() == []


@pytest.mark.parametrize("mode", ["400", "413"])
def test_sendgrid_400_about_the_whole_request_or_413_is_a_configuration_error_that_falls_back_to_smtp(
        providers, fake_sendgrid, sink, no_sleep, batch_of, mode):
    fake_sendgrid.fail(mode)
    batch = batch_of(5)

    provider, results = send_with_fallback(batch, providers, sleep=no_sleep)

    assert provider == "smtp"
    assert [r.outcome for r in results] == [Outcome.SENT] * 5
    assert fake_sendgrid.stats()["requests_by_status"] == {mode: 1}  # no retry: it would be refused again
    assert no_sleep.waits == []
    assert_each_mailed_once(batch, sink.recipients())


def test_sendgrid_400_about_the_whole_request_with_no_provider_left_is_a_provider_problem(
        fake_sendgrid, no_sleep, batch_of):
    batch = batch_of(5, from_email="Acme <not an address>")

    with pytest.raises(ProviderRefused) as raised:
        send_with_fallback(batch, [SendGridProvider()], sleep=no_sleep)

    assert "from.email" in str(raised.value) and "configuration error" in str(raised.value)
    assert raised.value.results == []  # nobody failed: the request, not its recipients, was wrong
    assert fake_sendgrid.records() == []


@pytest.mark.parametrize("mode", ["502", "504"])
def test_sendgrid_gateway_answer_after_sendgrid_took_the_request_is_unknown_never_retried_nor_sent_over_smtp(
        providers, fake_sendgrid, sink, no_sleep, batch_of, mode):
    fake_sendgrid.fail(mode, count=1, after_accepting=True)
    batch = batch_of(8)

    provider, results = send_with_fallback(batch, providers, sleep=no_sleep)

    assert provider == "sendgrid"
    assert [r.outcome for r in results] == [Outcome.UNKNOWN] * 8
    assert fake_sendgrid.stats()["requests_by_status"] == {f"{mode} after accepting": 1}
    assert_each_mailed_once(batch, fake_sendgrid.recipients())
    assert sink.messages() == [] and no_sleep.waits == []


def duplicate_pairs_batch(pairs, others):
    """A batch whose addresses repeat in PAIRS (case aside): the fake names only the first repeat it
    meets per request, so each request after a rejection is refused again for a new one."""
    recipients = []
    for n in range(pairs):
        recipients += [(1000 + n, f"twin{n}@example.com", "Twin", "A", {"code": "T"}),
                       (2000 + n, f"TWIN{n}@example.com", "Twin", "B", {"code": "T"})]
    return make_batch(recipients + make_recipients(others))


def test_sendgrid_400s_naming_new_personalizations_each_time_fail_only_those_and_send_the_rest(
        providers, fake_sendgrid, sink, no_sleep):
    batch = duplicate_pairs_batch(pairs=3, others=20)

    provider, results = send_with_fallback(batch, providers, sleep=no_sleep)

    assert provider == "sendgrid"
    failed = {r.delivery_id for r in results if r.outcome == Outcome.FAILED}
    assert failed == {2000, 2001, 2002}
    assert all(r.outcome == Outcome.SENT for r in results if r.delivery_id not in failed)
    assert fake_sendgrid.stats()["requests_by_status"] == {"400": 3, "202": 1}
    sent_to = Counter(m.email for m in batch.messages if m.delivery_id not in failed)
    assert Counter(fake_sendgrid.recipients()) == sent_to
    assert sink.messages() == []


def test_sendgrid_400s_past_the_bound_fall_back_for_the_rest(providers, fake_sendgrid, sink, no_sleep):
    batch = duplicate_pairs_batch(pairs=3, others=5)

    provider, results = send_with_fallback(batch, providers, sleep=no_sleep, policy=RetryPolicy(max_rejection_rounds=2))

    assert provider == "smtp"
    assert {r.delivery_id for r in results if r.outcome == Outcome.FAILED} == {2000, 2001}
    assert fake_sendgrid.stats()["requests_by_status"] == {"400": 3}
    assert Counter(sink.recipients()) == Counter(m.email for m in batch.messages if m.delivery_id not in (2000, 2001))


def test_every_provider_refusing_us_is_a_provider_problem_that_fails_nobody(
        fake_sendgrid, scripted_smtp, no_sleep, batch_of):
    fake_sendgrid.fail("401")
    scripted_smtp.refuse_rcpt(".", "554 5.7.1 Relay access denied")

    with pytest.raises(ProviderRefused) as raised:
        send_with_fallback(batch_of(6), [SendGridProvider(), SmtpProvider()], sleep=no_sleep)

    assert "SendGrid 401" in str(raised.value) and "554 5.7.1" in str(raised.value)
    assert raised.value.results == []
    assert fake_sendgrid.records() == [] and scripted_smtp.recipients() == []


def test_an_smtp_outage_after_a_sendgrid_refusal_is_retried_later_not_a_provider_problem(
        fake_sendgrid, settings, closed_port, no_sleep, batch_of):
    fake_sendgrid.fail("401")
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", closed_port

    with pytest.raises(ProviderUnavailable) as raised:
        send_with_fallback(batch_of(3), [SendGridProvider(), SmtpProvider()], sleep=no_sleep)

    assert not isinstance(raised.value, ProviderRefused)


def test_smtp_refusing_mail_from_mid_batch_keeps_what_was_sent_and_sends_nobody_twice(
        fake_sendgrid, scripted_smtp, no_sleep, batch_of):
    scripted_smtp.refuse_mail("550 5.7.1 Daily sending quota exceeded", after=3)
    batch = batch_of(6)

    with pytest.raises(ProviderRefused) as raised:
        send_with_fallback(batch, [SmtpProvider()], sleep=no_sleep)

    # The first three at least (more when several connections were mid-round at the quota), each once.
    sent = sorted(r.delivery_id for r in raised.value.results if r.outcome == Outcome.SENT)
    assert sent[:3] == [1, 2, 3] and sent == list(range(1, len(sent) + 1)) and len(sent) < 6
    assert Counter(scripted_smtp.recipients()) == Counter(m.email for m in batch.messages[:len(sent)])


def test_smtp_that_cannot_connect_after_the_retries_raises_so_the_batch_is_retried_later(
        settings, closed_port, no_sleep, batch_of):
    settings.SENDGRID_API_KEY = ""
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = closed_port

    with pytest.raises(ProviderError) as raised:
        send_with_fallback(batch_of(3), sleep=no_sleep)

    assert raised.value.provider == "smtp"
    assert len(no_sleep.waits) == 3


def test_both_providers_failing_raises_after_trying_each(providers, fake_sendgrid, settings, closed_port, no_sleep,
                                                        batch_of):
    fake_sendgrid.fail("500")
    settings.EMAIL_PORT = closed_port

    with pytest.raises(ProviderError):
        send_with_fallback(batch_of(3), [SendGridProvider(), SmtpProvider()], sleep=no_sleep)

    assert fake_sendgrid.stats()["requests_by_status"] == {"500": 4}
    assert len(no_sleep.waits) == 6


def test_smtp_drop_during_a_batch_after_sendgrid_fallback_still_mails_each_once(
        providers, fake_sendgrid, sink, no_sleep, batch_of):
    fake_sendgrid.fail("401")
    sink.set_faults(drop_after=7, reject_rcpt="^user13@")
    batch = batch_of(40)

    provider, results = send_with_fallback(batch, providers, sleep=no_sleep)

    assert provider == "smtp"
    outcomes = Counter(r.outcome for r in results)
    assert outcomes == {Outcome.SENT: 39, Outcome.FAILED: 1}
    assert [r.delivery_id for r in results if r.bounced] == [13]
    assert Counter(sink.recipients()) == Counter(m.email for m in batch.messages if m.delivery_id != 13)


def test_sendgrid_429s_whose_reset_has_passed_still_end_in_a_fallback(
        providers, fake_sendgrid, sink, no_sleep, batch_of):
    fake_sendgrid.fail("429", reset_after=-30)  # a reset in the past: no wait, but not forever
    batch = batch_of(3)

    provider, _ = send_with_fallback(batch, providers, sleep=no_sleep, policy=RetryPolicy(max_rate_limit_wait=5))

    assert provider == "smtp"
    assert no_sleep.waits == [0.0] * 5
    assert_each_mailed_once(batch, sink.recipients())
