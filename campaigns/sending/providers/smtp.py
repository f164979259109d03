"""SMTP: each batch goes out over SEND_SMTP_CONNECTIONS connections at once, one message in flight on
each, every message rendered in full and sent with MAIL/RCPT/DATA so that every refusal is
attributed to its recipient and its phase.

The connections move in rounds: each takes the next message and sends its MAIL FROM, RCPT TO and
DATA, in one write when the server offers PIPELINING (RFC 2920); then every reply is read on each
connection in order, so each is judged for its own phase and recipient (providers.smtp_replies). The
messages whose RCPT was accepted get their call-began marks in one statement for the round; only
then does any content leave. Then each connection's content, then each final reply.

The ledger (Batch.ledger): each message is paced under the shared rate limit on its connection;
each is marked "call began" once RCPT was accepted and DATA sent, before any content, only if the
batch still owns it; results are written per run of at most SEND_SMTP_CHUNK messages (a round ends
a run rather than cross it), and a run ends before every rate-limit wait. So a crash leaves at most
one run's rows unknown, each of them accepted by the server or in flight on a connection.
"""

import base64
import collections
import logging
import re
import secrets
import smtplib
import ssl
import time
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
    RateWaitTooLong,
    TemporaryError,
)
from campaigns.message.signed_links import bounce_token
from campaigns.security.destinations import plaintext_auth_refusal
from campaigns.sending import ratelimit
from campaigns.sending.providers.base import DeliveryResult, Outcome, Provider, ascii_domain, list_unsubscribe_headers
from campaigns.sending.providers.smtp_replies import Phase, Scope, classify, uniform_refusal

logger = logging.getLogger(__name__)

# compat32 header folding (email.header, RFC 2047 for non-ASCII) with CRLF line endings: for the
# rare header the fast paths below do not cover.
SMTP_POLICY = Compat32(linesep="\r\n")
MAX_LINE_BYTES = 998  # RFC 5321: a longer line must be quoted-printable
NEWLINES = re.compile(r"\r\n|\r|\n")
LINE_BREAKS = re.compile(r"[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]+")
# formataddr's rules for a display name that must be quoted.
SPECIALS = re.compile(r'[][\\()<>@,:;".]')
ESCAPES = re.compile(r'[\\"]')
FOLD_AT = 78  # RFC 5322 2.1.1: lines SHOULD be at most 78 characters
# UTF-8 bytes per RFC 2047 encoded word: "=?utf-8?b?" + base64 of 39 bytes (52) + "?=" is 64
# characters, so that even the first, after "Subject: ", stays within 76 (RFC 2047 2).
WORD_BYTES = 39


# A bounce names its delivery by this signed token (campaigns.engagement.bounce_mail): in this header of
# the returned copy, and in the envelope sender when the account has a bounce domain.
BOUNCE_TOKEN_HEADER = "X-Mailer-Delivery"
VERP_LOCAL_PART = "bounces+"

# What the DATA command's turn gives when the batch's claim no longer owns the message: nothing left.
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


def _encoded_words(text, limit=WORD_BYTES):
    """TEXT as RFC 2047 'B' encoded words in UTF-8 of at most LIMIT bytes each, none splitting a
    character."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        chunks = [data]
    else:
        chunks, current = [], bytearray()
        for char in text:
            encoded = char.encode("utf-8")
            if len(current) + len(encoded) > limit:
                chunks.append(bytes(current))
                current = bytearray()
            current += encoded
        chunks.append(bytes(current))
    return [f"=?utf-8?b?{base64.b64encode(chunk).decode('ascii')}?=" for chunk in chunks]


def _fold(line):
    """An ASCII header line folded at spaces to FOLD_AT characters where it can be, with CRLF."""
    if len(line) <= FOLD_AT:
        return (line + "\r\n").encode("ascii")
    words = line.split(" ")
    lines, current = [], words[0]
    for word in words[1:]:
        # Never fold before an empty word (a continuation line of white space only is not allowed),
        # nor right after the field name.
        if word and len(current) + 1 + len(word) > FOLD_AT and current is not words[0]:
            lines.append(current)
            current = " " + word
        else:
            current = f"{current} {word}"
    lines.append(current)
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def header_line(name, value):
    """One header as bytes, recipient data made safe: line breaks become spaces; ASCII folded at
    spaces; non-ASCII text (the Subject) as encoded words. Anything else goes through compat32."""
    value = LINE_BREAKS.sub(" ", value)
    if value.isascii():
        return _fold(f"{name}: {value}")
    if name == "Subject":
        return _fold(f"{name}: " + " ".join(_encoded_words(value)))
    return SMTP_POLICY.fold_binary(name, value)


def _phrase(display_name):
    """A display name as it goes before <address>: as it stands, quoted when it holds specials (as
    formataddr does), or encoded words when it is not ASCII."""
    if not display_name.isascii():
        # One word, however long, as formataddr writes it: in a phrase, readers (Python's own parser
        # among them) keep the space between two encoded words.
        return _encoded_words(display_name, limit=len(display_name) * 4)[0]
    if SPECIALS.search(display_name):
        return '"' + ESCAPES.sub(r"\\\g<0>", display_name) + '"'
    return display_name


def _to_header(display_name, address):
    """The To header. An address with a non-ASCII local part (sent with SMTPUTF8) travels raw in
    UTF-8 (RFC 6532): no encoded word may stand for an address. The name is quoted or RFC 2047-encoded
    either way."""
    display_name = LINE_BREAKS.sub(" ", display_name)  # recipient data must never start a header
    value = f"{_phrase(display_name)} <{address}>" if display_name else address
    if address.isascii():
        return _fold(f"To: {value}")
    return f"To: {value}\r\n".encode("utf-8")


def _text_part(subtype, text, eight_bit_ok):
    """A text/* MIME part with CRLF line endings: 7bit or 8bit as it stands when it can travel so,
    else quoted-printable."""
    import binascii

    data = (NEWLINES.sub("\n", text) if "\r" in text else text).encode("utf-8")
    ascii_only = data.isascii()
    if (ascii_only or eight_bit_ok) and (len(data) <= MAX_LINE_BYTES or max(map(len, data.split(b"\n"))) <= MAX_LINE_BYTES):
        encoding = "7bit" if ascii_only else "8bit"
    else:
        encoding, data = "quoted-printable", binascii.b2a_qp(data, istext=True)
    head = f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n'
    return head.encode("ascii") + data.replace(b"\n", b"\r\n")


class Built(collections.namedtuple("Built", "mail rcpt message_id data")):
    """One message ready to go: its MAIL FROM and RCPT TO command lines, its Message-ID, and its DATA
    bytes (dots stuffed, ending with the final dot)."""


class MessageBuilder:
    """Builds one recipient's complete message; everything shared by the batch is computed once.

    The headers the batch shares are encoded once; each recipient's own (To, Subject, List-Unsubscribe,
    the ids) are folded here, and the multipart/alternative skeleton joined: the email package's
    generator and header classes cost several times the whole budget per message."""

    def __init__(self, batch, bounce_domain="", signer=None):
        self.batch = batch
        self.bounce_domain = bounce_domain  # VERP: MAIL FROM bounces+<token>@<bounce domain>
        self.signer = signer  # a campaigns.deliverability.dkim.Signer: each message's final bytes are signed
        from_name, self.envelope_from = parseaddr(batch.from_email)
        if LINE_BREAKS.search(self.envelope_from):
            raise ValueError("the sender address holds a line break")
        from_header = formataddr((from_name, self.envelope_from), charset="utf-8")
        reply_to = formataddr(parseaddr(batch.reply_to), charset="utf-8") if batch.reply_to else ""
        self.msgid_domain = self.envelope_from.rpartition("@")[2] or DNS_NAME.get_fqdn()
        self.from_line = header_line("From", from_header)
        self.shared_lines = ((header_line("Reply-To", reply_to) if reply_to else b"")
                             + header_line("X-Campaign-ID", str(batch.campaign_id)))
        self.mime_version = b"MIME-Version: 1.0\r\n"
        self.tracking = batch.tracking
        self.compiled = batch.tracking.compiled if batch.tracking else batch.compiled
        self._subjects = {}  # subject -> its header line: many recipients share one
        self._date_second, self._date_line = None, b""
        self._mail_lines = {}

    def _date(self):
        now = int(time.time())
        if now != self._date_second:
            self._date_second, self._date_line = now, header_line("Date", formatdate(now, usegmt=True))
        return self._date_line

    def _subject(self, subject):
        line = self._subjects.get(subject)
        if line is None:
            if len(self._subjects) > 1000:
                self._subjects.clear()
            line = self._subjects[subject] = header_line("Subject", subject)
        return line

    def _mail_line(self, eight_bit_ok, smtputf8):
        key = (eight_bit_ok, smtputf8)
        line = self._mail_lines.get(key)
        if line is None:
            options = (" BODY=8BITMIME" if eight_bit_ok else "") + (" SMTPUTF8" if smtputf8 else "")
            line = self._mail_lines[key] = f"MAIL FROM:<{self.envelope_from}>{options}\r\n".encode(
                "utf-8" if smtputf8 else "ascii")
        return line

    def build(self, message, eight_bit_ok, smtputf8=False):
        """The message's Built. Raises ValueError (NeedsSmtpUtf8, UnicodeError) for an address that
        cannot go out on this connection."""
        rcpt = _envelope_address(message.email, smtputf8)
        if LINE_BREAKS.search(rcpt):
            raise ValueError("the address holds a line break")
        needs_utf8 = not rcpt.isascii()
        token = bounce_token(message.delivery_id)
        if self.bounce_domain:
            options = (" BODY=8BITMIME" if eight_bit_ok else "") + (" SMTPUTF8" if needs_utf8 else "")
            mail = f"MAIL FROM:<{VERP_LOCAL_PART}{token}@{self.bounce_domain}>{options}\r\n".encode("ascii")
        else:
            mail = self._mail_line(eight_bit_ok, needs_utf8)
        rcpt_line = f"RCPT TO:<{rcpt}>\r\n".encode("utf-8" if needs_utf8 else "ascii")
        context = message.context
        if self.tracking:
            context = {**context, **self.tracking.values(message.delivery_id)}
        rendered = self.compiled.render(context)
        display_name = " ".join(part for part in (context.get("first_name"), context.get("last_name")) if part)
        message_id = make_msgid(domain=self.msgid_domain)
        parts = [_text_part(subtype, body, eight_bit_ok)
                 for subtype, body in (("plain", rendered.text), ("html", rendered.html)) if body]
        boundary = secrets.token_hex(16)

        head = [_to_header(display_name, rcpt), self.from_line, self._subject(rendered.subject), self._date(),
                header_line("Message-ID", message_id), self.shared_lines]
        head += [header_line(name, value)
                 for name, value in list_unsubscribe_headers(context.get("unsubscribe_url", "")).items()]
        head += [f"X-Delivery-ID: {message.delivery_id}\r\n{BOUNCE_TOKEN_HEADER}: {token}\r\n".encode("ascii"),
                 self.mime_version,
                 _fold(f'Content-Type: multipart/alternative; boundary="{boundary}"'), b"\r\n"]

        delimiter = b"--" + boundary.encode("ascii")
        body = b"".join(delimiter + b"\r\n" + part + b"\r\n" for part in parts) + delimiter + b"--\r\n"
        # Dot-stuffing: the message starts with a header, so every line that starts with a dot follows
        # a line break.
        message_bytes = b"".join(head) + body
        if self.signer is not None:
            message_bytes = self.signer.sign(message_bytes)
        data = message_bytes.replace(b"\n.", b"\n..") + b".\r\n"
        return Built(mail, rcpt_line, message_id, data)


class SmtpSession:
    """One of a batch's connections: reconnects when the server drops it, and gives up when a fresh
    connection drops before a single message got through."""

    def __init__(self, provider, campaign_id, refusals, sender="", rate_wait=None):
        self.provider = provider
        self.campaign_id = campaign_id
        self.sender = sender  # our envelope sender: a refusal that names it is about us
        self.conn = None
        self.dead = False  # lost and not re-established: it takes no more messages
        self.sent_on_this_connection = 0
        self.reconnects = 0
        self.last_error = ""
        self.refusals = refusals  # delivery id -> the Verdict of a refusal, shared by the batch's sessions
        self.refusal = None  # the Verdict of the current envelope's refusal, once known
        self.pacer = ratelimit.Pacer(provider.rate_key or provider.name, rate=provider.rate, budget=rate_wait)
        self.group_pacers = {}  # domain group id -> its Pacer on this connection (campaigns.sending.domain_groups)
        self.throttled_here = False  # a throttling 421 closed the connection: it worked, the server is slowing us

    def pacers(self):
        return [self.pacer, *self.group_pacers.values()]

    def connect(self):
        conn = self.provider.open_connection()
        self.conn, self.sent_on_this_connection, self.throttled_here = conn, 0, False
        self.eight_bit_ok = conn.has_extn("8bitmime")
        self.smtputf8 = conn.has_extn("smtputf8")
        self.pipelining = conn.has_extn("pipelining")

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

    def _write(self, data):
        try:
            self.conn.send(data)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            raise ConnectionLost(str(exc)) from exc

    def _reply(self, throttle_ok=False):
        """The next reply. A 421 (the server is closing this connection) raises ConnectionLost, unless
        THROTTLE_OK (a RCPT of a domain group's recipient: the group's servers slowing us down): then
        it is returned, and the connection dropped."""
        try:
            code, reply = self.conn.getreply()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            raise ConnectionLost(str(exc)) from exc
        if code == 421:  # the server is closing this connection
            if not throttle_ok:
                raise ConnectionLost(reply.decode("utf-8", "replace"))
            self.drop()
            self.throttled_here = True
        return code, reply.decode("utf-8", "replace")

    def _rset(self):
        self._write(b"RSET\r\n")
        self._reply()

    def _judge(self, phase, reply, accepted):
        code, text = reply
        return None if code in accepted else classify(phase, code, text, self.sender)

    def write_envelope(self, built, grouped=False):
        """MAIL FROM, RCPT TO and DATA for one message. With PIPELINING all three in one write, their
        replies read by `read_envelope`; without, one at a time, each waiting for the previous reply,
        and DATA only after RCPT was accepted. GROUPED: the recipient is in a domain group, so a 421 to
        its RCPT is a throttling verdict, not a lost connection. Raises ConnectionLost."""
        if self.pipelining:
            self._write(built.mail + built.rcpt + b"DATA\r\n")
            return
        self._write(built.mail)
        self.refusal = self._judge(Phase.MAIL, self._reply(), (250,))
        if self.refusal is None:
            self._write(built.rcpt)
            self.refusal = self._judge(Phase.RCPT, self._reply(throttle_ok=grouped), (250, 251))
        if self.refusal is None:
            self._write(b"DATA\r\n")
        elif self.conn is None:
            pass  # a 421 closed it
        elif self.refusal.phase != Phase.MAIL or self.refusal.scope != Scope.SENDER:
            self._rset()

    def read_envelope(self, grouped=False):
        """None when the server took MAIL and RCPT (DATA's reply is still to read), else the Verdict
        of the refusal, judged for the phase it answered (GROUPED as for `write_envelope`).

        Raises ConnectionLost; ProviderRefused or TemporaryError when MAIL FROM is refused, since
        that refusal is about us and would meet every message."""
        if self.pipelining:
            mail, rcpt = self._reply(), self._reply(throttle_ok=grouped)
            self.refusal = self._judge(Phase.MAIL, mail, (250,)) or self._judge(Phase.RCPT, rcpt, (250, 251))
            if self.refusal is not None and self.conn is not None:
                code, _ = self._reply()  # DATA's: refused too, with no recipient accepted (RFC 2920 3.1)
                if code == 354:
                    self.drop()  # a server that starts DATA regardless gets no content, not even the dot
                else:
                    self._rset()
        refusal, self.refusal = self.refusal, None
        if refusal is not None and refusal.phase == Phase.MAIL and refusal.scope == Scope.SENDER:
            error = ProviderRefused if refusal.outcome == Outcome.FAILED else TemporaryError
            raise error(f"SMTP server {self.provider.host} {refusal.error}", provider=self.provider.name)
        return refusal

    def read_data_reply(self, owned):
        """DATA's reply, once the message's call-began mark is written: None when the content may
        go, else NOT_OWNED (the batch's claim no longer owns the message: no content leaves) or the
        Verdict of the refusal. Raises ConnectionLost."""
        code, reply = self._reply()
        if code != 354:
            self._rset()
            return classify(Phase.DATA, code, reply, self.sender) if owned else NOT_OWNED
        if not owned:
            self.drop()  # mid-DATA: closing before the final dot delivers nothing (RFC 5321 4.1.1.4)
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
        verdict = classify(Phase.CONTENT, code, reply, self.sender)
        return verdict.outcome, verdict.error, verdict


class SmtpProvider(Provider):
    """An SMTP server: the environment's (EMAIL_HOST and friends) unless the connection is given, as
    for a sending account (campaigns.sending.routing)."""

    name = "smtp"
    STARTTLS, TLS, PLAIN = "starttls", "tls", "none"

    def __init__(self, host=None, port=None, security=None, username=None, password=None, timeout=None,
                 name=None, rate=None, rate_key=None, bounce_domain="", signer=None):
        from_settings = host is None
        self.host = settings.EMAIL_HOST if from_settings else host
        self.port = settings.EMAIL_PORT if from_settings else port
        self.security = (self.STARTTLS if settings.EMAIL_USE_TLS else self.PLAIN) if from_settings else security
        self.username = settings.EMAIL_HOST_USER if from_settings else username
        self.password = settings.EMAIL_HOST_PASSWORD if from_settings else password
        self.timeout = timeout or settings.EMAIL_TIMEOUT
        self.name = name or self.name
        self.rate, self.rate_key = rate, rate_key  # None: SMTP_RATE_LIMIT_PER_SEC under "smtp"
        self.bounce_domain = bounce_domain
        self.signer = signer  # DKIM, for a sending account that signs

    def is_configured(self):
        return bool(self.host)

    def connect_and_log_in(self):
        """A connection through EHLO, STARTTLS (or implicit TLS) and AUTH; smtplib's errors as they are."""
        refusal = plaintext_auth_refusal(self.host, self.security, self.username)
        if refusal:  # before connecting: the password must not cross the network readable
            raise smtplib.SMTPNotSupportedError(refusal)
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
        return MessageBuilder(batch, bounce_domain=self.bounce_domain, signer=self.signer)

    def deliver(self, batch, builder):
        delivery = _Delivery(self, batch, builder)
        try:
            delivery.send()
        except ProviderError as error:
            # MAIL FROM refused, or the rate wait too long: what was settled before it stands, the
            # rest was not sent.
            error.results = [result for result in delivery.results
                             if result is not None and not delivery.refused_about_us(result)]
            delivery.close(cleanly=isinstance(error, RateWaitTooLong))
            raise
        except BaseException:
            delivery.close(cleanly=False)
            raise
        delivery.close(cleanly=True)
        results = delivery.results
        for index, message in enumerate(batch.messages):
            if results[index] is None:
                results[index] = DeliveryResult(
                    message.delivery_id, Outcome.DEFERRED,
                    error=f"SMTP connection lost and not re-established ({delivery.last_error()})")
        self._log(batch, results, delivery)
        self._refuse_if_refused_as_a_whole(batch, results, delivery)
        return results

    def _refuse_if_refused_as_a_whole(self, batch, results, delivery):
        """The same refusal about us for every recipient (relay access denied, DMARC) is a provider
        problem, not N failures: nobody is failed or suppressed, and the batch goes elsewhere."""
        if any(result.outcome != Outcome.FAILED for result in results):
            return
        verdict = uniform_refusal(list(delivery.refusals.values()))
        if verdict is None:
            return
        logger.error("Campaign %s: SMTP server refused every recipient of the batch alike (%s %s): a provider "
                     "problem, nobody failed or suppressed", batch.campaign_id, verdict.code, verdict.enhanced)
        raise ProviderRefused(
            f"SMTP server {self.host} refused every recipient of a batch of {len(results)} alike "
            f"({verdict.error_for_everyone}); this is about our account or sender, not the recipients",
            provider=self.name, results=[r for r in results if r.delivery_id not in delivery.refusals])

    def parse_response(self, batch, builder, results):
        return results

    def _log(self, batch, results, delivery):
        counts = {outcome: 0 for outcome in Outcome}
        for result in results:
            counts[result.outcome] += 1
        bounced = sum(1 for result in results if result.bounced)
        log = logger.warning if counts[Outcome.UNKNOWN] or counts[Outcome.FAILED] else logger.info
        log("Campaign %s: SMTP batch of %d over %d connections: sent=%d failed=%d (bounced=%d) deferred=%d "
            "unknown=%d reconnects=%d", batch.campaign_id, len(results), len(delivery.sessions),
            counts[Outcome.SENT], counts[Outcome.FAILED], bounced, counts[Outcome.DEFERRED], counts[Outcome.UNKNOWN],
            sum(session.reconnects for session in delivery.sessions))


class _Delivery:
    """One attempt at a batch over its connections, in rounds (see the module docstring)."""

    def __init__(self, provider, batch, builder):
        self.provider, self.batch, self.builder = provider, batch, builder
        self.results = [None] * len(batch.messages)
        self.refusals = {}
        self.chunk = max(1, settings.SEND_SMTP_CHUNK)
        # More connections than a run has messages could never all take one (a round never crosses a run).
        count = max(1, min(settings.SEND_SMTP_CONNECTIONS, len(batch.messages), self.chunk))
        self.sessions = [SmtpSession(provider, batch.campaign_id, self.refusals, builder.envelope_from,
                                     batch.rate_wait)
                         for _ in range(count)]
        self.queue = collections.deque(range(len(batch.messages)))  # messages not started yet
        self.tries = collections.Counter()  # index -> connections lost under it before its content left
        self.unwritten = []  # indexes whose results are not written yet
        self.marked_again = set()  # indexes marked, then put back in the queue after a connection loss
        self.account_key = provider.rate_key or provider.name  # whose limits towards the domain groups
        self.held = []  # indexes held back with their domain group, results not written yet

    def refused_about_us(self, result):
        """Whether RESULT is a refusal that concerns the sender rather than the recipient."""
        verdict = self.refusals.get(result.delivery_id)
        return verdict is not None and verdict.scope == Scope.SENDER

    def last_error(self):
        return next((s.last_error for s in reversed(self.sessions) if s.last_error), "")

    def send(self):
        first, *others = self.sessions
        first.connect()  # a refusal here raises: nothing has been sent
        for session in others:
            try:
                session.connect()
            except (TemporaryError, ProviderUnavailable) as exc:
                # e.g. a server that caps connections per client: the batch goes on with fewer.
                session.dead, session.last_error = True, str(exc)
                logger.info("Campaign %s: an extra SMTP connection could not be opened (%s)", session.campaign_id,
                            exc)
        while self.queue:
            round_ = self._next_round()
            if not round_:
                self._record()  # the run is full: written, it has room again
                round_ = self._next_round()
            if not round_:
                # No connection left, or nothing can start: the rest of the batch was never handed to
                # the server and waits for a later attempt (deferred, below), rather than spin.
                break
            self._send_round(round_)
            if len(self.unwritten) + len(self.marked_again) >= self.chunk:
                self._record()
        for session in self.sessions:
            for pacer in session.pacers():
                pacer.done()
        self._record()

    def close(self, cleanly):
        for session in self.sessions:
            session.close() if cleanly else session.drop()

    def _next_round(self):
        """[(session, index, Built)]: the next message for each live connection, as many as the run
        has room for and the rate limit lets start together; None when no connection is left."""
        round_, busy = [], set()
        while self.queue:
            session = next((s for s in self.sessions if not s.dead and id(s) not in busy), None)
            if session is None:
                break
            new_in_round = sum(1 for _, i, _ in round_ if i not in self.marked_again)
            index = self._next_message(self.chunk - len(self.unwritten) - len(self.marked_again) - new_in_round)
            if index is None:
                break
            message = self.batch.messages[index]
            domains = self.batch.domains
            hold = domains.held_back(message.email) if domains is not None else None
            if hold is not None:  # its domain group is held back: it waits, and the batch goes on
                self._settle_held(index, self._held(message, hold))
                continue
            if session.conn is None and not self._reconnect(session):
                session.dead = True
                self.queue.appendleft(index)
                continue
            try:
                built = self.builder.build(message, session.eight_bit_ok, session.smtputf8)
            except (ValueError, UnicodeError) as exc:
                self.results[index] = DeliveryResult(message.delivery_id, Outcome.FAILED, error=str(exc))
                self.unwritten.append(index)
                continue
            # This message's place under the shared rate limit, on its connection. A round that has
            # messages already goes without waiting: the place may be held by one of them, freed only
            # once its reply is read (at a limit below the connection count, waiting here would wait
            # for the hold to run out). An empty round waits, after the results so far are written, so
            # that no wait ever falls between a message's call-began mark and its result. The recipient's
            # domain group's per-second limit first, then the account's.
            pacers = [p for p in (self._group_pacer(session, message), session.pacer) if p is not None]
            waiting = next((p for p in pacers if not p.try_start()), None)
            if waiting is not None:
                if round_:
                    self.queue.appendleft(index)
                    break
                self._record()
                try:
                    waiting.start()
                    if waiting is not session.pacer and not session.pacer.try_start():
                        session.pacer.start()
                except RateWaitTooLong:
                    self.queue.appendleft(index)  # never handed to the server: pending again
                    raise
            # The group's per-minute and per-hour limits: a message over them waits with its group.
            hold = domains.reserve(message.email, self.account_key) if domains is not None else None
            if hold is not None:
                self._settle_held(index, self._held(message, hold))
                continue
            busy.add(id(session))
            round_.append((session, index, built))
        if not round_ and all(s.dead for s in self.sessions):
            return None
        return round_

    def _group_pacer(self, session, message):
        """SESSION's Pacer for the per-second limit of MESSAGE's domain group, or None."""
        domains = self.batch.domains
        key = domains.pacer_key(message.email) if domains is not None else None
        if key is None:
            return None
        pacer = session.group_pacers.get(key)
        if pacer is None:
            pacer = session.group_pacers[key] = domains.pacer(message.email, self.account_key, self.batch.rate_wait)
        return pacer

    @staticmethod
    def _held(message, hold):
        return DeliveryResult(message.delivery_id, Outcome.DEFERRED, error=f"{hold.reason} until "
                              f"{hold.until.isoformat(timespec='seconds')}", hold_until=hold.until)

    def _grouped(self, message):
        return self.batch.domains is not None and self.batch.domains.group_of(message.email) is not None

    def _next_message(self, room):
        """The index of the next message to start, taken from the queue, or None. A message marked and
        put back after a connection loss goes first: it counts in the run already, so it needs no
        room (else a run full of such messages could never start one)."""
        if self.marked_again:
            index = next((i for i in self.queue if i in self.marked_again), None)
            if index is not None:
                self.queue.remove(index)
                return index
        return self.queue.popleft() if room > 0 else None

    def _lost(self, session, index, exc):
        """SESSION's connection was lost before the content of message INDEX left: the message goes
        back to the queue, for another connection or this one re-established.

        A server that drops every fresh connection ends each session (`_reconnect`), so the tries
        are bounded by the sessions; the bound here is a backstop."""
        session.last_error = str(exc)
        session.drop()
        self.tries[index] += 1
        if self.tries[index] <= len(self.sessions):
            return True
        self.marked_again.discard(index)  # it waits, unsent, for a later attempt
        return False

    def _send_round(self, round_):
        try:
            self._send_messages(round_)
        finally:
            # Every reply of the round is read (or its connection lost): the places free a window from
            # now, so the next round's sends may start then.
            for session, _, _ in round_:
                for pacer in session.pacers():
                    pacer.done()

    def _send_messages(self, round_):
        batch = self.batch
        messages = batch.messages
        retry = []
        # 1. Every connection's envelope, then 2. its replies.
        written = []
        for session, index, built in round_:
            try:
                session.write_envelope(built, self._grouped(messages[index]))
            except ConnectionLost as exc:
                retry += [index] if self._lost(session, index, exc) else []
                continue
            written.append((session, index, built))
        ready = []
        for session, index, built in written:
            try:
                refusal = session.read_envelope(self._grouped(messages[index]))
            except ConnectionLost as exc:
                retry += [index] if self._lost(session, index, exc) else []
                continue
            if refusal is not None:
                self._refused(index, refusal)
            else:
                ready.append((session, index, built))
        # 3. The call-began marks of every message whose RCPT was accepted, in one statement, before
        # any content leaves.
        owned = set()
        if ready:
            try:
                owned = {m.delivery_id for m in self.provider.call_begins(batch, [messages[i] for _, i, _ in ready])}
            except BaseException:
                for session, _, _ in ready:
                    session.drop()  # mid-DATA: closing before the final dot delivers nothing
                raise
        # 4. Each connection's content, once the server is ready for it; 5. the replies to the content.
        sent = []
        for session, index, built in ready:
            message = messages[index]
            try:
                refusal = session.read_data_reply(message.delivery_id in owned)
            except ConnectionLost as exc:
                if self._lost(session, index, exc):
                    retry.append(index)
                    self.marked_again.add(index)
                continue
            if refusal is NOT_OWNED:
                self._settle(index, DeliveryResult(message.delivery_id, Outcome.DEFERRED,
                                                   error="claim expired before the message was sent"))
            elif refusal is not None:
                self._refused(index, refusal)
            else:
                failure = session.send_content(built.data)
                if failure is not None:
                    session.drop()
                    self._settle(index, DeliveryResult(
                        message.delivery_id, Outcome.UNKNOWN,
                        error=f"SMTP connection lost while sending the message ({failure})"))
                else:
                    sent.append((session, index, built))
        for session, index, built in sent:
            self._settle(index, self._finished(session, messages[index], built.message_id))
        self.queue.extendleft(reversed(retry))

    def _settle_held(self, index, result):
        """A message that waits with its domain group, never handed to the server: its result goes with
        the run's, without taking room in it (nothing of it is in flight)."""
        self.results[index] = result
        self.held.append(index)
        self.marked_again.discard(index)

    def _settle(self, index, result):
        self.results[index] = result
        self.unwritten.append(index)
        self.marked_again.discard(index)

    def _throttled(self, message, refusal):
        """The Hold of MESSAGE's domain group when REFUSAL is its servers slowing us down, else None."""
        if not refusal.throttles or self.batch.domains is None:
            return None
        return self.batch.domains.deferred(message.email, refusal)

    def _refused(self, index, refusal):
        message = self.batch.messages[index]
        hold = self._throttled(message, refusal)
        if hold is not None:  # its group waits; not an attempt, not a refusal of the batch
            self._settle(index, self._held(message, hold))
            return
        delivery_id = message.delivery_id
        self.refusals[delivery_id] = refusal
        self._settle(index, DeliveryResult(delivery_id, refusal.outcome, error=refusal.error,
                                           bounced=refusal.suppresses))

    def _finished(self, session, message, message_id):
        delivery_id = message.delivery_id
        outcome, error, refusal = session.finish()
        if outcome == Outcome.SENT:
            return DeliveryResult(delivery_id, Outcome.SENT, message_id=message_id)
        hold = self._throttled(message, refusal) if refusal is not None else None
        if hold is not None:
            return self._held(message, hold)
        if refusal is not None:
            self.refusals[delivery_id] = refusal
        return DeliveryResult(delivery_id, outcome, error=error, bounced=bool(refusal and refusal.suppresses))

    def _record(self):
        """Write the results of the run now.

        A refusal about us (a relay's policy) is held back until the whole batch is judged, since the
        same refusal for every recipient is a provider problem, not failures to record: the pipeline
        writes it with the batch's results, or puts it back to pending."""
        indexes = self.unwritten + self.held
        if indexes and self.batch.ledger is not None:
            self.batch.ledger.record(self.provider.name, [
                self.results[i] for i in indexes if not self.refused_about_us(self.results[i])])
        self.unwritten, self.held = [], []

    def _reconnect(self, session):
        # A fresh connection that is lost before one message got through is not worth another try.
        if session.reconnects and not session.sent_on_this_connection and not session.throttled_here:
            return False
        try:
            session.reconnect()
        except (TemporaryError, ProviderUnavailable) as exc:
            session.last_error = str(exc)
            return False
        logger.info("Campaign %s: SMTP connection re-established (reconnect %d)", session.campaign_id,
                    session.reconnects)
        return True
