"""The SMTP reply table: every row, as staff read it in docs/delivery-guarantees.md."""

import pytest

from campaigns.sending.providers.base import Outcome
from campaigns.sending.providers.smtp_replies import Phase, Scope, classify, enhanced_code, uniform_refusal

FAILED, DEFERRED, SENT, UNKNOWN = Outcome.FAILED, Outcome.DEFERRED, Outcome.SENT, Outcome.UNKNOWN


@pytest.mark.parametrize("phase, code, text, outcome, scope, suppresses", [
    (Phase.CONTENT, 250, "2.0.0 Ok: queued as 4Zx", SENT, Scope.MESSAGE, False),
    (Phase.RCPT, 251, "User not local; will forward", SENT, Scope.MESSAGE, False),
    (Phase.MAIL, 553, "5.7.1 Sender address rejected: not owned by user", FAILED, Scope.SENDER, False),
    (Phase.MAIL, 550, "Sender refused", FAILED, Scope.SENDER, False),
    (Phase.MAIL, 452, "4.5.3 Too many messages", DEFERRED, Scope.SENDER, False),
    (Phase.RCPT, 550, "5.1.1 <bob@example.com>: Recipient address rejected: User unknown", FAILED, Scope.ADDRESS, True),
    (Phase.RCPT, 550, "5.1.2 Bad destination system address", FAILED, Scope.ADDRESS, True),
    (Phase.RCPT, 553, "5.1.3 Bad destination mailbox address syntax", FAILED, Scope.ADDRESS, True),
    (Phase.RCPT, 556, "5.1.10 Recipient address has null MX", FAILED, Scope.ADDRESS, True),
    (Phase.CONTENT, 550, "5.1.1 The email account that you tried to reach does not exist", FAILED, Scope.ADDRESS,
     True),
    (Phase.RCPT, 553, "5.1.7 Bad sender's mailbox address syntax", FAILED, Scope.SENDER, False),
    (Phase.RCPT, 550, "5.1.8 Bad sender's system address", FAILED, Scope.SENDER, False),
    (Phase.RCPT, 554, "5.7.1 <bob@example.com>: Relay access denied", FAILED, Scope.SENDER, False),
    (Phase.CONTENT, 550, "5.7.26 Unauthenticated email is not accepted (DMARC)", FAILED, Scope.SENDER, False),
    (Phase.CONTENT, 552, "5.2.2 Mailbox full", FAILED, Scope.MESSAGE, False),
    (Phase.CONTENT, 552, "5.3.4 Message size exceeds fixed limit", FAILED, Scope.MESSAGE, False),
    (Phase.RCPT, 550, "Requested action not taken: mailbox unavailable", FAILED, Scope.MESSAGE, False),
    (Phase.DATA, 554, "Transaction failed", FAILED, Scope.MESSAGE, False),
    (Phase.RCPT, 450, "4.2.1 Mailbox busy", DEFERRED, Scope.MESSAGE, False),
    (Phase.RCPT, 451, "4.7.1 Greylisted, try again later", DEFERRED, Scope.MESSAGE, False),
    (Phase.CONTENT, 452, "Insufficient system storage", DEFERRED, Scope.MESSAGE, False),
    (Phase.CONTENT, -1, "", UNKNOWN, Scope.MESSAGE, False),
    (Phase.RCPT, 354, "Unexpected", DEFERRED, Scope.MESSAGE, False),
])
def test_each_reply_has_one_outcome(phase, code, text, outcome, scope, suppresses):
    verdict = classify(phase, code, text)

    assert (verdict.outcome, verdict.scope, verdict.suppresses) == (outcome, scope, suppresses)
    assert str(code) in verdict.error and verdict.rule.name in verdict.error


@pytest.mark.parametrize("text, code", [
    ("5.1.1 User unknown", "5.1.1"), ("5.7.26 DMARC", "5.7.26"), ("  4.2.1 busy", "4.2.1"),
    ("5.1.1", "5.1.1"), ("User unknown 5.1.1", ""), ("5.1 incomplete", ""), ("3.1.1 not a class", ""),
])
def test_the_enhanced_code_is_read_from_the_start_of_the_text(text, code):
    assert enhanced_code(text) == code


def relay_denied(address):
    return classify(Phase.RCPT, 554, f"5.7.1 <{address}>: Relay access denied")


def test_the_same_refusal_about_us_for_every_recipient_is_one_refusal_whatever_address_it_names():
    verdict = uniform_refusal([relay_denied("a@example.com"), relay_denied("b@example.com")])

    assert verdict is not None and verdict.enhanced == "5.7.1"
    assert "@" not in verdict.error_for_everyone and "Relay access denied" in verdict.error_for_everyone


@pytest.mark.parametrize("verdicts", [
    [relay_denied("a@example.com")],  # one recipient cannot tell us from its own server
    [relay_denied("a@example.com"), classify(Phase.RCPT, 554, "5.7.0 other policy")],
    [classify(Phase.RCPT, 550, "5.1.1 unknown"), classify(Phase.RCPT, 550, "5.1.1 unknown")],  # bounces
    [classify(Phase.RCPT, 451, "4.7.1 later"), classify(Phase.RCPT, 451, "4.7.1 later")],  # deferred anyway
], ids=["one", "different", "address-level", "temporary"])
def test_other_refusals_are_not_a_provider_problem(verdicts):
    assert uniform_refusal(verdicts) is None


POSTFIX_UNLISTED_SENDER = "5.1.0 <news@acme.com>: Sender address rejected: User unknown in local recipient table"


@pytest.mark.parametrize("phase, code, text", [
    (Phase.RCPT, 550, POSTFIX_UNLISTED_SENDER),  # Postfix reject_unlisted_sender
    (Phase.RCPT, 550, "5.1.1 <news@acme.com>: Sender address rejected: undeliverable address"),
    (Phase.RCPT, 553, "5.7.1 <news@acme.com>: Sender address rejected: not owned by user bob"),
    (Phase.RCPT, 550, "Sender verify failed"),  # Exim, no enhanced code
    (Phase.RCPT, 550, "5.1.0 <news@acme.com>: User unknown in local recipient table"),  # quotes our MAIL FROM
    (Phase.RCPT, 550, "5.1.0 <NEWS@ACME.COM> unknown"),
    (Phase.CONTENT, 554, "5.1.0 Sender rejected"),
], ids=["postfix-unlisted", "5.1.1-sender", "5.7.1-sender", "exim", "our-address", "our-address-case", "content"])
def test_a_refusal_naming_our_sender_is_about_us_whatever_its_enhanced_code(phase, code, text):
    verdict = classify(phase, code, text, sender="news@acme.com")

    assert (verdict.outcome, verdict.scope, verdict.suppresses) == (FAILED, Scope.SENDER, False)


@pytest.mark.parametrize("text", [
    "5.1.1 <bob@example.com>: Recipient address rejected: User unknown in virtual mailbox table",
    "5.1.1 <bob@example.com>: Recipient address rejected: User unknown; sender <news@acme.com>",
    "5.1.0 <bob@example.com>: unknown address",
])
def test_a_refusal_of_the_recipient_stays_about_the_recipient(text):
    verdict = classify(Phase.RCPT, 550, text, sender="news@acme.com")

    assert (verdict.scope, verdict.suppresses) == (Scope.ADDRESS, True)


def test_every_recipient_refused_as_our_sender_is_a_provider_problem():
    verdicts = [classify(Phase.RCPT, 550, POSTFIX_UNLISTED_SENDER, sender="news@acme.com") for _ in range(3)]

    assert uniform_refusal(verdicts) is not None


@pytest.mark.parametrize("phase, code, text, throttles", [
    # The mailbox provider slows us down: the recipient's domain group waits (campaigns.sending.domain_groups).
    (Phase.RCPT, 421, "4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume", True),
    (Phase.RCPT, 451, "4.7.500 Server busy. Please try again later from [192.0.2.1]", True),
    (Phase.DATA, 450, "4.7.1 Client host rejected: try again later", True),
    (Phase.CONTENT, 421, "4.7.28 Our system has detected an unusual rate of unsolicited mail", True),
    (Phase.CONTENT, 421, "Service not available, closing transmission channel", True),
    # Per recipient: a full mailbox, a busy mailbox, greylisting without 4.7, anything permanent.
    (Phase.RCPT, 452, "4.2.2 The email account that you tried to reach is over quota", False),
    (Phase.RCPT, 450, "4.2.1 The user you are trying to contact is receiving mail too quickly", False),
    (Phase.RCPT, 451, "4.3.0 <bob@example.com>: temporarily deferred", False),
    (Phase.RCPT, 550, "5.7.1 Service unavailable; client host blocked", False),
    (Phase.RCPT, 554, "5.7.9 [TSS09] All messages from 192.0.2.1 will be permanently deferred", False),
    # Refused at MAIL FROM: about us for every message, a whole-batch deferral as before.
    (Phase.MAIL, 421, "4.7.0 [TSS04] Messages temporarily deferred", False),
])
def test_only_a_421_or_a_4_7_deferral_for_a_recipient_throttles_its_domain_group(phase, code, text, throttles):
    assert classify(phase, code, text).throttles is throttles
