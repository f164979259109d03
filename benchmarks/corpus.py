"""Realistic recipient lists for the import benchmark: CRM-style columns, ~1% bad rows, ~1% repeats."""

from __future__ import annotations

import tempfile
import unicodedata
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

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


def wide_frame(rows: int, columns: int) -> pd.DataFrame:
    """recipients_frame with extra CRM columns (Phone, Country, Score, ...) up to COLUMNS columns."""
    frame = recipients_frame(rows)
    extras = {"Phone": lambda i: "+351 21 " + (i % 10_000_000).astype(str), "Country": lambda i: np.array(
        ["PT", "GB", "FR", "DE", "US", "JP", "PL", "CH", "BR"], dtype=object)[i % 9],
        "Score": lambda i: (i * 7919 % 1000).astype(str)}
    index = np.arange(rows)
    for n, (name, make) in enumerate(extras.items()):
        if len(frame.columns) >= columns:
            break
        frame[name] = make(index).astype(object)
    for n in range(len(frame.columns), columns):
        frame[f"Custom {n}"] = np.char.add("value", (index % 997).astype(str)).astype(object)
    return frame


def write_csv(path, rows: int) -> None:
    recipients_frame(rows).to_csv(path, index=False)


def write_xlsx(path, rows: int, columns: int = 7) -> None:
    """An XLSX as Excel writes it (shared strings), written straight as XML: openpyxl takes minutes
    for a million rows."""
    frame = recipients_frame(rows) if columns == 7 else wide_frame(rows, columns)
    strings: dict[str, int] = {}
    index = strings.setdefault
    values = [frame[c].to_numpy(dtype=object) for c in frame.columns]
    letters = [chr(ord("A") + i) for i in range(len(frame.columns))]

    def row_xml(number, ids):
        return '<row r="%d">%s</row>' % (number, "".join(
            f'<c r="{letter}{number}" t="s"><v>{i}</v></c>' for letter, i in zip(letters, ids)))

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("[Content_Types].xml", _CONTENT_TYPES)
        archive.writestr("_rels/.rels", _ROOT_RELS)
        archive.writestr("xl/workbook.xml", _WORKBOOK)
        archive.writestr("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS)
        with archive.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as sheet:
            sheet.write(_SHEET_HEAD.format(ref=f"A1:{letters[-1]}{rows + 1}").encode())
            sheet.write(row_xml(1, [index(str(h), len(strings)) for h in frame.columns]).encode())
            block = []
            for number, row in enumerate(zip(*values), start=2):
                block.append(row_xml(number, [index(v, len(strings)) for v in row]))
                if len(block) == 10_000:
                    sheet.write("".join(block).encode())
                    block.clear()
            sheet.write(("".join(block) + "</sheetData></worksheet>").encode())
        with archive.open("xl/sharedStrings.xml", "w", force_zip64=True) as shared:
            shared.write(f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<sst xmlns="{_MAIN}" '
                         f'count="{len(strings)}" uniqueCount="{len(strings)}">'.encode())
            shared.write("".join(f"<si><t>{escape(text)}</t></si>" for text in strings).encode())
            shared.write(b"</sst>")


def cached_xlsx(rows: int, columns: int = 7) -> Path:
    """The generated workbook, kept between runs in the temporary directory (a million rows takes a while)."""
    directory = Path(tempfile.gettempdir()) / "mailer-benchmark-files"
    directory.mkdir(exist_ok=True)
    path = directory / f"recipients-{rows}x{columns}-v1.xlsx"
    if not path.exists():
        partial = path.with_suffix(".partial")
        write_xlsx(partial, rows, columns)
        partial.rename(path)
    return path


_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
    '<Override PartName="/xl/sharedStrings.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>'
    "</Types>")
_ROOT_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
    'officeDocument" Target="xl/workbook.xml"/></Relationships>')
_WORKBOOK = (
    f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<workbook xmlns="{_MAIN}" '
    'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
    '<sheets><sheet name="Recipients" sheetId="1" r:id="rId1"/></sheets></workbook>')
_WORKBOOK_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
    'worksheet" Target="worksheets/sheet1.xml"/>'
    '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
    'sharedStrings" Target="sharedStrings.xml"/></Relationships>')
_SHEET_HEAD = (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<worksheet xmlns="{_MAIN}">'
               '<dimension ref="{ref}"/><sheetData>')
