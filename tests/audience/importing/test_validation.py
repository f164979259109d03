"""validate_emails must agree with email_validator.validate_email row by row."""

import random
import string

import dns.exception
import dns.resolver
import numpy as np
import pandas as pd
import pytest
from email_validator import EmailNotValidError, validate_email

from campaigns.audience.importing.validation import MISSING_EMAIL, check_mx, validate_emails

ATEXT_SPECIALS = "!#$%&'*+-/=?^_`{|}~"
ASCII_PRINTABLE = "".join(chr(c) for c in range(32, 127))
UNICODE_BITS = [
    "é", "É", "ü", "ß", "ñ", "中文", "日本", "Ω", "ŉ", "ı", "İ", "e\u0301", "\u0301", "\u200b", "\u200d",
    "\u00a0", "\u2003", "\u2028", "\u202e", "\ufeff", "\ud800", "\ue000", "＠", "﹫", "。", "．", "ｅ",
    "Ⅻ", "⒈", "ﬁ", "\u0663", "א", "ب", "😀", "\x00", "\x7f", "\x85", "K", "ſ",
]
ROLE_NAMES = ["info", "Info", "SALES", "Support", "postmaster", "WebMaster", "abuse", "noc", "infos", "sale"]
SPECIAL_SUFFIXES = ["localhost", "local", "LOCAL", "test", "TeSt", "invalid", "onion", "arpa", "in-addr.arpa"]
TLDS = ["com", "org", "net", "io", "co.uk", "de", "COM", "Org", "museum", "travel", "xyz", "a", "c0m", "123",
        "1a", "com-", "-com", "xn--p1ai", "xn--zz", "рф", "example", "localhost", "testing", "locals", "ab--c",
        "museum" * 11]


def library_answer(cell):
    """What the library says about one raw cell (after the documented strip)."""
    text = cell.strip() if isinstance(cell, str) else ""
    if not text:
        return None, MISSING_EMAIL
    try:
        return validate_email(text, check_deliverability=False).normalized, None
    except EmailNotValidError as e:
        return None, str(e)


def random_atom(rng, alphabet=string.ascii_letters + string.digits, low=1, high=10):
    return "".join(rng.choices(alphabet, k=rng.randint(low, high)))


def random_label(rng):
    kind = rng.random()
    if kind < 0.55:
        return random_atom(rng, string.ascii_lowercase + string.digits, 1, 12)
    if kind < 0.65:
        return random_atom(rng, string.ascii_letters + string.digits, 1, 12)
    if kind < 0.75:  # hyphens anywhere, including label edges and "--"
        return random_atom(rng, "ab1-", 1, 8)
    if kind < 0.80:
        return rng.choice(["xn--bcher-kva", "xn--80ak6aa92e", "XN--BCHER-KVA", "xn--a", "ab--cd", "a" * 63, "a" * 64])
    if kind < 0.90:
        return rng.choice(["bücher", "münchen", "例え", "пример", "ÄÖÜ", "ｅｘａｍｐｌｅ", "а", "e\u0301x"])
    return random_atom(rng, string.ascii_lowercase + "_." + "".join(UNICODE_BITS[:6]), 0, 6)


def random_domain(rng):
    kind = rng.random()
    if kind < 0.06:
        return rng.choice(["[1.2.3.4]", "[IPv6:::1]", "[ipv6:2001:db8::1]", "[999.1.1.1]", "[x:y]", "[]", "1.2.3.4"])
    labels = [random_label(rng) for _ in range(rng.randint(0, 3))]
    if kind < 0.20:
        labels.append(rng.choice(SPECIAL_SUFFIXES))
    else:
        labels.append(rng.choice(TLDS) if rng.random() < 0.5 else random_atom(rng, string.ascii_letters, 1, 7))
    domain = ".".join(labels)
    if rng.random() < 0.04:
        domain = rng.choice([".", "-", "", ".."]) + domain
    if rng.random() < 0.04:
        domain = domain + rng.choice([".", "-", "。"])
    if rng.random() < 0.03:
        domain = "a" * rng.randint(240, 260) + "." + domain
    return domain


def random_local(rng):
    kind = rng.random()
    if kind < 0.40:
        parts = [random_atom(rng) for _ in range(rng.randint(1, 3))]
        return ".".join(parts)
    if kind < 0.55:
        parts = [random_atom(rng, string.ascii_letters + string.digits + ATEXT_SPECIALS, 1, 6) for _ in range(rng.randint(1, 3))]
        return ".".join(parts)
    if kind < 0.62:
        return rng.choice(ROLE_NAMES)
    if kind < 0.72:  # any printable ASCII, dots in bad places
        return random_atom(rng, ASCII_PRINTABLE + "...", 0, 10)
    if kind < 0.80:
        return random_atom(rng, string.ascii_letters, 1, 4) + "".join(rng.choices(UNICODE_BITS, k=rng.randint(1, 2)))
    if kind < 0.86:
        return '"' + random_atom(rng, ASCII_PRINTABLE, 0, 8) + '"'
    if kind < 0.93:
        return random_atom(rng, string.ascii_lowercase, 55, 260)
    return rng.choice([".a", "a.", "a..b", "", "-a", "a-", "~", "a b", "a@b", "a\\b", "(c)a"])


def random_cell(rng):
    kind = rng.random()
    if kind < 0.01:
        return rng.choice([None, np.nan, "", "   ", "\t\n", "\u00a0", "\u2003"])
    if kind < 0.05:
        return rng.choice(["plainaddress", "a@b@c.com", "@example.com", "a@", "@", "John <john@example.com>",
                           "<john@example.com>", "a＠example.com", "a﹫example.com", "a@@example.com"])
    address = random_local(rng) + "@" + random_domain(rng)
    if kind < 0.10:
        address = rng.choice([" ", "\t", "\n", "\u00a0", "\u2003", "\x1c", "\u200b"]) + address + rng.choice(["", " ", "\r\n", "\u3000"])
    if kind < 0.12:  # aim at the 254-character limit from both sides
        local, _, domain = address.partition("@")
        address = "x" * max(1, rng.randint(250, 256) - len(domain) - 1) + "@" + domain
    return address


def realistic_cell(rng):
    first = random_atom(rng, string.ascii_lowercase, 2, 9)
    last = random_atom(rng, string.ascii_lowercase, 2, 12)
    local = rng.choice([f"{first}.{last}", f"{first}{last}", f"{first[0]}{last}{rng.randint(1, 99)}",
                        f"{first}_{last}", f"{first}+news", rng.choice(ROLE_NAMES)])
    domain = rng.choice(["gmail.com", "yahoo.com", "outlook.com", "hotmail.co.uk", "example.com", "web.de",
                         f"{last}-consulting.com", f"mail.{last}.org", f"{first}.io"])
    if rng.random() < 0.05:
        local, domain = local.capitalize(), domain.upper()
    address = f"{local}@{domain}"
    if rng.random() < 0.03:
        address = f" {address} "
    if rng.random() < 0.02:
        address = rng.choice([address.replace("@", ""), address + ".", f"{first}..{last}@{domain}"])
    return address


def assert_agrees_with_library(cells):
    series = pd.Series(cells, dtype=object)
    result = validate_emails(series)
    mismatches = []
    for cell, normalized, error in zip(cells, result.normalized, result.error):
        expected = library_answer(cell)
        if (normalized, error) != expected:
            mismatches.append((cell, (normalized, error), expected))
    assert mismatches == [], f"{len(mismatches)} mismatches, first: {mismatches[:5]}"
    return result


@pytest.mark.slow  # 60,000 rows: about 15 s of CPU (the library's answer, cell by cell, is most of it)
def test_generated_corpus_matches_the_library_row_by_row():
    rng = random.Random(20240611)
    cells = [random_cell(rng) for _ in range(60_000)]
    result = assert_agrees_with_library(cells)
    valid = result.error.isna().sum()
    # The corpus must exercise both outcomes and both paths to prove anything.
    assert 12_000 < valid < 48_000
    assert 6_000 < result.fast_path_rows < valid


def test_realistic_list_is_mostly_settled_on_the_fast_path():
    rng = random.Random(7)
    cells = [realistic_cell(rng) for _ in range(50_000)]
    result = assert_agrees_with_library(cells)
    assert result.fast_path_rows / len(cells) > 0.95


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("Jane.Doe+news@Example.COM", "Jane.Doe+news@example.com"),  # local part keeps its case
        ("INFO@example.com", "info@example.com"),  # RFC 2142 role names are lowercased
        ("  bob@example.org\t", "bob@example.org"),  # surrounding whitespace is stripped
        ("user@test.example.com", "user@test.example.com"),  # special-use only as the last labels
        ("user@mail.c0m", "user@mail.c0m"),  # a TLD only has to end with a letter
        ("user@xn--bcher-kva.de", "user@bücher.de"),  # Punycode comes back as Unicode
        ("user@BÜCHER.de", "user@bücher.de"),
        ("josé@example.com", "josé@example.com"),  # SMTPUTF8 local parts are allowed
        ("a" * 64 + "b@example.com", "a" * 64 + "b@example.com"),  # no local-part limit by default
    ],
)
def test_accepted_addresses_are_normalized_like_the_library(raw, normalized):
    result = validate_emails(pd.Series([raw]))
    assert result.error[0] is None
    assert result.normalized[0] == normalized


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("john.example.com", "must have an @-sign"),
        ("a@b@example.com", "after the @-sign contains invalid characters: '@'"),
        ("a..b@example.com", "two periods in a row"),
        (".a@example.com", "cannot start with a period"),
        ("a@-example.com", "hyphen immediately after the @-sign"),
        ("a@example-.com", "period and a hyphen next to each other"),
        ("a@example.com.", "cannot end with a period"),
        ("a@example.123", "not within a valid top-level domain"),
        ("a@localhost", "should have a period"),
        ("a@printer.local", "special-use or reserved name"),
        ("a@site.test", "special-use or reserved name"),
        ("a@x.invalid", "special-use or reserved name"),
        ('"john doe"@example.com', "Quoting the part before the @-sign is not allowed"),
        ("a@[192.0.2.1]", "bracketed IP address"),
        ("John <john@example.com>", "display name"),
        ("a@ab--cd.com", "two letters followed by two dashes"),
        ("a@" + "b" * 64 + ".com", "periods cannot be separated by so many characters"),
        ("a" * 245 + "@example.com", "too long"),
    ],
)
def test_rejected_addresses_carry_the_library_reason(raw, reason):
    result = validate_emails(pd.Series([raw]))
    assert pd.isna(result.normalized[0])
    assert reason in result.error[0]


@pytest.mark.parametrize("blank", [None, np.nan, pd.NA, "", "   ", "\t\n"])
def test_blank_cells_are_reported_as_missing(blank):
    result = validate_emails(pd.Series(["ok@example.com", blank], dtype=object))
    assert list(result.error) == [None, MISSING_EMAIL]
    assert result.normalized[1] is None


def test_results_keep_the_input_index():
    emails = pd.Series(["B@Example.com", "nope", "a@example.org"], index=[10, 3, 7])
    result = validate_emails(emails)
    assert list(result.normalized.index) == [10, 3, 7]
    assert result.normalized[10] == "B@example.com"
    assert result.normalized[7] == "a@example.org"
    assert result.error[3] == "An email address must have an @-sign."
    assert result.error[10] is None


def test_follows_changes_to_the_librarys_special_use_list(monkeypatch):
    import email_validator

    monkeypatch.setattr(email_validator, "SPECIAL_USE_DOMAIN_NAMES", [*email_validator.SPECIAL_USE_DOMAIN_NAMES, "corp.example"])
    cells = ["a@mail.corp.example", "a@CORP.example", "a@xcorp.example", "a@corp.example.com"]
    result = assert_agrees_with_library(cells)
    assert list(result.error.isna()) == [False, False, True, True]


def test_repeated_slow_path_strings_are_validated_once(monkeypatch):
    from campaigns.audience.importing import validation

    calls = []
    real = validation.validate_email_address
    monkeypatch.setattr(validation, "validate_email_address", lambda text: calls.append(text) or real(text))
    result = validate_emails(pd.Series(["bad", " bad ", "bad", "josé@example.com", "josé@example.com", "x@y.com"]))
    assert sorted(calls) == ["bad", "josé@example.com"]
    assert result.fast_path_rows == 1
    assert list(result.error.isna()) == [False, False, False, True, True, True]


class FakeMX:
    def __init__(self, preference, exchange):
        self.preference, self.exchange = preference, exchange


class FakeResolver:
    """Answers like dns.resolver.Resolver.resolve for a fixed table."""

    def __init__(self):
        self.mx_queries = []

    def resolve(self, name, rdtype):
        if rdtype == "MX":
            self.mx_queries.append(name)
        if name == "slow.example":
            raise dns.exception.Timeout()
        if name == "mail.example" and rdtype == "MX":
            return [FakeMX(10, "mx1.mail.example.")]
        if name == "nomail.example":
            raise dns.resolver.NoAnswer()
        raise dns.resolver.NXDOMAIN()


def test_check_mx_uses_the_resolver_once_per_domain():
    resolver = FakeResolver()
    domains = ["mail.example", "nomail.example", "slow.example", "mail.example", "gone.example", "slow.example",
               "bücher.example"]
    assert check_mx(domains, resolver=resolver) == {
        "mail.example": True,
        "nomail.example": False,  # no MX, A or AAAA record
        "slow.example": True,  # a timeout is "unknown", which must not drop the recipient
        "gone.example": False,
        "bücher.example": False,
    }
    # IDN domains are looked up in their Punycode form.
    assert sorted(resolver.mx_queries) == ["gone.example", "mail.example", "nomail.example", "slow.example",
                                           "xn--bcher-kva.example"]
