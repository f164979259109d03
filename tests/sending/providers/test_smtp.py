"""The SMTP provider against the local SMTP sink and a scripted relay: what reaches the server, and the
result or typed error the pipeline gets back."""

import dataclasses
import email
import email.policy

import pytest

from campaigns.exceptions import ProviderRefused, RateWaitTooLong, TemporaryError
from campaigns.sending import ratelimit
from campaigns.sending.providers.base import Outcome
from campaigns.sending.providers.smtp import MessageBuilder, SmtpProvider
from tests.sending.conftest import make_batch, make_recipients, unsubscribe_url
from tests.support.scripted_smtp import (  # noqa: F401 (fixtures)
    scripted_smtp,
    scripted_smtp_with_pipelining,
    scripted_smtp_without_smtputf8,
)

SENT, FAILED, DEFERRED = Outcome.SENT, Outcome.FAILED, Outcome.DEFERRED


def test_a_paced_batch_stops_before_a_rate_wait_beyond_its_budget_with_what_it_sent(sink, settings, redis_client):
    settings.SEND_SMTP_CONNECTIONS = 2
    redis_client.delete("ratelimit:budget-test:sends")
    batch = dataclasses.replace(make_batch(make_recipients(5)), rate_wait=ratelimit.RateWaitBudget(1.2))

    with pytest.raises(RateWaitTooLong) as raised:
        SmtpProvider(rate=1, rate_key="budget-test").send_batch(batch)

    # The first message goes at once, the second after a wait of a second; the third would overrun.
    assert [(r.delivery_id, r.outcome) for r in raised.value.results] == [(1, SENT), (2, SENT)]
    assert sorted(m["X-Delivery-ID"] for m in sink.messages()) == ["1", "2"]


def test_smtp_sends_each_message_fully_rendered_over_one_connection(sink, settings):
    settings.UNSUBSCRIBE_MAILTO = "unsubscribe@example.com"
    recipients = make_recipients(20)
    recipients[1] = (2, "jurgen@example.com", "Jürgen", "Müller", {"code": "Grüße & <tags>"})
    batch = make_batch(recipients, reply_to="help@example.com")

    results = SmtpProvider().send_batch(batch)

    assert [r.outcome for r in results] == [Outcome.SENT] * 20
    messages = {message["X-Delivery-ID"]: message for message in sink.messages()}
    assert len(messages) == 20
    for result in results:
        message = messages[str(result.delivery_id)]
        assert message["Message-ID"] == result.message_id
        assert message["X-Campaign-ID"] == "42"
        assert message["List-Unsubscribe"] == (
            f"<{unsubscribe_url(result.delivery_id)}>, <mailto:unsubscribe@example.com?subject=unsubscribe>")
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message["Reply-To"] == "help@example.com"
        assert message.get_content_type() == "multipart/alternative"
    jurgen = messages["2"]
    assert jurgen["X-Sink-Rcpt-To"] == "jurgen@example.com"
    assert jurgen["X-Sink-Mail-From"] == "news@example.com"
    assert str(jurgen["To"]) == "Jürgen Müller <jurgen@example.com>"
    assert str(jurgen["From"]) == "Acme News <news@example.com>"
    assert jurgen["Subject"] == "News for Jürgen"
    text = jurgen.get_body(("plain",)).get_content()
    html = jurgen.get_body(("html",)).get_content()
    assert text.startswith("Hi Jürgen, your code is Grüße & <tags>.")
    assert "your code is <b>Grüße &amp; &lt;tags&gt;</b>" in html


def test_smtp_keeps_lines_starting_with_a_dot_and_very_long_lines_intact(sink):
    long_line = "x" * 3000
    batch = make_batch(make_recipients(1), html="<p>{{ code }}</p>", text=f".hidden dot\n..two\n{long_line}\n")

    (result,) = SmtpProvider().send_batch(batch)

    assert result.outcome == Outcome.SENT
    (message,) = sink.messages()
    assert message.get_body(("plain",)).get_content() == f".hidden dot\n..two\n{long_line}\n"


def test_smtp_permanent_refusal_fails_and_bounces_only_that_recipient(sink):
    sink.set_faults(reject_rcpt="^user3@")
    batch = make_batch(make_recipients(6))

    results = SmtpProvider().send_batch(batch)

    assert [r.outcome for r in results] == [Outcome.SENT] * 2 + [Outcome.FAILED] + [Outcome.SENT] * 3
    assert [r.bounced for r in results] == [False, False, True, False, False, False]
    assert "550" in results[2].error
    assert sorted(sink.recipients()) == sorted(m.email for m in batch.messages if m.email != "user3@example.com")


def test_smtp_temporary_refusal_defers_only_that_recipient(sink):
    sink.set_faults(defer_rcpt="^user2@")

    results = SmtpProvider().send_batch(make_batch(make_recipients(4)))

    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.DEFERRED, Outcome.SENT, Outcome.SENT]
    assert not results[1].bounced
    assert "451" in results[1].error
    assert len(sink.messages()) == 3


def test_smtp_reconnects_when_the_server_drops_the_connection_and_sends_each_message_once(sink):
    sink.set_faults(drop_after=3)
    batch = make_batch(make_recipients(10))

    results = SmtpProvider().send_batch(batch)

    assert [r.outcome for r in results] == [Outcome.SENT] * 10
    assert sorted(sink.recipients()) == sorted(m.email for m in batch.messages)


class LosingLedger:
    """A claim that no longer owns LOST when its call begins; records what the provider writes."""

    def __init__(self, lost):
        self.lost, self.marked, self.recorded = lost, [], []

    def call_began(self, delivery_ids):
        self.marked += delivery_ids
        return {pk for pk in delivery_ids if pk not in self.lost}

    def record(self, provider, results):
        self.recorded += results


def test_smtp_sends_no_content_for_a_message_whose_claim_was_lost_and_carries_on(sink):
    # DATA is already out when the mark says the claim was lost: only dropping the connection (no
    # final dot) keeps that message from being delivered, and the next one reconnects.
    batch = make_batch(make_recipients(5))
    lost = batch.messages[2]
    ledger = LosingLedger({lost.delivery_id})

    results = SmtpProvider().send_batch(dataclasses.replace(batch, ledger=ledger))

    assert [r.outcome for r in results] == [Outcome.SENT] * 2 + [Outcome.DEFERRED] + [Outcome.SENT] * 2
    assert sorted(sink.recipients()) == sorted(m.email for m in batch.messages if m is not lost)
    assert ledger.marked == [m.delivery_id for m in batch.messages]


def test_smtp_that_cannot_connect_raises_before_sending_anything(settings, closed_port, batch_of):
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = closed_port

    with pytest.raises(TemporaryError, match="unreachable"):
        SmtpProvider().send_batch(batch_of(3))


def test_smtp_address_with_a_non_ascii_local_part_goes_out_with_smtputf8_when_offered(sink):
    recipients = make_recipients(3)
    recipients[0] = (1, "jürgen@bücher.example", "Jürgen", "M", {"code": "1"})

    results = SmtpProvider().send_batch(make_batch(recipients))

    assert [r.outcome for r in results] == [Outcome.SENT] * 3
    jurgen = next(m for m in sink.messages() if m["X-Delivery-ID"] == "1")
    assert jurgen["X-Sink-Rcpt-To"] == "jürgen@bücher.example"  # as it stands: RFC 6531 needs no IDNA
    assert str(jurgen["To"]) == "Jürgen M <jürgen@bücher.example>"


def test_smtp_address_that_needs_smtputf8_fails_alone_where_the_server_lacks_it(scripted_smtp_without_smtputf8):
    recipients = make_recipients(3)
    recipients[0] = (1, "jürgen@example.com", "J", "M", {"code": "1"})

    results = SmtpProvider().send_batch(make_batch(recipients))

    assert [r.outcome for r in results] == [Outcome.FAILED, Outcome.SENT, Outcome.SENT]
    assert "non-ASCII local part" in results[0].error and "SMTPUTF8 (RFC 6531)" in results[0].error
    assert "does not offer it" in results[0].error and not results[0].bounced
    assert sorted(scripted_smtp_without_smtputf8.recipients()) == ["user2@example.com", "user3@example.com"]
    assert all("SMTPUTF8" not in options for options in scripted_smtp_without_smtputf8.mail_options())


def test_smtp_relay_refusing_every_recipient_is_a_provider_problem_not_bounces(scripted_smtp):
    scripted_smtp.refuse_rcpt(".", "554 5.7.1 <{}>: Relay access denied")

    with pytest.raises(ProviderRefused) as raised:
        SmtpProvider().send_batch(make_batch(make_recipients(5)))

    assert "554" in str(raised.value) and "5.7.1" in str(raised.value) and "Relay access denied" in str(raised.value)
    assert raised.value.results == []  # nobody failed, so nobody is suppressed; all go back to pending
    assert scripted_smtp.recipients() == []


def test_smtp_refused_mail_from_is_a_provider_problem_that_keeps_what_was_sent(scripted_smtp):
    scripted_smtp.refuse_mail("553 5.7.1 Sender address rejected: not owned by user", after=2)
    batch = make_batch(make_recipients(5))

    with pytest.raises(ProviderRefused) as raised:
        SmtpProvider().send_batch(batch)

    assert "MAIL FROM" in str(raised.value) and "553 5.7.1" in str(raised.value)
    assert [(r.delivery_id, r.outcome) for r in raised.value.results] == [(1, Outcome.SENT), (2, Outcome.SENT)]
    assert scripted_smtp.recipients() == ["user1@example.com", "user2@example.com"]


def test_smtp_temporary_refusal_of_mail_from_is_temporary_and_keeps_what_was_sent(scripted_smtp, settings):
    settings.SEND_SMTP_CONNECTIONS = 1  # so the second message's MAIL FROM comes after the first was stored
    scripted_smtp.refuse_mail("451 4.3.2 Please try again later", after=1)

    with pytest.raises(TemporaryError) as raised:
        SmtpProvider().send_batch(make_batch(make_recipients(3)))

    assert [(r.delivery_id, r.outcome) for r in raised.value.results] == [(1, Outcome.SENT)]


@pytest.mark.parametrize("reply, phase, outcome, bounced", [
    ("550 5.1.1 <{}>: Recipient address rejected: User unknown", "rcpt", Outcome.FAILED, True),
    ("550 5.1.1 mailbox unavailable", "content", Outcome.FAILED, True),
    ("550 Requested action not taken: mailbox unavailable", "rcpt", Outcome.FAILED, False),
    ("554 5.7.1 Message refused by the recipient's policy", "rcpt", Outcome.FAILED, False),
    ("552 5.2.2 Mailbox full", "content", Outcome.FAILED, False),
    ("450 4.2.1 Mailbox busy", "rcpt", Outcome.DEFERRED, False),
], ids=["5.1.1-rcpt", "5.1.1-after-content", "bare-550", "5.7.1-one-recipient", "5.2.2", "450"])
def test_smtp_refusal_of_some_recipients_fails_or_defers_only_them_and_suppresses_only_5_1_x(
        scripted_smtp, reply, phase, outcome, bounced):
    refuse = scripted_smtp.refuse_rcpt if phase == "rcpt" else scripted_smtp.refuse_content
    refuse("^user[24]@", reply)

    results = SmtpProvider().send_batch(make_batch(make_recipients(5)))

    assert [r.outcome for r in results] == [Outcome.SENT, outcome, Outcome.SENT, outcome, Outcome.SENT]
    assert [r.bounced for r in results] == [False, bounced, False, bounced, False]
    assert reply.split(" <")[0].split(" ")[0] in results[1].error
    assert sorted(scripted_smtp.recipients()) == ["user1@example.com", "user3@example.com", "user5@example.com"]


def test_smtp_5_1_1_for_every_recipient_is_still_bounces_not_a_provider_problem(scripted_smtp):
    scripted_smtp.refuse_rcpt(".", "550 5.1.1 User unknown")

    results = SmtpProvider().send_batch(make_batch(make_recipients(3)))

    assert [(r.outcome, r.bounced) for r in results] == [(Outcome.FAILED, True)] * 3


def test_smtp_recipient_data_cannot_add_headers(sink):
    batch = make_batch([(1, "eve@example.com", "Eve\r\nBcc: victim@example.org", "X", {"code": "1"})],
                       subject="Hello {{ first_name }}")

    (result,) = SmtpProvider().send_batch(batch)

    assert result.outcome == Outcome.SENT
    (message,) = sink.messages()
    assert message["Bcc"] is None
    assert message["X-Sink-Rcpt-To"] == "eve@example.com"
    assert "victim@example.org" in str(message["To"]) and "\n" not in str(message["To"])
    assert message["Subject"] == "Hello Eve Bcc: victim@example.org"


def test_smtp_logs_in_when_a_user_is_configured(sink, settings, batch_of):
    settings.EMAIL_HOST_USER = "mailer"
    settings.EMAIL_HOST_PASSWORD = "secret"

    results = SmtpProvider().send_batch(batch_of(2))

    assert [r.outcome for r in results] == [Outcome.SENT] * 2
    assert len(sink.messages()) == 2


def test_smtp_headers_of_long_non_ascii_names_and_subjects_are_encoded_words_on_short_lines(settings):
    settings.UNSUBSCRIBE_MAILTO = "unsubscribe@example.com"
    name = "Jean-Émile Çağlar-Øyvindsdóttir de la Peña y Müller-Lüdenscheidt"
    batch = make_batch([(1, "jean@example.com", name, "Ürgüp", {"code": "1"})],
                       subject="Ça va, {{ first_name }}? Voilà vos économies d'été — {{ code }}", html="<p>é</p>")

    data = MessageBuilder(batch).build(batch.messages[0], eight_bit_ok=True).data

    head = data.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    fields = head.replace(b"\r\n ", b"\n ").split(b"\r\n")  # one item per header, its folded lines kept
    subject = next(field for field in fields if field.startswith(b"Subject: "))
    assert subject.count(b"\n ") >= 2  # folded between encoded words
    # The display name is one encoded word, as formataddr writes it; every other header is folded.
    assert max(len(line) for field in fields if not field.startswith(b"To: ") for line in field.split(b"\n")) <= 78
    message = email.message_from_bytes(data[:-3], policy=email.policy.default)
    assert message["Subject"] == f"Ça va, {name}? Voilà vos économies d'été — 1"
    assert message["To"].addresses[0].display_name == f"{name} Ürgüp"
    assert message["To"].addresses[0].addr_spec == "jean@example.com"
    assert message["List-Unsubscribe"] == f"<{unsubscribe_url(1)}>, <mailto:unsubscribe@example.com?subject=unsubscribe>"


def test_smtp_pipelines_each_envelope_when_offered_and_judges_every_reply_for_its_phase_and_recipient(
        scripted_smtp_with_pipelining, settings):
    settings.SEND_SMTP_CONNECTIONS = 3
    server = scripted_smtp_with_pipelining
    server.refuse_rcpt("^user2@", "550 5.1.1 <user2@example.com>: Recipient address rejected: User unknown")
    server.refuse_rcpt("^user3@", "450 4.2.1 Mailbox busy")
    server.refuse_content("^user5@", "552 5.2.2 Mailbox full")

    results = SmtpProvider().send_batch(make_batch(make_recipients(7)))

    assert [r.outcome for r in results] == [SENT, FAILED, DEFERRED, SENT, FAILED, SENT, SENT]
    assert [r.bounced for r in results] == [False, True, False, False, False, False, False]
    assert "RCPT TO" in results[1].error and "5.1.1" in results[1].error
    assert "RCPT TO" in results[2].error and "450 4.2.1" in results[2].error
    assert "after the message content" in results[4].error and "552 5.2.2" in results[4].error
    assert sorted(server.recipients()) == ["user1@example.com", "user4@example.com", "user6@example.com",
                                           "user7@example.com"]
    # Every MAIL FROM arrived with its RCPT TO already behind it: one write per envelope.
    assert server.pipelined_envelopes() == [True] * 7


def test_smtp_waits_for_each_reply_where_the_server_does_not_offer_pipelining(scripted_smtp, settings):
    settings.SEND_SMTP_CONNECTIONS = 2
    scripted_smtp.refuse_rcpt("^user2@", "550 5.1.1 User unknown")

    results = SmtpProvider().send_batch(make_batch(make_recipients(4)))

    assert [r.outcome for r in results] == [SENT, FAILED, SENT, SENT]
    assert scripted_smtp.pipelined_envelopes() == [False] * 4


def test_smtp_mail_from_refused_mid_pipeline_is_a_provider_problem_that_keeps_what_was_sent(
        scripted_smtp_with_pipelining, settings):
    settings.SEND_SMTP_CONNECTIONS = 2
    server = scripted_smtp_with_pipelining
    server.refuse_mail("553 5.7.1 Sender address rejected: not owned by user", after=2)

    with pytest.raises(ProviderRefused) as raised:
        SmtpProvider().send_batch(make_batch(make_recipients(5)))

    assert "MAIL FROM" in str(raised.value) and "553 5.7.1" in str(raised.value)
    assert [(r.delivery_id, r.outcome) for r in raised.value.results] == [(1, SENT), (2, SENT)]
    assert sorted(server.recipients()) == ["user1@example.com", "user2@example.com"]


def test_smtp_sends_a_batch_over_several_connections_each_message_once(scripted_smtp_with_pipelining, settings):
    settings.SEND_SMTP_CONNECTIONS = 3
    batch = make_batch(make_recipients(10))

    results = SmtpProvider().send_batch(batch)

    assert [r.outcome for r in results] == [SENT] * 10
    assert sorted(scripted_smtp_with_pipelining.recipients()) == sorted(m.email for m in batch.messages)
    assert scripted_smtp_with_pipelining.connections_used() == 3


class RecordingLedger:
    """Records each call-began mark with what the server had received by then, and each run of results."""

    def __init__(self, server):
        self.server, self.marks, self.recorded = server, [], []

    def call_began(self, delivery_ids):
        self.marks.append((list(delivery_ids), set(self.server.recipients())))
        return set(delivery_ids)

    def record(self, provider, results):
        self.recorded.append([r.delivery_id for r in results])


def test_smtp_marks_each_round_in_one_call_before_its_content_and_no_round_crosses_a_chunk(
        scripted_smtp_with_pipelining, settings):
    settings.SEND_SMTP_CONNECTIONS = 3
    settings.SEND_SMTP_CHUNK = 4
    ledger = RecordingLedger(scripted_smtp_with_pipelining)
    batch = dataclasses.replace(make_batch(make_recipients(8)), ledger=ledger)

    results = SmtpProvider().send_batch(batch)

    assert [r.outcome for r in results] == [SENT] * 8
    assert [ids for ids, _ in ledger.marks] == [[1, 2, 3], [4], [5, 6, 7], [8]]
    for ids, received in ledger.marks:  # nothing of a round had reached the server when it was marked
        assert not {f"user{i}@example.com" for i in ids} & received
    assert ledger.recorded == [[1, 2, 3, 4], [5, 6, 7, 8]]  # at most SEND_SMTP_CHUNK unwritten at any time


@pytest.mark.slow
def test_an_account_at_one_a_second_or_sixty_a_minute_sends_at_that_rate_over_two_connections(
        start_worker, smtp_sink_server, second_sink, no_sendgrid, worker_env):
    """Issue 21 defect 1: a limit below the connection count must not crawl at one message per
    PACE_HOLD_SECONDS (30 s) while each connection waits for the other's place."""
    import collections

    from campaigns import services
    from campaigns.models import Campaign
    from tests.sending.test_pipeline import (
        assert_exactly_once,
        make_campaign,
        most_in_any_second,
        wait_until_finished,
    )
    from tests.support.factories import SendingAccountFactory, pool_of

    worker_env.update(SEND_SMTP_CONNECTIONS=2, SEND_SMTP_CHUNK=50)
    ses_sandbox = SendingAccountFactory(name="ses-sandbox", port=smtp_sink_server.port, per_second=1)
    per_minute = SendingAccountFactory(name="per-minute", port=second_sink.port, per_minute=60)
    campaigns = [make_campaign(8, batch_size=8, pool=pool_of(ses_sandbox)),
                 make_campaign(8, batch_size=8, pool=pool_of(per_minute))]
    start_worker(["scheduler", "senders"], concurrency=2)

    for campaign in campaigns:
        services.send_now(campaign.pk)
    # About 8 s at each account's rate; the defect took 30 s a message (4 minutes). A liveness
    # bound, not a timing assertion.
    for campaign, sink in zip(campaigns, (smtp_sink_server, second_sink)):
        wait_until_finished(campaign, timeout=90)
        assert campaign.status == Campaign.Status.COMPLETED
        assert sink.count() == 8
        assert most_in_any_second(sink.receive_times()) <= 1  # never two messages within a second
        assert_exactly_once(campaign, collections.Counter(sink.recipients()))


@pytest.mark.slow
def test_421_at_data_on_every_connection_with_as_many_connections_as_the_chunk_ends_the_batch_without_unknown(
        start_worker, scripted_smtp, no_sendgrid, worker_env):
    """Issue 21 defect 10: the messages marked and put back after each connection's 421 filled the
    run, so no round could start: the worker spun until the soft time limit and those rows, never
    handed to the server, ended `unknown`."""
    from campaigns import services
    from campaigns.models import Campaign, DeliveryLog
    from tests.sending.test_pipeline import make_campaign, statuses, wait_until_finished

    scripted_smtp.refuse_data_command("421 4.3.2 Service shutting down")
    worker_env.update(SEND_SMTP_CONNECTIONS=3, SEND_SMTP_CHUNK=2, SEND_MAX_ATTEMPTS=1, SEND_BATCH_TIME_LIMIT=20)
    campaign = make_campaign(6, batch_size=6)
    start_worker(["scheduler", "senders"], concurrency=1)

    services.send_now(campaign.pk)
    wait_until_finished(campaign, timeout=90)

    # The server took no content, so nobody is in doubt: every row failed after its one attempt.
    assert campaign.status == Campaign.Status.FAILED
    assert statuses(campaign) == {DeliveryLog.Status.FAILED: 6}
    assert scripted_smtp.recipients() == []
