"""What may go into a log line: recipient addresses masked, text from uploads with its control
characters escaped (issue 13, item 9).

- mask_email("john@example.org") == "j***@example.org": enough for staff to tell lines apart,
  not the address. Better still, log the delivery or recipient id.
- mask_addresses(text) masks every address inside free text (a provider's error reply, an import's
  refusal that quotes a header row).
- escape(text) writes control characters (CR, LF, ESC, NUL, DEL, C1, Unicode line separators and
  bidi overrides) as \\xNN / \\uNNNN, so a sheet, header or file name cannot forge or hide log lines.
- mask_secrets(text) masks credentials a library may log: an Authorization header's value (python_http_client
  logs the SendGrid request's headers at DEBUG), Bearer/Basic tokens and SendGrid API keys.
- for_log(value): all of these; use it for anything that came from an upload, a recipient or a provider.
- excerpt(text): a short, escaped excerpt of what a remote server answered (an API's error body), for
  the admin and the log: never the whole body.

LogSafeFilter applies for_log to every record of the handlers in settings.LOGGING, as a net under
the call sites.
"""

import re

_ADDRESS = re.compile(r"[^\s<>()\[\]\\,;:\"'@]+@((?:[A-Za-z0-9\u00a1-\uffff-]+\.)+[A-Za-z0-9\u00a1-\uffff-]{2,})")


def mask_email(address) -> str:
    """j***@example.org for an address; *** for anything that is not one."""
    local, at, domain = str(address or "").rpartition("@")
    if not at or not local or not domain:
        return "***"
    return f"{local[0]}***@{domain}"


def mask_addresses(text) -> str:
    """TEXT with every email address in it masked."""
    return _ADDRESS.sub(lambda m: f"{m.group(0)[0]}***@{m.group(1)}", str(text))


_AUTHORIZATION = re.compile(r"""(\bAuthorization['"]?\s*[:=]\s*['"]?)(?:(Bearer|Basic|Token)\s+)?[^'"\s,}]+""",
                            re.IGNORECASE)
_TOKEN = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)
_SENDGRID_KEY = re.compile(r"\bSG\.[A-Za-z0-9_-]{6,}(?:\.[A-Za-z0-9_-]+)?")


def mask_secrets(text) -> str:
    """TEXT with credentials masked: Authorization values, Bearer/Basic tokens, SendGrid keys (SG.***)."""
    text = _AUTHORIZATION.sub(lambda m: f"{m.group(1)}{m.group(2) + ' ' if m.group(2) else ''}***", str(text))
    text = _TOKEN.sub(lambda m: f"{m.group(1)} ***", text)
    return _SENDGRID_KEY.sub("SG.***", text)


def _escaped(char):
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def escape(text) -> str:
    """TEXT with every non-printable character (controls, line separators, bidi overrides, ...)
    written as \\xNN / \\uNNNN / \\UNNNNNNNN. Idempotent: escaping twice changes nothing more."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escaped(c) for c in text)


def for_log(value) -> str:
    """VALUE as it may appear in a log line: credentials and addresses masked, control characters escaped."""
    return escape(mask_addresses(mask_secrets(value)))


EXCERPT_CHARS = 200


def excerpt(text, limit=EXCERPT_CHARS) -> str:
    """The first LIMIT characters of TEXT, control characters escaped, "…" when cut."""
    text = escape(str(text))
    return text if len(text) <= limit else text[:limit] + "…"


class RewritingFilter:
    """A logging filter that rewrites every message a handler writes with the subclass's `rewrite`."""

    rewrite = staticmethod(str)

    def filter(self, record):
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the handler's to report, not this filter's
            return True
        rewritten = self.rewrite(message)
        if rewritten != message:
            record.msg, record.args = rewritten, None
        return True


class LogSafeFilter(RewritingFilter):
    """Masks credentials and addresses and escapes control characters in every message a handler writes."""

    rewrite = staticmethod(for_log)
