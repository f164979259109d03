"""Bounce mailbox poller benchmark: a mailbox of 10,000 bounces in a throwaway Dovecot (localservers/dovecot.py),
read, applied and deleted by the IMAP poller and by the POP3 poller, next to a baseline measured in the same
run: the same messages only fetched with imaplib (no reading, no database, nothing deleted).

    .venv/bin/python scripts/devstack.py exec .venv/bin/python benchmarks/bounce_poll_bench.py
    ... benchmarks/bounce_poll_bench.py --messages 10000

(`scripts/devstack.py exec` gives it a throwaway PostgreSQL and Redis; it migrates that database itself.
Dovecot must be installed: scripts/ensure_dovecot.sh, which `make test` runs.)

The mailbox holds a realistic mix for --messages deliveries sent a minute ago: 40 % hard bounces (RFC 3464,
with our signed header), 25 % soft bounces, 10 % complaints (ARF), 10 % auto-replies, 10 % real qmail and
Exim bounces matched by address, 5 % unreadable messages. After each poll the counters are checked against
what was delivered. The last line is `messages_per_sec=N` (the IMAP poller).
"""

from __future__ import annotations

import argparse
import imaplib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailer_project.settings")
os.environ.setdefault("DEBUG", "True")

from localservers.dovecot import PASSWORD, Dovecot, available  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    args = parser.parse_args(argv)
    if "DATABASE_URL" not in os.environ:
        sys.exit("Set DATABASE_URL, or run under: python scripts/devstack.py exec python benchmarks/bounce_poll_bench.py")
    if available():
        sys.exit(available())
    os.environ["BOUNCE_POLL_MAX_MESSAGES"] = str(args.messages)

    import django
    django.setup()
    from django.core.management import call_command
    call_command("migrate", "--noinput", verbosity=0)

    base = Path(tempfile.mkdtemp(prefix="mailer-dovecot-bench-"))
    base.chmod(0o755)
    server = Dovecot(base)
    server.start()
    try:
        results = {}
        for kind in ("imap", "pop3"):
            campaign_id, logs = create_campaign(args.messages, kind)
            user = server.new_user()
            expected = fill(server, user, logs)
            if kind == "imap":
                baseline = fetch_only(server, user, args.messages)
                print(f"== baseline, imaplib fetching {args.messages:,} messages (nothing read or applied): "
                      f"{baseline:,.0f} messages/s", flush=True)
            rate = poll(server, user, kind, args.messages)
            check(campaign_id, expected)
            assert server.count(user) == 0, "messages left in the mailbox"
            results[kind] = rate
            print(f"== {kind.upper()} poller: {args.messages:,} messages read, applied and deleted: {rate:,.0f} "
                  f"messages/s ({rate / baseline:.2f}x the fetch-only baseline)", flush=True)
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    print(f"messages_per_sec={results['imap']:.0f}")


def create_campaign(count, label):
    from django.db import connection

    from campaigns.models import Campaign

    campaign = Campaign.objects.create(name=f"bounce bench {label}", subject="s", html_body="x",
                                       status=Campaign.Status.COMPLETED, total_recipients=count, sent_count=count)
    with connection.cursor() as cursor:
        cursor.execute("""
            INSERT INTO campaigns_recipient (campaign_id, email, first_name, last_name, data)
            SELECT %(c)s, %(label)s || '-user' || n || '@example.com', '', '', '{}'::jsonb
            FROM generate_series(1, %(n)s) n""", {"c": campaign.pk, "n": count, "label": label})
        cursor.execute("""
            INSERT INTO campaigns_deliverylog (campaign_id, recipient_id, email, status, batch_number, provider,
                provider_message_id, attempts, last_error, sent_at, updated_at)
            SELECT r.campaign_id, r.id, r.email, 'sent', 0, 'smtp', '<' || r.id || '@example.com>', 1, '',
                   now() - interval '1 minute', now()
            FROM campaigns_recipient r WHERE r.campaign_id = %(c)s ORDER BY r.id""", {"c": campaign.pk})
        cursor.execute("SELECT id, email FROM campaigns_deliverylog WHERE campaign_id = %s ORDER BY id", [campaign.pk])
        logs = cursor.fetchall()
        cursor.execute("ANALYZE campaigns_deliverylog")
    return campaign.pk, logs


def fill(server, user, logs):
    """One message per delivery, in the mix of the module docstring; the counters it should produce."""
    from campaigns.message.signed_links import bounce_token
    from tests.support.bounces import arf, dsn, sample

    expected = {"bounced_count": 0, "soft_bounced_count": 0, "complained_count": 0}
    for number, (pk, email) in enumerate(logs):
        slot, token, bounce_id = number % 20, bounce_token(pk), f"<bench-{pk}@mx.example.net>"
        if slot < 8:
            raw, counter = dsn(email, token=token, bounce_id=bounce_id), "bounced_count"
        elif slot < 13:
            raw, counter = dsn(email, token=token, status="4.2.2", diagnostic="smtp; 452 4.2.2 Mailbox full",
                               bounce_id=bounce_id), "soft_bounced_count"
        elif slot < 15:
            raw, counter = arf(email, token=token, bounce_id=bounce_id), "complained_count"
        elif slot < 17:
            raw, counter = sample("rfc3834-01.eml").replace(b"Subject:", f"Message-ID: {bounce_id}\nSubject:".encode(), 1), None
        elif slot < 19:
            name = "lhost-qmail-14.eml" if slot == 17 else "lhost-exim-01.eml"
            raw = sample(name, address=email).replace(b"Subject:", f"Message-ID: {bounce_id}\nSubject:".encode(), 1)
            counter = "soft_bounced_count"
        else:
            raw, counter = f"From: someone@example.org\nSubject: hello {pk}\nMessage-ID: {bounce_id}\n\nHi\n".encode(), None
        server.deliver(user, raw)
        if counter:
            expected[counter] += 1
    return expected


def fetch_only(server, user, count):
    began = time.perf_counter()
    conn = imaplib.IMAP4("127.0.0.1", server.imap_port)
    conn.login(user, PASSWORD)
    conn.select("INBOX", readonly=True)
    _, data = conn.uid("SEARCH", None, "ALL")
    uids = data[0].split()
    fetched = 0
    for start in range(0, len(uids), 200):
        _, data = conn.uid("FETCH", b",".join(uids[start:start + 200]), "(UID BODY.PEEK[])")
        fetched += sum(1 for item in data if isinstance(item, tuple))
    conn.logout()
    assert fetched == count, (fetched, count)
    return count / (time.perf_counter() - began)


def poll(server, user, kind, count):
    from campaigns.engagement.bounce_mail import mailbox
    from campaigns.models import SendingAccount

    account = SendingAccount.objects.create(
        name=f"bench-{kind}", kind="smtp", host="127.0.0.1", security="none", bounce_mailbox=kind,
        bounce_host="127.0.0.1", bounce_port=server.imap_port if kind == "imap" else server.pop3_port,
        bounce_security="none", bounce_username=user, bounce_password=PASSWORD)
    began = time.perf_counter()
    result = mailbox.poll_account(account)
    elapsed = time.perf_counter() - began
    assert (result.read, result.error) == (count, ""), result
    return count / elapsed


def check(campaign_id, expected):
    from campaigns.models import Campaign

    found = Campaign.objects.filter(pk=campaign_id).values(*expected).get()
    assert found == expected, (found, expected)


if __name__ == "__main__":
    main()
