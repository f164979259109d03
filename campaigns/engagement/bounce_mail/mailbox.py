"""The bounce mailboxes of the sending accounts, read every minute by beat on the `bounces` queue.

IMAP (imaplib) and POP3 (poplib), with implicit TLS, STARTTLS or neither. Messages are read in
chunks of CHUNK: each chunk is applied (campaigns.engagement.bounce_mail.processing, one
transaction) and only then deleted or moved (IMAP MOVE, else COPY and delete). A crash between the
two leaves the chunk in the mailbox, read again next time: replays change nothing twice. At most
BOUNCE_POLL_MAX_MESSAGES are read per poll; the rest wait for the next minute.

One poll per account at a time: a PostgreSQL advisory lock per account, so a slow mailbox and the
next minute's poll never read the same messages together.
"""

from __future__ import annotations

import imaplib
import logging
import poplib
import re
import ssl
from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from django.utils import timezone

from campaigns.engagement.bounce_mail.processing import process
from campaigns.exceptions import BounceMailboxError
from campaigns.models import SendingAccount

logger = logging.getLogger(__name__)

CHUNK = 200
# The advisory lock's first key: "bnce"; the second is the account's id.
LOCK_CLASS = 0x626E6365


@dataclass
class PollResult:
    account_id: int
    read: int = 0
    removed: int = 0
    skipped: bool = False  # another poll of this account was running
    error: str = ""


def poll_all() -> list[PollResult]:
    """Poll every enabled account that has a bounce mailbox."""
    results = []
    for account in SendingAccount.objects.filter(enabled=True).exclude(bounce_mailbox=""):
        results.append(poll_account(account))
    return results


def poll_account(account: SendingAccount) -> PollResult:
    """Read, apply and remove the messages waiting in ACCOUNT's bounce mailbox."""
    result = PollResult(account.pk)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [LOCK_CLASS, account.pk])
        if not cursor.fetchone()[0]:
            result.skipped = True
            return result
    try:
        if getattr(account.bounce_password, "undecryptable", None):
            raise BounceMailboxError("the stored bounce mailbox password cannot be decrypted with "
                                     "FIELD_ENCRYPTION_KEY; enter it again")
        imap = account.bounce_mailbox == SendingAccount.BounceMailbox.IMAP
        reader = ImapReader(account) if imap else Pop3Reader(account)
        with reader:
            for chunk in reader.chunks(settings.BOUNCE_POLL_MAX_MESSAGES):
                process([(f"message {key.decode() if isinstance(key, bytes) else key}", raw) for key, raw in chunk],
                        source=f"bounce mailbox of account {account.pk}")
                reader.remove([key for key, _ in chunk])
                result.read += len(chunk)
                result.removed += len(chunk)
    except BounceMailboxError as exc:
        result.error = str(exc)
        logger.warning("Bounce mailbox of account %s: %s", account.pk, exc)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [LOCK_CLASS, account.pk])
    SendingAccount.objects.filter(pk=account.pk).update(bounce_last_polled_at=timezone.now(),
                                                        bounce_last_error=result.error)
    if result.read:
        logger.info("Bounce mailbox of account %s: %s message(s) read and removed", account.pk, result.read)
    return result


def _where(account):
    return f"{account.bounce_host}:{account.bounce_port or account.default_bounce_port()}"


class ImapReader:
    def __init__(self, account):
        self.account = account
        self.conn = None

    def __enter__(self):
        account, timeout = self.account, settings.BOUNCE_MAILBOX_TIMEOUT_SECONDS
        port = account.bounce_port or account.default_bounce_port()
        try:
            if account.bounce_security == SendingAccount.Security.TLS:
                self.conn = imaplib.IMAP4_SSL(account.bounce_host, port, ssl_context=ssl.create_default_context(),
                                              timeout=timeout)
            else:
                self.conn = imaplib.IMAP4(account.bounce_host, port, timeout=timeout)
                if account.bounce_security == SendingAccount.Security.STARTTLS:
                    self.conn.starttls(ssl_context=ssl.create_default_context())
            self.conn.login(account.bounce_username, str(account.bounce_password))
            _, data = self.conn.capability()  # after login: servers announce MOVE only then
            self.can_move = b"MOVE" in (data[0] or b"").upper().split()
            status, detail = self.conn.select(_quoted(account.bounce_folder or "INBOX"))
            if status != "OK":
                raise BounceMailboxError(f"IMAP {_where(account)}: folder {account.bounce_folder!r} cannot be "
                                         f"opened ({_text(detail)})")
            if account.bounce_after_read == SendingAccount.AfterRead.MOVE:
                self.conn.create(_quoted(account.bounce_move_to))  # "already exists" is fine
        except (imaplib.IMAP4.error, OSError, ssl.SSLError) as exc:
            self.close()
            raise BounceMailboxError(f"IMAP {_where(account)}: {_text(exc)}") from exc
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        if self.conn is None:
            return
        try:
            if self.conn.state == "SELECTED":
                self.conn.close()  # expunges what was marked deleted
            self.conn.logout()
        except (imaplib.IMAP4.error, OSError):
            pass
        self.conn = None

    def chunks(self, limit):
        try:
            status, data = self.conn.uid("SEARCH", None, "UNDELETED")
            uids = data[0].split()[:limit] if status == "OK" and data and data[0] else []
            for start in range(0, len(uids), CHUNK):
                wanted = uids[start:start + CHUNK]
                status, data = self.conn.uid("FETCH", b",".join(wanted), "(UID BODY.PEEK[])")
                if status != "OK":
                    raise BounceMailboxError(f"IMAP {_where(self.account)}: FETCH refused ({_text(data)})")
                yield _fetched(data)
        except (imaplib.IMAP4.error, OSError) as exc:
            raise BounceMailboxError(f"IMAP {_where(self.account)}: {_text(exc)}") from exc

    def remove(self, uids):
        if not uids:
            return
        uid_set = b",".join(uids)
        try:
            if self.account.bounce_after_read == SendingAccount.AfterRead.MOVE:
                target = _quoted(self.account.bounce_move_to)
                if self.can_move:
                    self.conn.uid("MOVE", uid_set, target)
                    return
                self.conn.uid("COPY", uid_set, target)
            self.conn.uid("STORE", uid_set, "+FLAGS.SILENT", r"(\Deleted)")
            self.conn.expunge()
        except (imaplib.IMAP4.error, OSError) as exc:
            raise BounceMailboxError(f"IMAP {_where(self.account)}: {_text(exc)}") from exc


UID = re.compile(rb"UID (\d+)")


def _fetched(data):
    """[(uid, raw message)] from an imaplib FETCH answer."""
    messages = []
    for item in data:
        if isinstance(item, tuple) and len(item) == 2:
            found = UID.search(item[0])
            if found:
                messages.append((found.group(1), item[1]))
    return messages


def _quoted(folder):
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _text(value):
    if isinstance(value, (list, tuple)):
        value = b" ".join(v if isinstance(v, bytes) else str(v).encode() for v in value if v)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value)[:300]


class Pop3Reader:
    """POP3 has one folder and no moving: read messages are deleted (DELE, committed by QUIT)."""

    def __init__(self, account):
        self.account = account
        self.conn = None
        self.deleted = False

    def __enter__(self):
        account, timeout = self.account, settings.BOUNCE_MAILBOX_TIMEOUT_SECONDS
        port = account.bounce_port or account.default_bounce_port()
        try:
            if account.bounce_security == SendingAccount.Security.TLS:
                self.conn = poplib.POP3_SSL(account.bounce_host, port, context=ssl.create_default_context(),
                                            timeout=timeout)
            else:
                self.conn = poplib.POP3(account.bounce_host, port, timeout=timeout)
                if account.bounce_security == SendingAccount.Security.STARTTLS:
                    self.conn.stls(context=ssl.create_default_context())
            self.conn.user(account.bounce_username)
            self.conn.pass_(str(account.bounce_password))
        except (poplib.error_proto, OSError, ssl.SSLError) as exc:
            self.close(commit=False)
            raise BounceMailboxError(f"POP3 {_where(account)}: {_text(exc)}") from exc
        return self

    def __exit__(self, exc_type, *exc_info):
        self.close(commit=exc_type is None)

    def close(self, commit=True):
        if self.conn is None:
            return
        try:
            if commit:
                self.conn.quit()  # commits the DELEs
            else:
                self.conn.rset()
                self.conn.quit()
        except (poplib.error_proto, OSError):
            self.conn.close()
        self.conn = None

    def chunks(self, limit):
        try:
            count, _ = self.conn.stat()
            numbers = list(range(1, min(count, limit) + 1))
            for start in range(0, len(numbers), CHUNK):
                chunk = []
                for number in numbers[start:start + CHUNK]:
                    _, lines, _ = self.conn.retr(number)
                    chunk.append((number, b"\r\n".join(lines) + b"\r\n"))
                yield chunk
        except (poplib.error_proto, OSError) as exc:
            raise BounceMailboxError(f"POP3 {_where(self.account)}: {_text(exc)}") from exc

    def remove(self, numbers):
        try:
            for number in numbers:
                self.conn.dele(number)
        except (poplib.error_proto, OSError) as exc:
            raise BounceMailboxError(f"POP3 {_where(self.account)}: {_text(exc)}") from exc
