"""DKIM signing (campaigns/deliverability/dkim.py): every message a sending account with DKIM sends
through a real worker to the SMTP sink verifies with dkimpy against the key published on the local DNS
server; an account without DKIM sends unsigned mail."""

import dkim as dkimpy
import pytest
from django.db import connection

from campaigns import services
from campaigns.deliverability import dkim, dns_checks
from campaigns.models import SendingAccount
from localservers import smtp_sink
from tests.sending.test_pipeline import assert_exactly_once, make_campaign, wait_until_finished
from tests.sending.test_routing import delivered
from tests.support.factories import SendingAccountFactory, pool_of

pytestmark = pytest.mark.slow


def raw_messages(sink):
    messages = []
    for name in smtp_sink.message_files(sink.maildir):
        messages.append((sink.maildir / name).read_bytes())
    return messages


def txt_from_local_dns(name, timeout=5):
    """dkimpy's DNS function, asking the resolver of the DNS checks (the tests' local server)."""
    return "".join(dns_checks.Lookups().query(name.decode("ascii"), "TXT")).encode("ascii")


def verifies(message):
    return dkimpy.verify(message, dnsfunc=txt_from_local_dns)


def signed_account(sink, dns_server, **fields):
    account = SendingAccountFactory(name="signed-relay", port=sink.port, dkim_domain="example.com",
                                    dkim_selector="mailer1", **fields)
    record = dkim.generate_key(account)
    dns_server.txt("mailer1._domainkey.example.com", dkim.record_value(account.dkim_private_key))
    assert record.startswith('mailer1._domainkey.example.com. TXT "v=DKIM1; k=rsa; p=')
    return account


def test_every_message_of_a_dkim_account_is_signed_and_verifies_against_the_published_key(
        start_worker, smtp_sink_server, dns_server, no_sendgrid):
    account = signed_account(smtp_sink_server, dns_server)
    campaign = make_campaign(30, batch_size=10, pool=pool_of(account), from_email="Acme News <news@example.com>",
                             subject="Café news for {{ first_name }} — ünïcode")
    start_worker(["scheduler", "senders"], concurrency=2)

    services.send_now(campaign.pk)
    wait_until_finished(campaign)

    assert_exactly_once(campaign, delivered(smtp_sink_server))
    assert campaign.sent_count == 30
    messages = raw_messages(smtp_sink_server)
    assert len(messages) == 30
    assert all(verifies(message) for message in messages)
    signature = messages[0].split(b"DKIM-Signature:", 1)[1].split(b"; b=", 1)[0].replace(b"\r\n", b"").lower()
    for header in (b"from", b"to", b"subject", b"date", b"message-id", b"list-unsubscribe", b"list-unsubscribe-post",
                   b"mime-version", b"content-type"):
        assert header in signature
    assert b"c=relaxed/relaxed" in signature and b"d=example.com" in signature and b"s=mailer1" in signature


def test_a_changed_message_or_another_published_key_does_not_verify(
        start_worker, smtp_sink_server, dns_server, no_sendgrid):
    account = signed_account(smtp_sink_server, dns_server)
    campaign = make_campaign(2, batch_size=10, pool=pool_of(account), from_email="news@example.com")
    start_worker(["senders", "scheduler"], concurrency=1)
    services.send_now(campaign.pk)
    wait_until_finished(campaign)
    message = raw_messages(smtp_sink_server)[0]

    assert verifies(message)
    assert not verifies(message.replace(b"Subject: ", b"Subject: Re: ", 1))
    dns_server.clear()
    dns_server.txt("mailer1._domainkey.example.com", dkim.record_value(dkim.generate_private_key()))
    assert not verifies(message)


def test_an_account_without_dkim_sends_unsigned_mail(start_worker, smtp_sink_server, no_sendgrid):
    account = SendingAccountFactory(name="plain-relay", port=smtp_sink_server.port)
    campaign = make_campaign(3, batch_size=10, pool=pool_of(account), from_email="news@example.com")
    start_worker(["scheduler", "senders"], concurrency=1)
    services.send_now(campaign.pk)
    wait_until_finished(campaign)

    messages = raw_messages(smtp_sink_server)
    assert len(messages) == 3 and not any(b"DKIM-Signature:" in message for message in messages)


def test_the_key_is_stored_encrypted_and_the_record_carries_its_public_half(db):
    account = SendingAccountFactory(dkim_domain="example.com", dkim_selector="s1")
    record = dkim.generate_key(account)

    with connection.cursor() as cursor:  # the column as stored, past the field's decryption
        cursor.execute("SELECT dkim_private_key FROM campaigns_sendingaccount WHERE id = %s", [account.pk])
        stored = cursor.fetchone()[0]
    assert stored.startswith("fernet:") and "PRIVATE KEY" not in stored
    reloaded = SendingAccount.objects.get(pk=account.pk)
    assert reloaded.dkim_private_key.startswith("-----BEGIN PRIVATE KEY-----")
    assert dkim.public_key_base64(reloaded.dkim_private_key) in record


def test_generating_a_key_needs_the_domain_and_selector_first(db):
    account = SendingAccountFactory(dkim_domain="example.com")
    with pytest.raises(ValueError, match="selector"):
        dkim.generate_key(account)
    assert not SendingAccount.objects.get(pk=account.pk).dkim_private_key
