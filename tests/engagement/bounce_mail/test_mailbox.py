"""The IMAP and POP3 pollers against a real Dovecot (localservers/dovecot.py): bounces delivered into the
account's Maildir are read, applied, and deleted or moved; a wrong password is recorded on the account;
the periodic task is registered on its own queue and run by a real worker."""

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.engagement.bounce_mail import mailbox
from campaigns.message.signed_links import bounce_token
from campaigns.models import DeliveryLog, SendingAccount, Suppression, UnreadBounce
from campaigns.operations.periodic import PERIODIC_TASKS
from tests.support.bounces import arf, dsn, sample
from localservers.dovecot import PASSWORD
from tests.support.factories import DeliveryLogFactory, SendingAccountFactory
from tests.sending.conftest import wait_until

pytestmark = pytest.mark.django_db


def sent(email):
    return DeliveryLogFactory(recipient__email=email, status=DeliveryLog.Status.SENT,
                              sent_at=timezone.now() - timedelta(minutes=1))


def account_reading(dovecot, kind, after_read=SendingAccount.AfterRead.DELETE, password=PASSWORD, **fields):
    user = dovecot.new_user()
    account = SendingAccountFactory(
        bounce_mailbox=kind, bounce_host="127.0.0.1", bounce_security=SendingAccount.Security.NONE,
        bounce_port=dovecot.imap_port if kind == SendingAccount.BounceMailbox.IMAP else dovecot.pop3_port,
        bounce_username=user, bounce_password=password, bounce_after_read=after_read, **fields)
    return account, user


MESSAGES = 9


def deliver_every_outcome(dovecot, user):
    """Every outcome, in several formats: RFC 3464 with our header, ARF, an auto-reply, and real Gmail,
    Office 365, Exim and qmail bounces matched by address; and one message that is none of these."""
    hard, soft, complained, other = (sent(f"{name}@example.org") for name in ("hard", "soft", "complained", "other"))
    gmail, office365, exim = (sent(f"{name}@example.org") for name in ("gmail", "office365", "exim"))
    dovecot.deliver(user, sample("lhost-gmail-18.eml", address=gmail.email))
    dovecot.deliver(user, sample("lhost-office365-11.eml", address=office365.email))
    dovecot.deliver(user, sample("lhost-exim-01.eml", address=exim.email))
    dovecot.deliver(user, dsn(hard.email, token=bounce_token(hard.pk), bounce_id="<h@mx>"))
    dovecot.deliver(user, dsn(soft.email, token=bounce_token(soft.pk), status="4.2.2", bounce_id="<s@mx>",
                              diagnostic="smtp; 452 4.2.2 Mailbox full"))
    dovecot.deliver(user, arf(complained.email, token=bounce_token(complained.pk)))
    dovecot.deliver(user, sample("rfc3834-01.eml"))  # an auto-reply
    dovecot.deliver(user, sample("lhost-qmail-14.eml", address=other.email))  # qmail, a policy refusal
    dovecot.deliver(user, b"From: a@example.org\r\nSubject: hello\r\nMessage-ID: <u@x>\r\n\r\nA person wrote.\r\n")
    return hard, soft, complained, other, gmail, office365, exim


def assert_every_outcome_applied(hard, soft, complained, other, gmail, office365, exim):
    for log in (hard, soft, complained, other, gmail, office365, exim):
        log.refresh_from_db()
    for log in (hard, gmail, office365):
        assert log.bounced_at and not log.soft_bounced_at
    for log in (soft, other, exim):
        assert log.soft_bounced_at and not log.bounced_at
    assert complained.complained_at
    assert {s.email: s.reason for s in Suppression.objects.all()} == {
        "hard@example.org": "bounced", "gmail@example.org": "bounced", "office365@example.org": "bounced",
        "complained@example.org": "complained"}
    assert UnreadBounce.objects.count() == 1


@pytest.mark.parametrize("kind", [SendingAccount.BounceMailbox.IMAP, SendingAccount.BounceMailbox.POP3])
def test_the_poller_reads_applies_and_deletes_every_kind_of_message(dovecot, kind):
    account, user = account_reading(dovecot, kind)
    logs = deliver_every_outcome(dovecot, user)

    result = mailbox.poll_account(account)

    assert (result.read, result.error) == (MESSAGES, "")
    assert_every_outcome_applied(*logs)
    assert dovecot.count(user) == 0
    account.refresh_from_db()
    assert account.bounce_last_polled_at is not None and account.bounce_last_error == ""


def test_imap_moves_read_messages_to_the_folder_named(dovecot):
    account, user = account_reading(dovecot, SendingAccount.BounceMailbox.IMAP,
                                    after_read=SendingAccount.AfterRead.MOVE, bounce_move_to="Processed")
    logs = deliver_every_outcome(dovecot, user)

    mailbox.poll_account(account)

    assert_every_outcome_applied(*logs)
    assert dovecot.count(user) == 0 and dovecot.count(user, "Processed") == MESSAGES


@pytest.mark.parametrize("kind", [SendingAccount.BounceMailbox.IMAP, SendingAccount.BounceMailbox.POP3])
def test_a_mailbox_read_again_before_its_messages_were_removed_changes_nothing_twice(dovecot, kind):
    account, user = account_reading(dovecot, kind)
    hard = sent("hard@example.org")
    bounce = dsn(hard.email, token=bounce_token(hard.pk))
    dovecot.deliver(user, bounce)
    mailbox.poll_account(account)
    dovecot.deliver(user, bounce)  # the same bounce again (a crash before removal, or the server sent it twice)

    mailbox.poll_account(account)

    assert DeliveryLog.objects.get(pk=hard.pk).campaign.bounced_count == 1
    assert Suppression.objects.count() == 1 and dovecot.count(user) == 0


@pytest.mark.parametrize("kind", [SendingAccount.BounceMailbox.IMAP, SendingAccount.BounceMailbox.POP3])
def test_a_wrong_password_is_recorded_on_the_account_and_nothing_is_read(dovecot, kind):
    account, user = account_reading(dovecot, kind, password="wrong")
    dovecot.deliver(user, dsn("x@example.org"))

    result = mailbox.poll_account(account)

    account.refresh_from_db()
    assert result.read == 0 and "127.0.0.1" in account.bounce_last_error
    assert "wrong" not in account.bounce_last_error  # never the password
    assert dovecot.count(user) == 1


def test_beat_polls_every_minute_on_the_bounces_queue():
    from mailer_project.celery import app

    assert PERIODIC_TASKS["Bounces: read the sending accounts' bounce mailboxes"] == (
        "campaigns.tasks.bounces.poll_bounce_mailboxes", 60)
    route = app.amqp.router.route({}, "campaigns.tasks.bounces.poll_bounce_mailboxes")
    assert route["queue"].name == "bounces"


@pytest.mark.django_db(transaction=True)
def test_a_bounces_worker_runs_the_periodic_poll(dovecot, start_worker):
    from campaigns.tasks.bounces import poll_bounce_mailboxes

    account, user = account_reading(dovecot, SendingAccount.BounceMailbox.IMAP)
    hard = sent("hard@example.org")
    dovecot.deliver(user, dsn(hard.email, token=bounce_token(hard.pk)))
    start_worker(["bounces"], concurrency=1)

    poll_bounce_mailboxes.delay()

    wait_until(lambda: DeliveryLog.objects.get(pk=hard.pk).bounced_at is not None, timeout=60)
    wait_until(lambda: dovecot.count(user) == 0, timeout=30)
    assert Suppression.objects.filter(email="hard@example.org", reason="bounced").exists()


@pytest.mark.parametrize("kind, security", [
    (SendingAccount.BounceMailbox.IMAP, SendingAccount.Security.TLS),
    (SendingAccount.BounceMailbox.IMAP, SendingAccount.Security.STARTTLS),
    (SendingAccount.BounceMailbox.POP3, SendingAccount.Security.TLS),
    (SendingAccount.BounceMailbox.POP3, SendingAccount.Security.STARTTLS),
])
def test_the_mailbox_is_read_over_tls_or_starttls_with_the_certificate_verified(dovecot, monkeypatch, kind, security):
    monkeypatch.setenv("SSL_CERT_FILE", str(dovecot.ca_file))  # trust the throwaway server's certificate
    account, user = account_reading(dovecot, kind)
    tls = security == SendingAccount.Security.TLS
    ports = {SendingAccount.BounceMailbox.IMAP: (dovecot.imaps_port, dovecot.imap_port),
             SendingAccount.BounceMailbox.POP3: (dovecot.pop3s_port, dovecot.pop3_port)}[kind]
    SendingAccount.objects.filter(pk=account.pk).update(bounce_security=security, bounce_port=ports[0 if tls else 1])
    account.refresh_from_db()
    hard = sent("hard@example.org")
    dovecot.deliver(user, dsn(hard.email, token=bounce_token(hard.pk)))

    result = mailbox.poll_account(account)

    assert (result.read, result.error) == (1, "")
    assert DeliveryLog.objects.get(pk=hard.pk).bounced_at is not None


def test_a_certificate_that_does_not_verify_is_refused_and_recorded(dovecot):
    account, user = account_reading(dovecot, SendingAccount.BounceMailbox.IMAP)
    SendingAccount.objects.filter(pk=account.pk).update(bounce_security=SendingAccount.Security.TLS,
                                                        bounce_port=dovecot.imaps_port)
    account.refresh_from_db()
    dovecot.deliver(user, dsn("x@example.org"))

    result = mailbox.poll_account(account)

    account.refresh_from_db()
    assert result.read == 0 and "CERTIFICATE_VERIFY_FAILED" in account.bounce_last_error
    assert dovecot.count(user) == 1
