"""Map a file's header row to Recipient fields; every other column becomes a merge tag in `data`."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from campaigns.exceptions import ImportRefused

EMAIL_NAMES = {"email", "e_mail", "email_address", "e_mail_address", "emailaddress", "mail", "email_addr",
               "mail_address", "emails"}
FIRST_NAME_NAMES = {"first_name", "firstname", "fname", "first", "given_name", "givenname", "forename"}
LAST_NAME_NAMES = {"last_name", "lastname", "lname", "last", "surname", "family_name", "familyname"}
# Merge tags that rendering provides itself; a column of the same name is renamed.
RESERVED_TAGS = {"email", "first_name", "last_name", "unsubscribe_url"}


@dataclass(frozen=True)
class HeaderMap:
    original: list[str]  # the header cells as they are in the file
    email: int
    first_name: int | None
    last_name: int | None
    data: list[tuple[int, str]]  # (column, merge tag) for every other column


def merge_tag_name(header: str) -> str:
    """'First Name' -> 'first_name', 'E-mail' -> 'e_mail', 'Código postal' -> 'codigo_postal'."""
    ascii_text = unicodedata.normalize("NFKD", header).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "_", ascii_text.lower()).strip("_")


def map_headers(header: list[str]) -> HeaderMap:
    names = [merge_tag_name(h) for h in header]
    email = _first(names, EMAIL_NAMES)
    if email is None:
        shown = ", ".join(f"'{h}'" for h in header if h.strip()) or "none"
        raise ImportRefused(f"The file has no email column (columns found: {shown}); name one column 'email'.")
    first_name = _first(names, FIRST_NAME_NAMES)
    last_name = _first(names, LAST_NAME_NAMES)
    used = set(RESERVED_TAGS)
    data = []
    for column, name in enumerate(names):
        if column in (email, first_name, last_name):
            continue
        # A Django template variable must start with a letter.
        tag = name if name[:1].isalpha() else f"column_{column + 1}" if not name else f"col_{name}"
        unique, n = tag, 2
        while unique in used:
            unique, n = f"{tag}_{n}", n + 1
        used.add(unique)
        data.append((column, unique))
    return HeaderMap(list(header), email, first_name, last_name, data)


def _first(names: list[str], wanted: set[str]) -> int | None:
    return next((i for i, name in enumerate(names) if name in wanted), None)
