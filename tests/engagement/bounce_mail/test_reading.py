"""The reader against real messages from many mail servers (tests/engagement/bounce_mail/samples/, with
what Sisimai, a mature bounce parser, reads from each): what each kind of message means, and the rule
that never bends: a soft bounce is never read as hard."""

import json

import pytest

from campaigns.engagement.bounce_mail import reading
from tests.support.bounces import SAMPLES, arf, dsn, sample

EXPECTED = {entry["file"]: entry["results"] for entry in map(json.loads, (SAMPLES / "expected.jsonl").read_text().splitlines())}


def test_on_the_samples_no_soft_bounce_is_read_as_hard_and_the_figures_are_reported(capsys):
    hard_found = hard_expected = wrongly_hard = complaints = complaints_expected = unread = 0
    for name, results in sorted(EXPECTED.items()):
        read = reading.read(sample(name))
        expected = {result["recipient"].lower(): result for result in results}
        unread += read.kind == reading.UNREADABLE
        hard_expected += sum(result["softbounce"] == 0 for result in results)
        complaints_expected += sum(result["reason"] == "feedback" for result in results)
        for recipient in read.recipients:
            known = expected.get(recipient.address)
            if recipient.outcome == reading.HARD:
                if known is None or known["softbounce"] != 0:
                    wrongly_hard += 1
                else:
                    hard_found += 1
            complaints += recipient.outcome == reading.COMPLAINT
    with capsys.disabled():
        print(f"\nbounce samples: {hard_found} of {hard_expected} hard bounces suppressed, {wrongly_hard} soft "
              f"bounces wrongly suppressed, {complaints} of {complaints_expected} complaints found, "
              f"{unread} of {len(EXPECTED)} messages kept unread")
    assert wrongly_hard == 0
    assert hard_found > 0 and complaints > 0


@pytest.mark.parametrize("name, kind, outcome, status", [
    ("rfc3464-56.eml", reading.BOUNCE, reading.SOFT, "4.4.1"),  # RFC 3464, failed after retries
    ("lhost-postfix-02.eml", reading.BOUNCE, reading.HARD, "5.1.1"),  # Postfix DSN, two recipients
    ("lhost-sendmail-28.eml", reading.BOUNCE, reading.HARD, "5.1.1"),  # Sendmail
    ("lhost-office365-11.eml", reading.BOUNCE, reading.HARD, "5.1.1"),  # Office 365
    ("lhost-gmail-18.eml", reading.BOUNCE, reading.HARD, "5.1.1"),  # Gmail, no DSN part
    ("lhost-exim-01.eml", reading.BOUNCE, reading.SOFT, "5.7.0"),  # Exim, a policy refusal
    ("lhost-qmail-14.eml", reading.BOUNCE, reading.SOFT, "5.7.26"),  # qmail, DMARC refusal
    ("lhost-yahoo-11.eml", reading.BOUNCE, reading.SOFT, "5.1.8"),  # Yahoo
    ("lhost-courier-02.eml", reading.BOUNCE, reading.SOFT, "5.0.0"),  # Courier: "Unknown user", no 5.1.x
    ("lhost-sendmail-05.eml", reading.BOUNCE, reading.SOFT, "5.2.3"),  # message too large
    ("rhost-microsoft-05.eml", reading.BOUNCE, reading.SOFT, "4.7.650"),  # Outlook throttling
    ("arf-02.eml", reading.COMPLAINT, reading.COMPLAINT, ""),  # ARF
    ("lhost-amazonses-11.eml", reading.COMPLAINT, reading.COMPLAINT, ""),  # SES through an SNS email subscription
])
def test_each_format_family_is_read_per_recipient(name, kind, outcome, status):
    read = reading.read(sample(name))

    assert read.kind == kind
    wanted = {result["recipient"].lower() for result in EXPECTED[name]}
    found = {recipient.address: recipient for recipient in read.recipients}
    assert wanted <= set(found)
    firsts = [found[address] for address in sorted(wanted)]
    assert outcome in {recipient.outcome for recipient in firsts}
    assert status in {recipient.status for recipient in firsts}


@pytest.mark.parametrize("name", ["rfc3834-01.eml", "rfc3834-03.eml"])
def test_auto_replies_are_nothing_to_do(name):
    read = reading.read(sample(name))
    assert read.kind == reading.AUTO_REPLY and read.recipients == []


def test_a_delayed_notification_is_nothing_to_do():
    read = reading.read(dsn("ann@example.org", status="4.4.1", action="delayed",
                            diagnostic="smtp; 421 4.4.1 connection timed out"))
    assert read.kind == reading.DELAYED
    assert [recipient.outcome for recipient in read.recipients] == [""]


@pytest.mark.parametrize("status, diagnostic, outcome", [
    ("5.1.1", "smtp; 550 5.1.1 user unknown", reading.HARD),
    ("5.1.2", "smtp; 550 5.1.2 host unknown", reading.HARD),
    ("5.1.10", "smtp; 550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found", reading.HARD),
    ("5.0.0", "smtp; 550 5.1.1 <a@b.example>: Recipient address rejected: User unknown", reading.HARD),
    ("5.4.4", "Host or domain name not found. Name service error for name=b.example type=A: Host not found",
     reading.HARD),
    ("5.2.2", "smtp; 552 5.2.2 mailbox full", reading.SOFT),
    ("5.7.1", "smtp; 550 5.7.1 Message rejected as spam", reading.SOFT),
    ("5.1.1", "smtp; 550 5.1.1 blocked using zen.spamhaus.org", reading.SOFT),  # in doubt: soft
    ("4.2.0", "smtp; 450 4.2.0 greylisted, try again later", reading.SOFT),
    ("5.0.0", "smtp; 550 User unknown", reading.SOFT),  # text alone never suppresses
    ("5.0.0", "smtp; 550 Unknown user (in reply to end of DATA command)", reading.SOFT),
    ("5.5.0", "smtp; 550 Requested action not taken: mailbox unavailable", reading.SOFT),
    ("5.4.7", "delivery time expired", reading.SOFT),
])
def test_only_an_address_or_domain_that_does_not_exist_is_hard(status, diagnostic, outcome):
    assert reading.classify(status, diagnostic)[0] == outcome


def test_a_complaint_report_names_its_recipient_and_not_spam_is_nothing():
    assert [(r.address, r.outcome) for r in reading.read(arf("Ann@Example.org")).recipients] == [
        ("ann@example.org", reading.COMPLAINT)]
    assert reading.read(arf("ann@example.org", feedback_type="not-spam")).recipients == []


def test_a_message_that_is_none_of_these_is_unreadable():
    read = reading.read(b"From: someone@example.org\r\nSubject: hello\r\n\r\nJust a reply from a person.\r\n")
    assert read.kind == reading.UNREADABLE and read.reason


@pytest.mark.parametrize("bounce_type, status, outcome", [
    ("Permanent", "5.1.1", reading.HARD), ("Permanent", "5.7.1", reading.SOFT), ("Transient", "5.2.2", reading.SOFT)])
def test_an_amazon_ses_bounce_mailed_by_sns_is_read_like_a_dsn(bounce_type, status, outcome):
    body = json.dumps({"notificationType": "Bounce", "bounce": {"bounceType": bounce_type, "bouncedRecipients": [
        {"emailAddress": "ann@example.org", "status": status, "diagnosticCode": f"smtp; 550 {status} user unknown"}]},
        "mail": {"commonHeaders": {"messageId": "<ours@example.com>"}}})
    raw = (f"From: no-reply@sns.amazonaws.com\r\nSubject: AWS Notification Message\r\n\r\n{body}\r\n\r\n--\r\n"
           "If you wish to stop receiving notifications from this topic...\r\n").encode()

    read = reading.read(raw)

    assert read.kind == reading.BOUNCE and read.message_id == "<ours@example.com>"
    assert [(r.address, r.outcome, r.status) for r in read.recipients] == [("ann@example.org", outcome, status)]


def test_a_bounce_whose_recipient_cannot_be_read_is_kept_not_taken_for_an_auto_reply():
    # From mailer-daemon with Auto-Submitted: auto-replied, but its failed address is in no form the
    # detectors know: kept for staff.
    read = reading.read(sample("lhost-x6-02.eml"))
    assert read.kind == reading.UNREADABLE and read.reason == "a bounce whose failed recipient could not be read"
