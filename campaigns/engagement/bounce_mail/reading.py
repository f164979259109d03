"""What one message in a bounce mailbox says, per recipient: a hard bounce, a soft bounce, a complaint,
or nothing; read, never guessed.

In this order, the first that applies:
1. an RFC 5965 ARF report (a message/feedback-report part) is a complaint about its Original-Rcpt-To
   (else the returned message's To), unless its Feedback-Type is "not-spam";
2. an RFC 3464 DSN (a message/delivery-status part) is read per recipient: Action "failed" is a bounce,
   classified by its Status and Diagnostic-Code; "delayed", "delivered", "relayed" and "expanded"
   change nothing;
   An Amazon SES notification mailed by SNS (its JSON as the body) is read like one of these;
3. a message that looks like a bounce (from MAILER-DAEMON or postmaster, a bounce subject, an
   X-Failed-Recipients header) is read by flufl.bounce's detectors (qmail, Exim, older Postfix,
   Exchange, Yahoo, Lotus, GroupWise, SimpleMatch, ...), and each address is classified by the
   status and the text next to it in the message;
   (one whose failed recipient cannot be read is unreadable, never taken for an auto-reply);
4. an RFC 3834 auto-reply (Auto-Submitted, X-Autoreply, Precedence auto_reply, an out-of-office
   subject) changes nothing;
5. anything else is unreadable: kept for staff, never guessed.

Classification (RFC 3463): a bounce is hard only when the address or its domain provably does not
exist: status 5.1.1, 5.1.2, 5.1.3, 5.1.6 or 5.1.10, or a generic permanent status (5.0.0, 5.1.0,
5.4.4, 5.5.0, none) with text such as "user unknown", "no such user", "mailbox not found", "host not
found". Anything that mentions a policy, spam, a block list, a quota, a full mailbox, greylisting, a
rate or a timeout, every 5.7.x and every 4.x.x is soft, and so is every other failure: when in
doubt, do not suppress.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import json
import re
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesHeaderParser, HeaderParser

from flufl.bounce import all_failures

from campaigns.message.signed_links import BOUNCE_TOKEN_LENGTH

HARD, SOFT = "hard", "soft"
# What a message is, as a whole.
BOUNCE, COMPLAINT, AUTO_REPLY, DELAYED, DELIVERED, UNREADABLE = (
    "bounce", "complaint", "auto-reply", "delayed", "delivered", "unreadable")

TOKEN_HEADER = "X-Mailer-Delivery"
VERP_PREFIX = "bounces+"
TOKEN = re.compile(r"\bbounces\+([a-z2-7]{%d})@" % BOUNCE_TOKEN_LENGTH, re.I)
HEADER_TOKEN = re.compile(r"^%s:[ \t]*([a-z2-7]{%d})\b" % (TOKEN_HEADER, BOUNCE_TOKEN_LENGTH), re.I | re.M)
BODY_MESSAGE_ID = re.compile(r"^Message-ID:[ \t]*(?:\r?\n[ \t]+)?(<[^<>\s]+>)", re.I | re.M)
STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
REPLY_CODE = re.compile(r"(?<![\d.])([245]\d\d)(?:[ -]|$)", re.M)
ADDRESS = re.compile(r"[^\s<>()\"';:,\[\]]+@[a-z0-9.-]+\.[a-z]{2,}", re.I)

HARD_STATUSES = {"5.1.1", "5.1.2", "5.1.3", "5.1.6", "5.1.10"}
# Permanent statuses that say nothing about the cause: the text decides.
GENERIC_STATUSES = {"", "5.0.0", "5.1.0", "5.5.0"}
HARD_TEXT = re.compile(
    r"user(?:name)? (?:is )?unknown|unknown (?:user|recipient|mailbox|local[- ]?part|address|alias)"
    r"|no such (?:user|mailbox|recipient|person|address|account|domain)"
    r"|(?:mailbox|recipient|user|account|address|addressee|destination) (?:is )?"
    r"(?:not found|unknown|does ?n[o']t exist)"
    r"|(?:mailbox|recipient|user|account|address) (?:name )?(?:is )?(?:invalid|not valid)"
    r"|invalid (?:recipient|mailbox|address|user)|not a valid (?:mailbox|recipient|user)"
    r"|no mailbox here|unrouteable (?:address|domain)|user (?:does not|doesn't) exist|recipnotfound|recipientnotfound"
    r"|(?:host|domain)(?: or domain name)? not found|domain (?:does not|doesn't) exist|nxdomain"
    r"|account that you tried to reach does not exist|no longer (?:valid|exists|available)",
    re.I)
SOFT_TEXT = re.compile(
    r"spam|block|black ?list|rbl\b|spamhaus|reputation|polic|rate limit|too many|temporar|try again|try later"
    r"|grey ?list|gray ?list|quota|(?:mailbox|inbox|disk|storage) (?:is )?full|insufficient|exceed|timed? ?out"
    r"|defer|suspend|disabled|inactive|virus|dmarc|\bspf\b|dkim|authenticat|relay|access denied|throttl"
    r"|not accepted at this time|content|blocked|denied|refused|reject(?:ed)? by (?:policy|content)",
    re.I)

NO_SUCH_DOMAIN = re.compile(r"(?:host|domain)(?: or domain name)? not found|no such domain|nxdomain", re.I)
AFTER_DATA = re.compile(r"(?:reply|response) to (?:end of )?data|after (?:end of )?data", re.I)

BOUNCE_SENDER = re.compile(r"mailer-daemon|postmaster|mail delivery|mail administrator|^<?>?$", re.I)
BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|returned mail|delivery (?:status )?notification|delivery (?:has )?failed|"
    r"failure notice|mail delivery failed|non.?delivery|could not be delivered|delivery failure|"
    r"mail system error|returned to sender|rejected|bounce", re.I)
AUTO_REPLY_SUBJECT = re.compile(
    r"^(?:auto(?:matic)?[ -]?(?:reply|response|antwort)|out of (?:the )?office|away from|away until|vacation"
    r"|absence|abwesenheit|automatische antwort|r[ée]ponse automatique|on leave|autoreply)", re.I)
# Where a returned copy starts in a plain-text bounce: text below it is the original, not a diagnostic.
ORIGINAL_STARTS = re.compile(
    r"^(?:-+ ?(?:this is a copy|original message|below this line is a copy|the header of the original|"
    r"a copy of the original|original message headers|returned message)|-+ ?Original Message)"
    r"|^Received: from ", re.I | re.M)


@dataclass
class RecipientReading:
    address: str
    outcome: str  # HARD, SOFT, COMPLAINT, or "" (nothing to do: delayed, delivered)
    status: str = ""  # RFC 3463, e.g. "5.1.1"
    diagnostic: str = ""  # the server's words, trimmed

    def describe(self):
        what = {HARD: "hard bounce", SOFT: "soft bounce", COMPLAINT: "complaint"}.get(self.outcome,
                                                                                    "delayed or delivered")
        return " ".join(part for part in (what, self.status) if part)


@dataclass
class Reading:
    kind: str
    digest: str  # the message's identity, for replays
    recipients: list[RecipientReading] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)  # bounce tokens found: VERP address, our header
    message_id: str = ""  # the returned message's Message-ID
    reason: str = ""  # why it is unreadable, or what it is
    subject: str = ""
    sender: str = ""


def digest_of(raw: bytes, message: Message | None = None) -> str:
    """The same message delivered twice (or read again) has the same digest: its Message-ID and Date,
    else its bytes below the headers (the headers change on each hop)."""
    message_id = message.get("Message-ID", "") if message is not None else ""
    if message_id:
        basis = f"{message_id.strip()}|{message.get('Date', '').strip()}|{message.get('From', '').strip()}".encode(
            "utf-8", "replace")
    else:
        head, _, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
        basis = body or head
    return hashlib.sha256(basis).hexdigest()


def read(raw: bytes) -> Reading:
    """What RAW (one whole message) says."""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    reading = Reading(kind=UNREADABLE, digest=digest_of(raw, message), subject=_header(message, "Subject"),
                      sender=_header(message, "From"))
    reading.tokens = _tokens(message, raw)
    reading.message_id = _returned_message_id(message)

    for reader in (_feedback_report, _delivery_status, _ses_notification, _non_standard_bounce, _auto_reply):
        if reader(message, reading):
            return reading
    reading.kind = UNREADABLE
    reading.reason = reading.reason or "neither a delivery status notification, a complaint report nor an auto-reply"
    return reading


# --- the kinds of message -----------------------------------------------------------------------------

def _feedback_report(message, reading):
    report = _first_part(message, "message/feedback-report")
    if report is None:
        return False
    fields = _fields(report)
    feedback_type = fields.get("feedback-type", "").strip().lower()
    if feedback_type == "not-spam":
        reading.kind, reading.reason = AUTO_REPLY, "a complaint report saying the message is not spam"
        return True
    addresses = [_address(value) for value in fields.get_all("original-rcpt-to", []) or []]
    returned = _returned_headers(message)
    if not any(addresses) and returned is not None:
        addresses = [_address(returned.get("To", ""))]
    addresses = [a for a in addresses if a]
    if not addresses:
        reading.reason = "a complaint report that names no recipient"
        return True  # unreadable: kept
    reading.kind = COMPLAINT
    reading.recipients = [RecipientReading(a, COMPLAINT, diagnostic=f"feedback type {feedback_type or 'unknown'}")
                          for a in dict.fromkeys(addresses)]
    return True


def _delivery_status(message, reading):
    report = _first_part(message, "message/delivery-status")
    if report is None:
        return False
    groups = _status_groups(report)
    actions = set()
    for group in groups[1:] if len(groups) > 1 else groups:
        address = _address(group.get("Final-Recipient", "") or group.get("Original-Recipient", ""))
        action = group.get("Action", "").strip().lower()
        if not address or not action:
            continue
        actions.add(action)
        status = _status(group.get("Status", ""))
        diagnostic = _clean(group.get("Diagnostic-Code", ""))
        if action == "failed":
            outcome, status = classify(status, diagnostic)
        else:
            outcome = ""
        reading.recipients.append(RecipientReading(address, outcome, status, diagnostic))
    if not reading.recipients:
        # An empty report (Google Workspace, some Postfix): the text may still say who failed.
        reading.reason = "a delivery status notification without a recipient's Action"
        return False
    reading.kind = BOUNCE if "failed" in actions else DELAYED if "delayed" in actions else DELIVERED
    return True


def _ses_notification(message, reading):
    """An Amazon SES notification mailed by an SNS email subscription: its JSON is the body."""
    text = _diagnostic_text(message) if message.get_content_maintype() == "text" or message.is_multipart() else ""
    start = text.find('{"notificationType"')
    if start < 0:
        start = text.find('{"eventType"')
    if start < 0:
        return False
    try:
        event, _ = json.JSONDecoder().raw_decode(text[start:])
    except ValueError:
        try:  # Sendmail splits lines over 990 characters with "!", a line break and a space
            event, _ = json.JSONDecoder().raw_decode(re.sub(r"!\r?\n ", "", text[start:]))
        except ValueError:
            return False
    if not isinstance(event, dict):
        return False
    kind = event.get("notificationType", event.get("eventType"))
    if kind == "Complaint":
        complaint = event.get("complaint") or {}
        if complaint.get("complaintFeedbackType") == "not-spam":
            reading.kind, reading.reason = AUTO_REPLY, "an Amazon SES complaint saying the message is not spam"
            return True
        feedback = complaint.get("complaintFeedbackType") or "unknown"
        reading.recipients = [RecipientReading(_address(entry.get("emailAddress", "")), COMPLAINT,
                                               diagnostic=f"feedback type {feedback} (Amazon SES)")
                              for entry in complaint.get("complainedRecipients") or [] if isinstance(entry, dict)]
        reading.kind = COMPLAINT
    elif kind == "Bounce":
        bounce = event.get("bounce") or {}
        permanent = bounce.get("bounceType") == "Permanent"
        for entry in bounce.get("bouncedRecipients") or []:
            if not isinstance(entry, dict):
                continue
            diagnostic = _clean(str(entry.get("diagnosticCode") or ""))
            status = _status(str(entry.get("status") or "")) or _status(diagnostic)
            outcome, status = classify(status, diagnostic) if permanent else (SOFT, status)
            reading.recipients.append(RecipientReading(_address(entry.get("emailAddress", "")), outcome, status,
                                                       diagnostic))
        reading.kind = BOUNCE
    else:
        reading.kind, reading.reason = DELIVERED, f"an Amazon SES {kind} notification"
        return True
    reading.recipients = [recipient for recipient in reading.recipients if recipient.address]
    headers = (event.get("mail") or {}).get("commonHeaders") or {}
    if not reading.message_id and isinstance(headers.get("messageId"), str):
        reading.message_id = headers["messageId"]
    if not reading.recipients:
        reading.kind, reading.reason = UNREADABLE, "an Amazon SES notification that names no recipient"
    return True


def _non_standard_bounce(message, reading):
    if not _looks_like_bounce(message):
        return False
    try:
        temporary, permanent = all_failures(message)
    except Exception as exc:  # noqa: BLE001 - a detector's error on odd input: the message stays unread
        reading.reason = f"the bounce detectors failed on it ({type(exc).__name__})"
        return True
    addresses = {}
    for value, transient in [(a, True) for a in temporary] + [(a, False) for a in permanent]:
        address = _address(value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value))
        if address:
            addresses[address] = addresses.get(address, False) or transient
    for value in message.get_all("X-Failed-Recipients", []) or []:
        for address in ADDRESS.findall(value):
            addresses.setdefault(address.lower(), False)
    if not addresses:
        # It looks like a bounce (from MAILER-DAEMON, a bounce subject): never taken for an auto-reply.
        reading.reason = "a bounce whose failed recipient could not be read"
        return True  # unreadable: kept
    text = _diagnostic_text(message)
    for address, transient in addresses.items():
        window = _near(text, address)
        status = _status(window)
        outcome, status = (SOFT, status) if transient else classify(status, window, from_text=True)
        reading.recipients.append(RecipientReading(address, outcome, status, _clean(window)))
    reading.kind = BOUNCE
    return True


def _auto_reply(message, reading):
    auto_submitted = _header(message, "Auto-Submitted").lower()
    precedence = _header(message, "Precedence").lower()
    if ((auto_submitted and auto_submitted != "no") or message.get("X-Autoreply") or message.get("X-Autorespond")
            or precedence == "auto_reply" or AUTO_REPLY_SUBJECT.search(reading.subject.strip())):
        reading.kind, reading.reason = AUTO_REPLY, "an auto-reply"
        return True
    return False


# --- classification -----------------------------------------------------------------------------------

def classify(status: str, text: str, from_text: bool = False) -> tuple[str, str]:
    """(HARD or SOFT, the status used) of a permanent failure with STATUS and the server's TEXT.

    A generic status is refined by a more specific one in the text (Status: 5.0.0 with "550 5.1.1 ...").
    Hard needs a status that says the address or domain does not exist; the text alone never makes a
    bounce hard: some receivers answer "550 User unknown" for mail they filtered (Japan's mobile
    carriers among them), and a refusal after DATA means the address was accepted. FROM_TEXT: the
    status was found in free text, which may quote other replies, so the text must agree."""
    in_text = _status(text)
    if status in GENERIC_STATUSES and in_text:
        status = in_text
    if not status:
        code = REPLY_CODE.search(text)
        if code and code.group(1).startswith("4"):
            return SOFT, ""
    if status.startswith(("4", "2", "5.7")) or SOFT_TEXT.search(text) or AFTER_DATA.search(text):
        return SOFT, status
    if status in HARD_STATUSES and (not from_text or HARD_TEXT.search(text)):
        return HARD, status
    if status == "5.4.4" and NO_SUCH_DOMAIN.search(text):
        return HARD, status
    return SOFT, status


# --- helpers ------------------------------------------------------------------------------------------

def _header(message, name):
    value = message.get(name, "")
    try:
        return str(email.header.make_header(email.header.decode_header(value))) if value else ""
    except (UnicodeError, LookupError, email.errors.HeaderParseError):
        return str(value)


def _first_part(message, content_type):
    for part in message.walk():
        if part.get_content_type() == content_type:
            return part
    return None


def _payload_text(part):
    payload = part.get_payload(decode=True)
    if payload is None:
        payload = part.get_payload()
        if isinstance(payload, list):
            return "\n".join(item.as_string() if isinstance(item, Message) else str(item) for item in payload)
        return str(payload)
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except LookupError:
        return payload.decode("utf-8", "replace")


def _fields(part):
    """The header fields a report part holds (a feedback report, a DSN group)."""
    payload = part.get_payload()
    if isinstance(payload, list):
        merged = Message()
        for item in payload:
            for name, value in item.items():
                merged[name] = value
        return merged
    return HeaderParser().parsestr(_payload_text(part).lstrip())


def _status_groups(part):
    """The field groups of a message/delivery-status part: per-message first, then one per recipient."""
    payload = part.get_payload()
    if isinstance(payload, list) and payload:
        return payload
    text = _payload_text(part).replace("\r\n", "\n")
    return [HeaderParser().parsestr(block.strip() + "\n") for block in re.split(r"\n[ \t]*\n", text) if block.strip()]


def _returned_headers(message):
    for part in message.walk():
        content_type = part.get_content_type()
        if content_type in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload:
                return payload[0]
        if content_type in ("text/rfc822-headers", "message/rfc822-headers", "text/rfc822-header"):
            return BytesHeaderParser().parsebytes((part.get_payload(decode=True) or b"").lstrip())
    return None


def _returned_message_id(message):
    returned = _returned_headers(message)
    if returned is not None and returned.get("Message-ID"):
        return returned.get("Message-ID").strip()
    # A copy quoted in the text: the first Message-ID below the bounce's own headers.
    found = BODY_MESSAGE_ID.search(_all_text(message))
    return found.group(1) if found else ""


def _tokens(message, raw):
    """Bounce tokens: the VERP address the bounce was delivered to, and any in the returned copy. They
    are signed, so one found anywhere is ours; matching verifies them."""
    found = []
    for name in ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To", "Original-Recipient"):
        for value in message.get_all(name, []) or []:
            found += [token.lower() for token in TOKEN.findall(str(value))]
    text = _all_text(message)
    found += [token.lower() for token in TOKEN.findall(text)]
    found += [token.lower() for token in HEADER_TOKEN.findall(text)]
    return list(dict.fromkeys(found))


def _all_text(message):
    """Every part's text, decoded, and the returned messages' headers; the top headers excluded."""
    texts = []
    for part in message.walk():
        if part.is_multipart():
            continue
        if part is not message or part.get_content_maintype() == "text":
            texts.append(_payload_text(part))
    for part in message.walk():
        if part is not message and part.get_content_type() in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload:
                texts.append("".join(f"{name}: {value}\n" for name, value in payload[0].items()))
    return "\n".join(texts)


def _diagnostic_text(message):
    """The text parts of a bounce, without the copy of the original it may quote."""
    texts = []
    for part in message.walk():
        if part.get_content_maintype() != "text" or part.get_content_type() in ("text/rfc822-headers",):
            continue
        if part.get_content_type() == "text/html" and texts:
            continue
        text = _payload_text(part)
        if part.get_content_type() == "text/html":
            text = re.sub(r"<[^>]+>", " ", text)
        cut = ORIGINAL_STARTS.search(text)
        texts.append(text[:cut.start()] if cut and cut.start() > 0 else text)
    return "\n".join(texts)


def _near(text, address):
    """The text about ADDRESS: from its first mention to the next blank line after at least two more
    lines (a reply is often on the lines below the address); the whole text when it is not mentioned."""
    lower = text.lower()
    index = lower.find(address.lower())
    if index < 0:
        return text[:2000]
    rest = text[index:index + 1500]
    lines = rest.splitlines()
    window = []
    for line in lines:
        if not line.strip() and len(window) >= 3:
            break
        window.append(line)
    return "\n".join(window)


def _status(text):
    found = STATUS.search(text or "")
    return ".".join(found.groups()) if found else ""


def _address(value):
    """The address in a DSN recipient field ("rfc822; a@b"), a header or a detector's result, lower-cased."""
    value = (value or "").strip()
    if ";" in value:
        value = value.split(";", 1)[1]
    found = ADDRESS.search(value.strip().strip("<>"))
    return found.group(0).strip("<>.").lower() if found else ""


def _clean(text):
    return re.sub(r"\s+", " ", text or "").strip()[:500]


def _looks_like_bounce(message):
    return bool(message.get("X-Failed-Recipients") or BOUNCE_SENDER.search(_header(message, "From"))
                or BOUNCE_SUBJECT.search(_header(message, "Subject")))
