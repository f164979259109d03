"""SMTP: one connection per batch, each message rendered in full and sent with MAIL/RCPT/DATA so that
every refusal is attributed to its recipient and its phase.

Each message is built while the server is still processing the previous one's DATA (its reply is
read afterwards), so building costs little wall time next to the server's own work.

The ledger (Batch.ledger): messages are paced one by one under the shared rate limit; each is marked
"call began" once RCPT was accepted and DATA sent, before any content, only if the batch still owns
it; results are written per run of at most SEND_SMTP_CHUNK messages, and a run ends before every
rate-limit wait. So a crash leaves at
most one run's rows unknown, each of them accepted by the server or in flight on the connection.
"""

import binascii
import logging
import re
import secrets
import smtplib
import ssl
from email.policy import Compat32
from email.utils import formataddr, formatdate, make_msgid, parseaddr

from django.conf import settings
from django.core.mail.utils import DNS_NAME

from campaigns.exceptions import (
    AuthenticationRefused,
    ConnectionLost,
    NeedsSmtpUtf8,
    ProviderError,
    ProviderRefused,
    ProviderUnavailable,
    TemporaryError,
)
from campaigns.sending import ratelimit
from campaigns.sending.providers.base import DeliveryResult, Outcome, Provider, ascii_domain, list_unsubscribe_headers
from campaigns.sending.providers.smtp_replies import Phase, Scope, classify, uniform_refusal

logger = logging.getLogger(__name__)


class _SmtpPolicy(Compat32):
    """compat32 header folding (email.header, RFC 2047 for non-ASCII) with CRLF line endings, and a
    shortcut for the common header that is short plain ASCII: compat32 would write it unchanged,
    only after a costly trip through email.header."""

    def _fold(self, name, value, sanitize):
        if isinstance(value, str) and len(name) + len(value) < 76 and value.isascii():
            return f"{name}: {value}{self.linesep}"
        return super()._fold(name, value, sanitize)


SMTP_POLICY = _SmtpPolicy(linesep="\r\n")
MAX_LINE_BYTES = 998  # RFC 5321: a longer line must be quoted-printable
NEWLINES = re.compile(r"\r\n|\r|\n")
LINE_BREAKS = re.compile(r"[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]+")


# What SmtpSession.start returns when the batch's claim no longer owns the message: nothing left.
NOT_OWNED = "not owned"


def _envelope_address(address, smtputf8):
    """The address as it goes in RCPT TO: an IDNA domain when the local part is ASCII; as it stands
    (UTF-8) when it is not and the server offers SMTPUTF8 (RFC 6531). Raises NeedsSmtpUtf8."""
    if not address.rpartition("@")[0].isascii():
        if not smtputf8:
            raise NeedsSmtpUtf8(
                "the address has a non-ASCII local part, which needs SMTPUTF8 (RFC 6531), and the SMTP server "
                "does not offer it; send to it through a server that does")
        return address
    return ascii_domain(address)


def _to_header(display_name, address):
    """The To header. An address with a non-ASCII local part (sent with SMTPUTF8) travels raw in
    UTF-8 (RFC 6532): no encoded word may stand for an address. The name is quoted or RFC 2047-encoded
    either way."""
    display_name = LINE_BREAKS.sub(" ", display_name)  # recipient data must never start a header
    if address.isascii():
        return SMTP_POLICY.fold_binary("To", formataddr((display_name, address), charset="utf-8"))
    if not display_name:
        return f"To: {address}\r\n".encode("utf-8")
    # formataddr refuses a non-ASCII address, so it formats the name alone.
    name = formataddr((display_name, "x@x"), charset="utf-8").rsplit(" <", 1)[0]
    return f"To: {name} <{address}>\r\n".encode("utf-8")


def _text_part(subtype, text, eight_bit_ok):
    """A text/* MIME part with CRLF line endings: 7bit or 8bit as it stands when it can travel so,
    else quoted-printable."""
    data = (NEWLINES.sub("\n", text) if "\r" in text else text).encode("utf-8")
    ascii_only = data.isascii()
    if (ascii_only or eight_bit_ok) and max(map(len, data.split(b"\n"))) <= MAX_LINE_BYTES:
        encoding = "7bit" if ascii_only else "8bit"
    else:
        encoding, data = "quoted-printable", binascii.b2a_qp(data, istext=True)
    head = f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n'
    return head.encode("ascii") + data.replace(b"\n", b"\r\n")


class MessageBuilder:
    """Builds one recipient's complete message; everything shared by the batch is computed once.

    The email package's headers and quoted-printable encoder are used, but the multipart/alternative
    skeleton is joined here: its generator costs several times the whole budget per message."""

    def __init__(self, batch):
        self.batch = batch
        from_name, self.envelope_from = parseaddr(batch.from_email)
        self.from_header = formataddr((from_name, self.envelope_from), charset="utf-8")
        self.reply_to = formataddr(parseaddr(batch.reply_to), charset="utf-8") if batch.reply_to else ""
        self.msgid_domain = self.envelope_from.rpartition("@")[2] or DNS_NAME.get_fqdn()
        self.campaign_id = str(batch.campaign_id)
        self.tracking = batch.tracking
        self.compiled = batch.tracking.compiled if batch.tracking else batch.compiled

    def build(self, message, eight_bit_ok, smtputf8=False):
        """(envelope recipient, Message-ID, DATA bytes: dots stuffed, ending with the final dot)."""
        rcpt = _envelope_address(message.email, smtputf8)
        context = message.context
        if self.tracking:
            context = {**context, **self.tracking.values(message.delivery_id)}
        rendered = self.compiled.render(context)
        display_name = " ".join(part for part in (context.get("first_name"), context.get("last_name")) if part)
        message_id = make_msgid(domain=self.msgid_domain)
        parts = [_text_part(subtype, body, eight_bit_ok)
                 for subtype, body in (("plain", rendered.text), ("html", rendered.html)) if body]
        boundary = secrets.token_hex(16)

        headers = [("From", self.from_header), ("Subject", rendered.subject), ("Date", formatdate(usegmt=True)),
                   ("Message-ID", message_id)]
        if self.reply_to:
            headers.append(("Reply-To", self.reply_to))
        headers += list_unsubscribe_headers(context.get("unsubscribe_url", "")).items()
        headers += [("X-Campaign-ID", self.campaign_id), ("X-Delivery-ID", str(message.delivery_id)),
                    ("MIME-Version", "1.0"), ("Content-Type", f'multipart/alternative; boundary="{boundary}"')]
        # Recipient data must never start a header of its own.
        head = _to_header(display_name, rcpt) + b"".join(
            SMTP_POLICY.fold_binary(header, LINE_BREAKS.sub(" ", value)) for header, value in headers)

        delimiter = b"--" + boundary.encode("ascii")
        body = b"".join(delimiter + b"\r\n" + part + b"\r\n" for part in parts) + delimiter + b"--\r\n"
        # Dot-stuffing: the message starts with a header, so every line that starts with a dot follows
        # a line break.
        return rcpt, message_id, (head + b"\r\n" + body).replace(b"\n.", b"\n..") + b".\r\n"


class SmtpSession:
    """One batch's connection: reconnects when the server drops it, and gives up when a fresh
    connection drops before a single message got through."""

    def __init__(self, provider, campaign_id):
        self.provider = provider
        self.campaign_id = campaign_id
        self.conn = None
        self.sent_on_this_connection = 0
        self.reconnects = 0
        self.last_error = ""
        self.refusals = {}  # delivery id -> the Verdict of a refusal, to judge the batch as a whole

    def refused_about_us(self, result):
        """Whether RESULT is a refusal that concerns the sender rather than the recipient."""
        verdict = self.refusals.get(result.delivery_id)
        return verdict is not None and verdict.scope == Scope.SENDER

    def connect(self):
        conn = self.provider.open_connection()
        self.conn, self.sent_on_this_connection = conn, 0
        self.eight_bit_ok = conn.has_extn("8bitmime")
        self.smtputf8 = conn.has_extn("smtputf8")
        self.mail_options = ["BODY=8BITMIME"] if self.eight_bit_ok else []

    def reconnect(self):
        self.drop()
        self.reconnects += 1
        self.connect()

    def drop(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except OSError:
                pass
            self.conn = None

    def close(self):
        if self.conn is not None:
            try:
                self.conn.quit()
            except (smtplib.SMTPException, OSError):
                pass
        self.drop()

    def _command(self, call):
        try:
            code, reply = call()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            raise ConnectionLost(str(exc)) from exc
        if code == 421:  # the server is closing this connection
            raise ConnectionLost(reply.decode("utf-8", "replace"))
        return code, reply.decode("utf-8", "replace")

    def _put(self, command):
        """Send COMMAND without reading its reply."""
        try:
            self.conn.putcmd(command)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            raise ConnectionLost(str(exc)) from exc

    def start(self, envelope_from, rcpt, call_begins=lambda: True):
        """MAIL, RCPT and DATA for one message. None when the server is ready for the content,
        else the Verdict (providers.smtp_replies) of the refusal, or NOT_OWNED.

        CALL_BEGINS runs once DATA is sent, before the server's 354 is read: it records that the
        message is about to leave and says whether the batch still owns it (if not, the transaction
        is reset, or the connection dropped when it is already in DATA, and no content leaves).

        Raises ConnectionLost; ProviderRefused or TemporaryError when MAIL FROM is refused, since
        that refusal is about us and would meet every message."""
        conn = self.conn
        options = self.mail_options + ["SMTPUTF8"] if not rcpt.isascii() else self.mail_options
        code, reply = self._command(lambda: conn.mail(envelope_from, options))
        if code != 250:
            self._command(conn.rset)
            verdict = classify(Phase.MAIL, code, reply)
            if verdict.scope == Scope.SENDER:
                error = ProviderRefused if verdict.outcome == Outcome.FAILED else TemporaryError
                raise error(f"SMTP server {self.provider.host} {verdict.error}", provider=self.provider.name)
            return verdict
        code, reply = self._command(lambda: conn.rcpt(rcpt))
        if code not in (250, 251):
            self._command(conn.rset)
            return classify(Phase.RCPT, code, reply)
        # DATA goes out before the mark, so that the server's 354 travels while the mark commits (one
        # wait instead of two); the content, the first byte that can deliver anything, waits for both.
        self._put("data")
        try:
            owned = call_begins()
        except BaseException:
            self.drop()  # mid-DATA: closing before the final dot delivers nothing (RFC 5321 4.1.1.4)
            raise
        code, reply = self._command(conn.getreply)
        if code != 354:
            self._command(conn.rset)
            return classify(Phase.DATA, code, reply) if owned else NOT_OWNED
        if not owned:
            self.drop()  # the same: the next message opens a new connection
            return NOT_OWNED
        return None

    def send_content(self, data):
        # From the first byte of content on, the server may accept the message whatever happens next.
        try:
            self.conn.send(data)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            return exc
        return None

    def finish(self):
        """The server's reply to a message's content: (outcome, error, Verdict of a refusal or None)."""
        try:
            code, reply = self.conn.getreply()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self.drop()
            return Outcome.UNKNOWN, f"SMTP connection lost after the message was sent ({exc})", None
        reply = reply.decode("utf-8", "replace")
        if code == 250:
            self.sent_on_this_connection += 1
            return Outcome.SENT, "", None
        if code == 421:
            self.drop()
        verdict = classify(Phase.CONTENT, code, reply)
        return verdict.outcome, verdict.error, verdict


class SmtpProvider(Provider):
    """An SMTP server: the environment's (EMAIL_HOST and friends) unless the connection is given, as
    for a sending account (campaigns.sending.routing)."""

    name = "smtp"
    STARTTLS, TLS, PLAIN = "starttls", "tls", "none"

    def __init__(self, host=None, port=None, security=None, username=None, password=None, timeout=None,
                 name=None, rate=None, rate_key=None):
        from_settings = host is None
        self.host = settings.EMAIL_HOST if from_settings else host
        self.port = settings.EMAIL_PORT if from_settings else port
        self.security = (self.STARTTLS if settings.EMAIL_USE_TLS else self.PLAIN) if from_settings else security
        self.username = settings.EMAIL_HOST_USER if from_settings else username
        self.password = settings.EMAIL_HOST_PASSWORD if from_settings else password
        self.timeout = timeout or settings.EMAIL_TIMEOUT
        self.name = name or self.name
        self.rate, self.rate_key = rate, rate_key  # None: SMTP_RATE_LIMIT_PER_SEC under "smtp"

    def is_configured(self):
        return bool(self.host)

    def connect_and_log_in(self):
        """A connection through EHLO, STARTTLS (or implicit TLS) and AUTH; smtplib's errors as they are."""
        connection_class = smtplib.SMTP_SSL if self.security == self.TLS else smtplib.SMTP
        extra = {"context": ssl.create_default_context()} if self.security == self.TLS else {}
        conn = connection_class(self.host, self.port, local_hostname=DNS_NAME.get_fqdn(), timeout=self.timeout,
                                **extra)
        try:
            conn.ehlo()
            if self.security == self.STARTTLS:
                conn.starttls(context=ssl.create_default_context())
                conn.ehlo()
            if self.username:
                conn.login(self.username, self.password)
        except BaseException:
            self._close_quietly(conn)
            raise
        return conn

    def open_connection(self):
        where = f"{self.host}:{self.port}"
        try:
            return self.connect_and_log_in()
        except smtplib.SMTPAuthenticationError as exc:
            raise AuthenticationRefused(f"SMTP server {where} refused our credentials: {exc.smtp_code} "
                                        f"{exc.smtp_error.decode('utf-8', 'replace')}", provider=self.name) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise ProviderRefused(f"SMTP server {where} refused our configuration: {exc}",
                                  provider=self.name) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise TemporaryError(f"SMTP server {where} unreachable: {exc}", provider=self.name) from exc

    @staticmethod
    def _close_quietly(conn):
        if conn is not None:
            try:
                conn.close()
            except OSError:
                pass

    def build_payload(self, batch):
        # Messages are built lazily during delivery (see the module docstring).
        return MessageBuilder(batch)

    def deliver(self, batch, builder):
        session = SmtpSession(self, batch.campaign_id)
        session.connect()  # a refusal here raises: nothing has been sent
        results = [None] * len(batch.messages)
        pacer = ratelimit.Pacer(self.rate_key or self.name, rate=self.rate)
        chunk = max(1, settings.SEND_SMTP_CHUNK)
        run = []  # indexes of the messages whose results are not written yet
        awaiting = None  # (index, message id) whose content was sent and whose reply is unread
        try:
            for index, message in enumerate(batch.messages):
                try:
                    built = builder.build(message, session.eight_bit_ok, session.smtputf8)
                except (ValueError, UnicodeError) as exc:
                    built = exc
                if awaiting is not None:
                    results[awaiting[0]] = self._finished(session, batch, awaiting)
                    awaiting = None
                # This message's place under the shared rate limit. The results so far are written
                # before any wait (and every SEND_SMTP_CHUNK messages), so that no wait ever falls
                # between a message's call-began mark and its result.
                may_start = pacer.try_start()
                if run and (len(run) >= chunk or not may_start):
                    self._record(batch, session, results, run)
                    run = []
                if not may_start:
                    pacer.start()
                run.append(index)
                if isinstance(built, Exception):
                    results[index] = DeliveryResult(message.delivery_id, Outcome.FAILED, error=str(built))
                    continue
                results[index], awaiting = self._send_one(session, builder, batch, message, index, built)
                if results[index] is None and awaiting is None:
                    break  # could not reconnect: the rest of the batch waits for a later attempt
            if awaiting is not None:
                results[awaiting[0]] = self._finished(session, batch, awaiting)
            pacer.done()
            self._record(batch, session, results, run)
        except ProviderError as error:
            # MAIL FROM refused: what was settled before it stands, the rest was not sent.
            error.results = [result for result in results
                             if result is not None and not session.refused_about_us(result)]
            raise
        finally:
            session.close()
        for index, message in enumerate(batch.messages):
            if results[index] is None:
                results[index] = DeliveryResult(
                    message.delivery_id, Outcome.DEFERRED,
                    error=f"SMTP connection lost and not re-established ({session.last_error})")
        self._log(batch, results, session)
        self._refuse_if_refused_as_a_whole(batch, results, session)
        return results

    def _refuse_if_refused_as_a_whole(self, batch, results, session):
        """The same refusal about us for every recipient (relay access denied, DMARC) is a provider
        problem, not N failures: nobody is failed or suppressed, and the batch goes elsewhere."""
        if any(result.outcome != Outcome.FAILED for result in results):
            return
        verdict = uniform_refusal(list(session.refusals.values()))
        if verdict is None:
            return
        logger.error("Campaign %s: SMTP server refused every recipient of the batch alike (%s %s): a provider "
                     "problem, nobody failed or suppressed", batch.campaign_id, verdict.code, verdict.enhanced)
        raise ProviderRefused(
            f"SMTP server {self.host} refused every recipient of a batch of {len(results)} alike "
            f"({verdict.error_for_everyone}); this is about our account or sender, not the recipients",
            provider=self.name, results=[r for r in results if r.delivery_id not in session.refusals])

    def _record(self, batch, session, results, run):
        """Write the results of RUN (indexes) now.

        A refusal about us (a relay's policy) is held back until the whole batch is judged, since the
        same refusal for every recipient is a provider problem, not failures to record: the pipeline
        writes it with the batch's results, or puts it back to pending."""
        if batch.ledger is not None:
            batch.ledger.record(self.name, [results[i] for i in run if results[i] is not None
                                            and not session.refused_about_us(results[i])])

    def _send_one(self, session, builder, batch, message, index, built):
        """Start one message, reconnecting once if the connection was lost before its content went out.

        Returns (result or None, awaiting or None)."""
        rcpt, message_id, data = built

        def call_begins():  # RCPT was accepted and DATA sent; no content has left
            return bool(self.call_begins(batch, [message]))
        for _ in range(2):
            if session.conn is None:
                if not self._reconnect(session):
                    return None, None
            try:
                refusal = session.start(builder.envelope_from, rcpt, call_begins)
            except ConnectionLost as exc:
                session.last_error = str(exc)
                session.drop()
                continue
            if refusal is NOT_OWNED:
                return DeliveryResult(message.delivery_id, Outcome.DEFERRED,
                                      error="claim expired before the message was sent"), None
            if refusal is not None:
                session.refusals[message.delivery_id] = refusal
                return DeliveryResult(message.delivery_id, refusal.outcome, error=refusal.error,
                                      bounced=refusal.suppresses), None
            failure = session.send_content(data)
            if failure is not None:
                session.drop()
                return DeliveryResult(message.delivery_id, Outcome.UNKNOWN,
                                      error=f"SMTP connection lost while sending the message ({failure})"), None
            return None, (index, message_id)
        return None, None

    def _reconnect(self, session):
        # A fresh connection that is lost before one message got through is not worth another try.
        if session.reconnects and not session.sent_on_this_connection:
            return False
        try:
            session.reconnect()
        except (TemporaryError, ProviderUnavailable) as exc:
            session.last_error = str(exc)
            return False
        logger.info("Campaign %s: SMTP connection re-established (reconnect %d)", session.campaign_id,
                    session.reconnects)
        return True

    @staticmethod
    def _finished(session, batch, awaiting):
        index, message_id = awaiting
        outcome, error, refusal = session.finish()
        delivery_id = batch.messages[index].delivery_id
        if outcome == Outcome.SENT:
            return DeliveryResult(delivery_id, Outcome.SENT, message_id=message_id)
        if refusal is not None:
            session.refusals[delivery_id] = refusal
        return DeliveryResult(delivery_id, outcome, error=error, bounced=bool(refusal and refusal.suppresses))

    def parse_response(self, batch, builder, results):
        return results

    def _log(self, batch, results, session):
        counts = {outcome: 0 for outcome in Outcome}
        for result in results:
            counts[result.outcome] += 1
        bounced = sum(1 for result in results if result.bounced)
        log = logger.warning if counts[Outcome.UNKNOWN] or counts[Outcome.FAILED] else logger.info
        log("Campaign %s: SMTP batch of %d: sent=%d failed=%d (bounced=%d) deferred=%d unknown=%d reconnects=%d",
            batch.campaign_id, len(results), counts[Outcome.SENT], counts[Outcome.FAILED], bounced,
            counts[Outcome.DEFERRED], counts[Outcome.UNKNOWN], session.reconnects)
