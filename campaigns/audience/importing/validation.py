"""Bulk email-address validation that gives exactly what `email_validator` gives.

`validate_emails` gives, for a whole column, the answers of the one single-address
check, `campaigns.audience.validators.validate_email_address`: email-validator 2.4.0's
`validate_email` with `check_deliverability=False` and every other option at the
library's default (pinned in `campaigns.audience.validators.LIBRARY_OPTIONS` so that changes
to the library's module-level defaults cannot make the two paths disagree). What
those defaults mean:

- internationalised addresses (SMTPUTF8 local parts, IDN domains) are accepted;
- quoted local parts, bracketed IP domain literals, display names
  (``Name <a@b.com>``) and empty local parts are rejected;
- the domain needs a dot and must end in a letter;
- special-use domains (``email_validator.SPECIAL_USE_DOMAIN_NAMES``: arpa,
  invalid, local, localhost, onion, test and their subdomains) are rejected
  because ``test_environment`` is False;
- ``example.com``/``.net``/``.org`` are accepted: the library leaves them out
  of the special-use list and only its DNS check would reject them;
- there is no local-part length limit (``strict`` is False), only the 254
  character address limit.

Cells are stripped of surrounding whitespace with Python's ``str.strip()``
first, because spreadsheets are full of stray spaces and the library itself
does not strip. Empty, blank, None and NaN cells get "Missing email address".

Most addresses in a real list are plain ASCII ``local@domain.tld``. Those are
recognised with one compiled regular expression whose every branch is provably
valid for the library, and normalised without calling it (the library keeps an
ASCII local part as typed, except RFC 2142 role names which it lowercases, and
lowercases an ASCII domain). Everything else goes through `validate_email_address`
itself, once per distinct string, which also gives the rejection reason.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

import email_validator
import idna  # email_validator's own IDNA 2008 implementation
from django.core.exceptions import ValidationError
from email_validator import EmailUndeliverableError
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES, EMAIL_MAX_LENGTH

from campaigns.audience.importing.libraries import pd
from campaigns.audience.validators import validate_email_address

MISSING_EMAIL = "Missing email address"


@dataclass(frozen=True)
class ValidationResult:
    normalized: pd.Series  # the library's normalised address, None when invalid
    error: pd.Series  # None when valid, else the reason
    fast_path_rows: int  # rows settled without calling the library


def validate_emails(emails: pd.Series) -> ValidationResult:
    """Validate a column of raw cells; both result Series keep `emails.index`.

    Surrounding whitespace is stripped (``str.strip()``) before validation.
    """
    plain, any_case = _fast_patterns(
        tuple(email_validator.SPECIAL_USE_DOMAIN_NAMES), tuple(CASE_INSENSITIVE_MAILBOX_NAMES)
    )
    is_plain = plain.fullmatch
    values = emails.to_numpy(dtype=object)
    # An already-normalised ASCII address (lowercase domain, no role name,
    # no padding) is its own normalised form: the cheapest and commonest case.
    normalized = [
        v if v.__class__ is str and len(v) <= EMAIL_MAX_LENGTH and is_plain(v) is not None else None
        for v in values
    ]
    errors: list[str | None] = [None] * len(values)
    fast_path_rows = len(values)
    library_answers: dict[str, tuple[str | None, str | None]] = {}
    for i in [i for i, n in enumerate(normalized) if n is None]:
        text = _cell_text(values[i])
        answer = _normalize_any_case(text, any_case) if text else None
        if answer is not None:
            normalized[i] = answer
            continue
        fast_path_rows -= 1
        if not text:
            errors[i] = MISSING_EMAIL
            continue
        if text not in library_answers:
            library_answers[text] = _ask_library(text)
        normalized[i], errors[i] = library_answers[text]
    return ValidationResult(
        normalized=pd.Series(normalized, index=emails.index, dtype=object, name="normalized"),
        error=pd.Series(errors, index=emails.index, dtype=object, name="error"),
        fast_path_rows=fast_path_rows,
    )


def check_mx(domains: Iterable[str], resolver=None) -> dict[str, bool]:
    """Look up each distinct domain once: True if it has MX (or A/AAAA fallback) records.

    A timeout or unreachable name servers mean "unknown" and count as True;
    `resolver` is anything with dnspython's ``resolve(name, rdtype)``.
    """
    # Imported here because dns.resolver is slow to import and rarely needed.
    from email_validator.deliverability import caching_resolver, validate_email_deliverability

    if resolver is None:
        resolver = caching_resolver()
    has_mx: dict[str, bool] = {}
    for domain in dict.fromkeys(domains):
        try:
            ascii_domain = domain if domain.isascii() else idna.encode(domain).decode("ascii")
            validate_email_deliverability(ascii_domain, domain, dns_resolver=resolver)
        except (EmailUndeliverableError, idna.IDNAError):
            has_mx[domain] = False
        else:
            has_mx[domain] = True
    return has_mx


def _cell_text(value) -> str:
    if isinstance(value, str):
        return value.strip()
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return ""
    return str(value).strip()


def _normalize_any_case(text: str, any_case: re.Pattern) -> str | None:
    match = any_case.fullmatch(text) if len(text) <= EMAIL_MAX_LENGTH else None
    if match is None:
        return None
    local, domain = match.groups()
    if local.lower() in CASE_INSENSITIVE_MAILBOX_NAMES:
        local = local.lower()
    return local + "@" + domain.lower()


def _ask_library(text: str) -> tuple[str | None, str | None]:
    try:
        return validate_email_address(text).normalized, None
    except ValidationError as refused:
        return None, refused.params["reason"]


@functools.lru_cache(maxsize=4)
def _fast_patterns(special_use: tuple[str, ...], role_names: tuple[str, ...]) -> tuple[re.Pattern, re.Pattern]:
    """Two patterns for addresses the library certainly accepts unchanged but for case.

    Deliberately narrower than the library, so anything unusual takes the slow
    path: ASCII dot-atom local part; domain labels of letters and digits with
    single inner hyphens (so no "xn--" Punycode and no "ab--" R-LDH label),
    at most 63 characters each; a TLD of 2-63 letters; no special-use name
    as a suffix at any label boundary.
    """
    atext = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
    local = rf"{atext}++(?:\.{atext}++)*+"
    not_role = _none_of(role_names, before="@")
    # A special-use name matches at a label boundary up to the end. A name
    # without dots can only be the TLD, so only multi-label names need the
    # (slower) look-ahead at every label.
    not_special_tld = _none_of([d for d in special_use if "." not in d], before=r"\Z")
    not_special_suffix = _none_of([d for d in special_use if "." in d], before=r"\Z")

    def domain(alnum: str, letter: str) -> str:
        label = rf"{not_special_suffix}(?![A-Za-z0-9-]{{64}}){alnum}++(?:-{alnum}++)*+"
        return rf"(?:{label}\.)++{not_special_tld}{letter}{{2,63}}+"

    plain = re.compile(rf"{not_role}{local}@{domain('[a-z0-9]', '[a-z]')}", re.ASCII)
    any_case = re.compile(rf"({local})@({domain('[A-Za-z0-9]', '[A-Za-z]')})", re.ASCII)
    return plain, any_case


def _none_of(words: list[str], before: str) -> str:
    """A case-insensitive negative look-ahead for any of `words` followed by `before`."""
    if not words:
        return ""
    return "(?!(?i:" + "|".join(map(re.escape, words)) + ")" + before + ")"
