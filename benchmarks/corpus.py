"""Realistic recipient lists for the import benchmark: CRM-style columns, ~1% bad rows, ~1% repeats."""

from __future__ import annotations

import unicodedata

import numpy as np
import pandas as pd

FIRST = ["Ana", "João", "Émilie", "Liam", "Olivia", "Noah", "Emma", "Zoë", "Mateo", "Sofía", "Łukasz", "Aiko",
         "Chen", "Fatima", "Oliver", "Amelia", "Jack", "Isla", "Lucas", "Mia", "O'Brien", "Jean-Luc"]
LAST = ["Silva", "Smith", "Müller", "García", "Rossi", "Nguyen", "Kowalski", "Dubois", "Jones", "Brown",
        "Sato", "Kim", "Ivanova", "O'Neil", "van der Berg", "Da Costa", "Johnson", "Lee"]
DOMAINS = ["gmail.com", "yahoo.com", "outlook.com", "hotmail.co.uk", "acme-corp.com", "example.org",
           "mail.example.net", "uni.edu", "company.io", "web.de"]
# Internationalised addresses are real but rare in CRM exports.
RARE = ["josé@bücher.de", "用户@例子.广告", "θσερ@εχαμπλε.ψομ"]
CITIES = ["Lisbon", "London", "Paris", "Berlin", "São Paulo", "New York", "Tokyo", "Kraków", "Zürich", "Austin"]
COMPANIES = ["Acme, Inc.", "Globex", "Initech", "Umbrella \"Corp\"", "Hooli", "Stark Industries", "Wayne Ent."]
PLANS = ["free", "pro", "enterprise"]
BAD = ["not-an-email", "john@", "@example.com", "a..b@example.com", "jane@example", "x@localhost",
       "name@exam_ple.com", "", "two@@example.com", "space in@example.com"]


def _ascii_local(name: str) -> str:
    """Addresses are mostly plain ASCII even when names are not: 'Müller' -> 'muller'."""
    return unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower().replace("'", "").replace(" ", "")


def recipients_frame(rows: int, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    first = np.array(FIRST, dtype=object)[rng.integers(0, len(FIRST), rows)]
    last = np.array(LAST, dtype=object)[rng.integers(0, len(LAST), rows)]
    domain = np.array(DOMAINS, dtype=object)[rng.integers(0, len(DOMAINS), rows)]
    local = np.char.add("user", np.arange(rows).astype(str)).astype(object)
    emails = local + "." + np.array([_ascii_local(n) for n in LAST], dtype=object)[
        rng.integers(0, len(LAST), rows)] + "@" + domain
    shout = rng.random(rows) < 0.05  # some addresses typed in capitals
    emails[shout] = np.array([e.upper() for e in emails[shout]], dtype=object)
    bad = rng.random(rows) < 0.01
    emails[bad] = np.array(BAD, dtype=object)[rng.integers(0, len(BAD), int(bad.sum()))]
    rare = rng.random(rows) < 0.001
    emails[rare] = [f"{i}.{e}" for i, e in zip(np.flatnonzero(rare), np.array(RARE, dtype=object)[
        rng.integers(0, len(RARE), int(rare.sum()))])]
    repeat = np.flatnonzero(rng.random(rows) < 0.01)
    repeat = repeat[repeat > 0]
    emails[repeat] = [e.lower() for e in emails[rng.integers(0, repeat)]]
    days = rng.integers(0, 3650, rows).astype("timedelta64[D]") + np.datetime64("2015-01-01")
    return pd.DataFrame({
        "Email": emails,
        "First Name": first,
        "Last Name": last,
        "Company": np.array(COMPANIES, dtype=object)[rng.integers(0, len(COMPANIES), rows)],
        "City": np.array(CITIES, dtype=object)[rng.integers(0, len(CITIES), rows)],
        "Plan": np.array(PLANS, dtype=object)[rng.integers(0, len(PLANS), rows)],
        "Signup Date": days.astype(str),
    })


def write_csv(path, rows: int) -> None:
    recipients_frame(rows).to_csv(path, index=False)


def write_xlsx(path, rows: int) -> None:
    recipients_frame(rows).to_excel(path, index=False, engine="openpyxl")
