"""Validation of addresses and recipient data (issue 13, item 2).

`validate_email_address` is the one check of an email address, wherever one is accepted: the admin's
test send and suppression form, the send_test_email command, the sender address, and (through
campaigns.audience.importing.validation's bulk version, which gives exactly its answers) recipient and
suppression imports. So every place agrees on what an address is.
"""

from email.utils import parseaddr

from django.conf import settings
from django.core.exceptions import ValidationError

# Every character Python treats as a line break: in an address it would end a header line.
LINE_BREAKS = frozenset("\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")

# email-validator 2.4.0's options, pinned at its defaults (but no DNS check) so that a change of the
# library's module-level defaults cannot make the bulk path disagree; campaigns/audience/importing/validation.py
# says what they accept.
LIBRARY_OPTIONS = dict(
    check_deliverability=False,
    allow_smtputf8=True,
    allow_empty_local=False,
    allow_quoted_local=False,
    allow_domain_literal=False,
    allow_display_name=False,
    strict=False,
    globally_deliverable=True,
    test_environment=False,
)


def validate_email_address(value):
    """VALUE, stripped of surrounding whitespace, checked by email-validator with LIBRARY_OPTIONS: returns
    the library's ValidatedEmail (.normalized is the address to use); ValidationError otherwise, whose
    params["reason"] is the library's reason."""
    # Imported here: models import this module, and the library is slow to import.
    from email_validator import EmailNotValidError, validate_email

    try:
        return validate_email(value.strip(), **LIBRARY_OPTIONS)
    except EmailNotValidError as error:
        raise ValidationError("Enter a valid email address: %(reason)s", code="invalid",
                              params={"reason": str(error)}) from error


def refuse_line_breaks(value):
    if value and LINE_BREAKS.intersection(value):
        raise ValidationError("Line breaks are not allowed in an address.", code="line_break")


def require_json_object(value):
    if not isinstance(value, dict):
        raise ValidationError("Recipient data must be a JSON object of column name to value.", code="not_object")


def validate_from_email(value):
    """A sender: an address, optionally with a display name ('Acme <news@acme.com>'), whose domain is in
    ALLOWED_FROM_DOMAINS when that is set."""
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
        checked = validate_email_address(address)
    except ValidationError as error:
        raise ValidationError(f"Not a valid sender address: {error.params['reason']}", code="invalid") from error
    allowed = [domain.strip().lower() for domain in settings.ALLOWED_FROM_DOMAINS if domain.strip()]
    if allowed and checked.ascii_domain.lower() not in allowed and checked.domain.lower() not in allowed:
        raise ValidationError(f"The sender's domain must be one of: {', '.join(allowed)}.", code="domain")
