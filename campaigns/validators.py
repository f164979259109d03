"""Model-level validation of addresses and recipient data (issue 13, item 2).

Addresses are checked by email-validator with the importer's options
(campaigns.importing.validation.LIBRARY_OPTIONS), so the admin and imports agree on what an address is.
"""

from email.utils import parseaddr

from django.conf import settings
from django.core.exceptions import ValidationError

# Every character Python treats as a line break: in an address it would end a header line.
LINE_BREAKS = frozenset("\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


def refuse_line_breaks(value):
    if value and LINE_BREAKS.intersection(value):
        raise ValidationError("Line breaks are not allowed in an address.", code="line_break")


def require_json_object(value):
    if not isinstance(value, dict):
        raise ValidationError("Recipient data must be a JSON object of column name to value.", code="not_object")


def validate_from_email(value):
    """A sender: an address, optionally with a display name ('Acme <news@acme.com>'), whose domain is in
    ALLOWED_FROM_DOMAINS when that is set."""
    from email_validator import EmailNotValidError, validate_email

    from campaigns.importing.validation import LIBRARY_OPTIONS

    if not value:
        return
    refuse_line_breaks(value)
    text = value.strip()
    _, address = parseaddr(text)
    # parseaddr takes the first of several addresses and ignores trailing text: the whole value must be
    # the address, or a display name followed by <address>.
    if not address or not (text == address or text.endswith(f"<{address}>")):
        raise ValidationError("Enter a sender address, e.g. news@example.com or Acme <news@example.com>.",
                              code="invalid")
    try:
        checked = validate_email(address, **LIBRARY_OPTIONS)
    except EmailNotValidError as error:
        raise ValidationError(f"Not a valid sender address: {error}", code="invalid") from error
    allowed = [domain.strip().lower() for domain in settings.ALLOWED_FROM_DOMAINS if domain.strip()]
    if allowed and checked.ascii_domain.lower() not in allowed and checked.domain.lower() not in allowed:
        raise ValidationError(f"The sender's domain must be one of: {', '.join(allowed)}.", code="domain")
