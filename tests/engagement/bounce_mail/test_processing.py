"""Bounce mail applied, through `manage.py process_bounce_mail` as Postfix's pipe and staff run it: what
each outcome changes (deliveries, counters, suppressions), how bounces find their delivery, replays and
bounces out of order, and what is kept unread."""

import io
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from campaigns.message.signed_links import bounce_token
from campaigns.models import Campaign, DeliveryLog, Suppression, UnreadBounce
from campaigns.sending.providers.smtp import SmtpProvider
from tests.sending.conftest import make_batch
from tests.support.bounces import arf, dsn, sample
from tests.support.factories import CampaignFactory, DeliveryLogFactory
from tests.support.workers import ROOT, service_env

pytestmark = pytest.mark.django_db


def sent(email=None, campaign=None, **fields):
    """A delivery sent a minute ago."""
    extra = {"recipient__email": email} if email else {}
    if campaign is not None:
        extra["recipient__campaign"] = campaign
    return DeliveryLogFactory(status=DeliveryLog.Status.SENT, sent_at=timezone.now() - timedelta(minutes=1),
                              provider="smtp", provider_message_id=f"<m{time.monotonic_ns()}@example.com>",
                              **extra, **fields)


def run(tmp_path, *messages):
    """process_bounce_mail on one file per message; its output."""
    paths = []
    for number, raw in enumerate(messages):
        path = tmp_path / f"bounce-{number}-{time.monotonic_ns()}.eml"
        path.write_bytes(raw)
        paths.append(str(path))
    out = io.StringIO()
    call_command("process_bounce_mail", *paths, stdout=out)
    return out.getvalue()


def counters(campaign_id):
    return Campaign.objects.filter(pk=campaign_id).values(
        "bounced_count", "soft_bounced_count", "complained_count").get()


def suppressions():
    return {s.email: (s.reason, s.source) for s in Suppression.objects.all()}


def test_a_hard_bounce_marks_the_delivery_bounced_and_suppresses_the_address_with_the_reason(tmp_path):
    log = sent("ann@example.org")

    output = run(tmp_path, dsn(log.email, token=bounce_token(log.pk)))

    log.refresh_from_db()
    assert log.bounced_at is not None and "5.1.1" in log.last_error
    assert counters(log.campaign_id) == {"bounced_count": 1, "soft_bounced_count": 0, "complained_count": 0}
    reason, source = suppressions()["ann@example.org"]
    assert reason == "bounced" and source.startswith("bounce mail: 5.1.1") and "User unknown" in source
    assert f"hard bounce 5.1.1: delivery {log.pk} of campaign {log.campaign_id} (matched by bounce token)" in output
    assert "ann@example.org" not in output  # ids, never addresses


def test_the_same_bounce_twice_or_read_again_changes_nothing_twice(tmp_path):
    log = sent("ann@example.org")
    bounce = dsn(log.email, token=bounce_token(log.pk))
    run(tmp_path, bounce)

    output = run(tmp_path, bounce, bounce)

    assert counters(log.campaign_id)["bounced_count"] == 1
    assert Suppression.objects.count() == 1
    assert "0 applied, 2 already applied earlier" in output


def test_bounces_out_of_order_change_nothing_twice(tmp_path):
    log = sent("ann@example.org")
    token = bounce_token(log.pk)
    hard = dsn(log.email, token=token, bounce_id="<b-hard@mx>")
    soft = dsn(log.email, token=token, status="4.2.2", diagnostic="smtp; 452 4.2.2 mailbox full",
               bounce_id="<b-soft@mx>")
    delayed = dsn(log.email, token=token, status="4.4.1", action="delayed", diagnostic="timeout",
                  bounce_id="<b-delayed@mx>")

    run(tmp_path, hard, delayed)  # the final failure before the "still trying" notice
    run(tmp_path, soft, hard, delayed)

    log.refresh_from_db()
    assert counters(log.campaign_id) == {"bounced_count": 1, "soft_bounced_count": 1, "complained_count": 0}
    assert suppressions()["ann@example.org"][0] == "bounced"


def test_a_soft_bounce_is_recorded_and_counted_and_suppresses_only_at_the_limit(tmp_path, settings):
    settings.SOFT_BOUNCE_LIMIT, settings.SOFT_BOUNCE_DAYS = 3, 30
    logs = [sent("full@example.org", campaign=CampaignFactory()) for _ in range(3)]
    soft = [dsn(log.email, token=bounce_token(log.pk), status="5.2.2", bounce_id=f"<soft-{log.pk}@mx>",
                diagnostic="smtp; 552 5.2.2 Mailbox full") for log in logs]

    output = run(tmp_path, soft[0], soft[1], soft[0], soft[1])  # replays and repeats of the same ones

    assert "soft bounce 5.2.2" in output
    for log in logs[:2]:
        log.refresh_from_db()
        assert log.soft_bounced_at is not None and log.bounced_at is None and "Mailbox full" in log.last_error
        assert counters(log.campaign_id)["soft_bounced_count"] == 1
    assert not Suppression.objects.exists()  # two of three: below the limit

    run(tmp_path, soft[2])
    assert suppressions() == {"full@example.org": ("bounced", "3 soft bounces within 30 days")}


def test_soft_bounces_older_than_the_window_do_not_count(tmp_path, settings):
    settings.SOFT_BOUNCE_LIMIT, settings.SOFT_BOUNCE_DAYS = 2, 30
    old = sent("full@example.org", campaign=CampaignFactory(), soft_bounced_at=timezone.now() - timedelta(days=40))
    log = sent("full@example.org", campaign=CampaignFactory())

    run(tmp_path, dsn(log.email, token=bounce_token(log.pk), status="4.2.2", diagnostic="452 4.2.2 full"))

    assert old.pk and not Suppression.objects.exists()


def test_an_arf_complaint_marks_the_delivery_complained_and_suppresses(tmp_path):
    log = sent("ann@example.org")

    output = run(tmp_path, arf(log.email, token=bounce_token(log.pk)))

    log.refresh_from_db()
    assert log.complained_at is not None
    assert counters(log.campaign_id)["complained_count"] == 1
    assert suppressions()["ann@example.org"][0] == "complained"
    assert "complaint" in output


@pytest.mark.parametrize("name", ["rfc3834-01.eml", "rfc3834-03.eml"])
def test_auto_replies_change_nothing(tmp_path, name):
    log = sent("kijitora@example.net")

    output = run(tmp_path, sample(name))

    assert counters(log.campaign_id) == {"bounced_count": 0, "soft_bounced_count": 0, "complained_count": 0}
    assert not Suppression.objects.exists() and not UnreadBounce.objects.exists()
    assert "auto-reply" in output and "nothing to do" in output


@pytest.mark.parametrize("name, hard", [
    ("lhost-amavis-01.eml", True),  # amavis DSN
    ("lhost-sendmail-28.eml", True),  # Sendmail
    ("lhost-office365-11.eml", True),  # Exchange Online
    ("lhost-gmail-18.eml", True),  # Gmail, plain text
    ("lhost-exim-01.eml", False),  # Exim, policy
    ("lhost-qmail-14.eml", False),  # qmail, DMARC
    ("lhost-yahoo-11.eml", False),  # Yahoo
    ("rfc3464-56.eml", False),  # RFC 3464, expired
])
def test_real_bounces_match_the_address_s_latest_sent_delivery_and_apply(tmp_path, name, hard):
    older = sent("ours@example.org", campaign=CampaignFactory())
    DeliveryLog.objects.filter(pk=older.pk).update(sent_at=timezone.now() - timedelta(days=2))
    log = sent("ours@example.org", campaign=CampaignFactory())

    output = run(tmp_path, sample(name, address="ours@example.org"))

    log.refresh_from_db()
    assert "matched by address, latest sent delivery" in output or "matched by Message-ID" in output
    assert (log.bounced_at is not None) is hard and (log.soft_bounced_at is not None) is not hard
    assert Suppression.objects.filter(email="ours@example.org").exists() is hard
    assert DeliveryLog.objects.get(pk=older.pk).bounced_at is None


def test_a_bounce_for_an_address_we_did_not_mail_lately_changes_nothing(tmp_path, settings):
    settings.BOUNCE_MATCH_WINDOW_DAYS = 14
    log = sent("ann@example.org")
    DeliveryLog.objects.filter(pk=log.pk).update(sent_at=timezone.now() - timedelta(days=20))

    output = run(tmp_path, dsn("ann@example.org"), dsn("stranger@example.org", bounce_id="<b2@mx>"))

    assert output.count("no delivery of ours matches; nothing changed") == 2
    assert not Suppression.objects.exists()


def test_a_forged_token_matches_nothing(tmp_path, settings):
    log = sent("ann@example.org")
    token = bounce_token(log.pk)
    forged = token[:-5] + ("a" if token[-5] != "a" else "b") + token[-4:]  # a tag character changed
    settings.BOUNCE_MATCH_WINDOW_DAYS = 0  # and no fallback by address

    output = run(tmp_path, dsn("someone@example.org", token=forged, message_id="<not-ours@example.com>"))

    assert "no delivery of ours matches" in output
    assert not Suppression.objects.exists()


def test_a_bounce_to_the_verp_address_names_its_delivery(tmp_path):
    ann = sent("ann@example.org")
    verp = f"bounces+{bounce_token(ann.pk).upper()}@bounces.example.com"  # servers may change the case

    output = run(tmp_path, dsn("forwarded-to@elsewhere.example", envelope_to=verp, message_id="<x@y>"))

    ann.refresh_from_db()
    assert ann.bounced_at is not None and "matched by bounce token" in output
    assert suppressions()["ann@example.org"][0] == "bounced"


def test_the_message_id_of_the_returned_copy_names_the_delivery(tmp_path):
    ann = sent("ann@example.org")

    output = run(tmp_path, dsn("ann@example.org", message_id=ann.provider_message_id))

    assert "matched by Message-ID" in output
    assert DeliveryLog.objects.get(pk=ann.pk).bounced_at is not None


def test_what_cannot_be_read_is_kept_once_and_changes_nothing(tmp_path):
    sent("ann@example.org")
    unreadable = b"From: ann@example.org\r\nSubject: Re: News\r\nMessage-ID: <r1@x>\r\n\r\nPlease call me.\r\n"

    output = run(tmp_path, unreadable, unreadable)

    assert "kept for staff" in output
    kept = UnreadBounce.objects.get()
    assert kept.subject == "Re: News" and bytes(kept.raw) == unreadable and kept.reason
    assert not Suppression.objects.exists()


def test_mail_sent_through_an_account_with_a_bounce_domain_carries_the_token_and_its_bounce_finds_it(
        tmp_path, sink):
    campaign = CampaignFactory()
    logs = [sent(f"p{n}@example.org", campaign=campaign) for n in range(2)]
    SmtpProvider(host="127.0.0.1", port=sink.port, security="none", bounce_domain="bounces.example.com").send_batch(
        make_batch([(log.pk, log.email, "", "", {}) for log in logs], campaign_id=campaign.pk))
    messages = {message["X-Sink-Rcpt-To"]: message for message in sink.messages()}
    first = messages["p0@example.org"]
    assert first["X-Sink-Mail-From"] == f"bounces+{bounce_token(logs[0].pk)}@bounces.example.com"
    assert first["X-Mailer-Delivery"] == bounce_token(logs[0].pk)

    # The receiving server returns the message's headers, without our envelope.
    run(tmp_path, dsn("p0@example.org", token=first["X-Mailer-Delivery"], message_id="<other@x>"))

    assert DeliveryLog.objects.get(pk=logs[0].pk).bounced_at is not None
    assert DeliveryLog.objects.get(pk=logs[1].pk).bounced_at is None


@pytest.mark.django_db(transaction=True)
def test_postfix_s_pipe_gives_an_mbox_on_standard_input_and_the_command_says_what_it_did():
    ann, bob = sent("ann@example.org"), sent("bob@example.org")
    mbox = (b"From MAILER-DAEMON Mon Dec  7 10:00:00 2026\n" + dsn(ann.email, token=bounce_token(ann.pk)).replace(
        b"\r\n", b"\n") + b"\nFrom MAILER-DAEMON Mon Dec  7 10:00:01 2026\n"
        + arf(bob.email, token=bounce_token(bob.pk)).replace(b"\r\n", b"\n") + b"\n")

    result = subprocess.run([sys.executable, "manage.py", "process_bounce_mail", "-"], cwd=ROOT, input=mbox,
                            env=service_env(), capture_output=True, timeout=120)

    assert result.returncode == 0, result.stderr.decode()
    output = result.stdout.decode()
    assert "standard input #1: bounce" in output and "standard input #2: complaint" in output
    assert output.strip().splitlines()[-1] == (
        "2 message(s): 1 bounce, 1 complaint. Events: 2 applied, 0 already applied earlier, 2 address(es) newly "
        "suppressed; 0 kept unread.")
    assert suppressions() == {"ann@example.org": ("bounced", suppressions()["ann@example.org"][1]),
                              "bob@example.org": ("complained", "complaint report (ARF): feedback type abuse")}


def test_a_missing_file_is_a_clear_error_and_nothing_is_applied(tmp_path):
    log = sent("ann@example.org")
    good = tmp_path / "good.eml"
    good.write_bytes(dsn(log.email, token=bounce_token(log.pk)))

    with pytest.raises(Exception, match="missing.eml: No such file"):
        call_command("process_bounce_mail", str(good), str(tmp_path / "missing.eml"), stdout=io.StringIO())
    assert not Suppression.objects.exists()


def test_with_the_database_down_the_pipe_is_told_to_try_again_later():
    from localservers.ports import free_port

    env = service_env()
    env["DATABASE_URL"] = f"postgres://nobody@127.0.0.1:{free_port()}/nothing"  # nothing listens there

    result = subprocess.run([sys.executable, "manage.py", "process_bounce_mail", "-"], cwd=ROOT, input=dsn("a@b.example"),
                            env=env, capture_output=True, timeout=120)

    assert result.returncode == 75, result.stderr.decode()  # EX_TEMPFAIL: Postfix defers and retries
    assert "the database is unavailable, nothing was applied; try again later" in result.stderr.decode()
