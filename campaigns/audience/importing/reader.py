"""Open a CSV, XLSX or XLS file as a header row plus chunks of text cells, refusing bad files early.

The format is recognised from the file's first bytes, not its name: a zip is an XLSX workbook,
an OLE compound file is an XLS workbook (or a password-protected XLSX), anything else must be
delimited text. Every refusal is an `ImportRefused` whose message is one sentence for staff.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree


from campaigns.audience.importing.libraries import pd, python_calamine
from campaigns.exceptions import ImportRefused

CHUNK_ROWS = 50_000
SAMPLE_BYTES = 64 * 1024
BLOCK_BYTES = 4 * 1024 * 1024
DELIMITERS = ",;\t|"
ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# An encrypted XLSX is an OLE file holding a stream with this (UTF-16) name.
ENCRYPTED_PACKAGE = "EncryptedPackage".encode("utf-16-le")
# Real workbooks compress their XML 5-30 times; a zip bomb compresses it a thousand times.
MAX_COMPRESSION_RATIO = 200
BIG_ENTRY_BYTES = 10 * 1024 * 1024
UTF8_MULTIBYTE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")
CONTROL_BYTES = re.compile(rb"[\x01-\x08\x0b\x0c\x0e-\x1a\x1c-\x1f]")
TOO_MANY_FIELDS = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")
EOF_IN_QUOTES = re.compile(r"EOF inside string starting at row (\d+)")
MAIN_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
REL_NS = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
PKG_REL_NS = "{http://schemas.openxmlformats.org/package/2006/relationships}"
DIMENSION = re.compile(rb'<(?:\w+:)?dimension\s+ref="[A-Z]*\d*:?[A-Z]*(\d+)"')

PASSWORD_PROTECTED = "The workbook is password-protected; remove the password in Excel and upload it again."
DAMAGED_WORKBOOK = "The workbook is damaged or incomplete, so it cannot be read; save it again from Excel and re-upload it."
BINARY_DATA = "The file contains binary data, not text; upload a CSV, XLSX or XLS file."
EMPTY_FILE = "The file is empty."
MIXED_ENCODINGS = (
    "The file mixes text encodings (part UTF-8, part another encoding), so names would be garbled; "
    "save it again as 'CSV UTF-8' and re-upload it."
)


@dataclass
class Chunk:
    """Consecutive data rows. `frame` has columns 0..n-1 of str and is indexed by the row number the
    user sees in their file (the first row is 1). `ragged` holds every value of rows that had more
    values than the header."""

    frame: pd.DataFrame
    ragged: dict[int, list[str]] = field(default_factory=dict)


@dataclass
class Table:
    header: list[str]
    header_row: int  # the row number of the header in the file (1 unless blank rows precede it)
    rows_estimated: int
    chunks: Iterator[Chunk]
    kind: str  # "csv", "xlsx" or "xls"
    detail: str = ""  # e.g. the encoding and delimiter, or the sheet


def open_table(path, sheet: str | None = None, max_rows: int = 2_000_000) -> Table:
    path = Path(path)
    with path.open("rb") as f:
        head = f.read(SAMPLE_BYTES)
    if not head:
        raise ImportRefused(EMPTY_FILE)
    if head.startswith(ZIP_MAGIC):
        return _open_xlsx(path, sheet, max_rows)
    if head.startswith(OLE_MAGIC):
        return _open_ole(path, sheet, max_rows)
    return _open_csv(path, head, max_rows)


# --- CSV ---------------------------------------------------------------------------------------


def _open_csv(path: Path, head: bytes, max_rows: int) -> Table:
    encoding, lines = detect_encoding(path, head)
    with path.open(encoding=encoding, newline="") as f:
        sample = f.read(SAMPLE_BYTES)
    if not sample.strip():
        raise ImportRefused(EMPTY_FILE)
    delimiter = sniff_delimiter(sample)
    header_index, header = _first_nonblank_record(sample, delimiter)
    if header is None:
        raise ImportRefused(EMPTY_FILE)
    chunks = _csv_chunks(path, encoding, delimiter, header_index, len(header), max_rows)
    name = {"\t": "tab"}.get(delimiter, delimiter)
    return Table(header, header_index + 1, max(lines - header_index - 1, 1), chunks, "csv",
                 f"{encoding}, delimiter {name}")


def detect_encoding(path: Path, head: bytes) -> tuple[str, int]:
    """The file's text encoding and its number of line breaks (an estimate of its rows)."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return _check_utf16(path, "utf-16"), head.count(b"\n") * max(path.stat().st_size // len(head), 1)
    utf16 = _utf16_without_bom(head)
    if utf16:
        return _check_utf16(path, utf16), head.count(b"\n") * max(path.stat().st_size // len(head), 1)
    if b"\x00" in head or len(CONTROL_BYTES.findall(head)) > len(head) // 100:
        raise ImportRefused(BINARY_DATA)
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    is_utf8, has_utf8_sequences, lines = True, False, 0
    with path.open("rb") as f:
        while block := f.read(BLOCK_BYTES):
            if b"\x00" in block:
                raise ImportRefused(BINARY_DATA)
            lines += block.count(b"\n")
            if is_utf8:
                try:
                    decoder.decode(block)
                except UnicodeDecodeError:
                    is_utf8 = False
            if not has_utf8_sequences:
                has_utf8_sequences = UTF8_MULTIBYTE.search(block) is not None
    if is_utf8:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            is_utf8 = False
    if is_utf8:
        return ("utf-8-sig" if head.startswith(codecs.BOM_UTF8) else "utf-8"), lines
    if has_utf8_sequences:
        raise ImportRefused(MIXED_ENCODINGS)
    try:
        with path.open(encoding="cp1252", newline="") as f:
            while f.read(BLOCK_BYTES):
                pass
    except UnicodeDecodeError:
        return "latin-1", lines  # cp1252 leaves five bytes undefined; Latin-1 defines them all
    return "cp1252", lines


def _utf16_without_bom(head: bytes) -> str | None:
    """UTF-16 text of mostly ASCII has a NUL in every other byte."""
    half = len(head) // 2
    if half < 2:
        return None
    even, odd = head[0::2].count(0), head[1::2].count(0)
    if odd > 0.6 * half and even < 0.05 * half:
        return "utf-16-le"
    if even > 0.6 * half and odd < 0.05 * half:
        return "utf-16-be"
    return None


def _check_utf16(path: Path, encoding: str) -> str:
    try:
        with path.open(encoding=encoding, newline="") as f:
            while f.read(BLOCK_BYTES):
                pass
    except UnicodeDecodeError:
        raise ImportRefused("The file looks like UTF-16 text but is damaged; save it again and re-upload it.")
    return encoding


def sniff_delimiter(sample: str) -> str:
    """The delimiter among , ; tab | that splits the first records into the most consistent, widest rows."""
    text = sample[: sample.rfind("\n") + 1] or sample
    best, best_score = ",", (0.0, 0)
    for delimiter in DELIMITERS:
        try:
            records = [r for r in itertools.islice(csv.reader(io.StringIO(text), delimiter=delimiter), 50) if r]
        except csv.Error:
            continue
        if not records or len(records[0]) < 2:
            continue
        width = len(records[0])
        score = (sum(len(r) == width for r in records) / len(records), width)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _first_nonblank_record(sample: str, delimiter: str) -> tuple[int, list[str] | None]:
    try:
        for index, record in enumerate(csv.reader(io.StringIO(sample), delimiter=delimiter)):
            if any(cell.strip() for cell in record):
                return index, record
    except csv.Error:
        raise ImportRefused("The first row of the file cannot be read as CSV.")
    return 0, None


def _csv_chunks(path, encoding, delimiter, header_index, width, max_rows) -> Iterator[Chunk]:
    """Read with pandas' C parser; on the first row with too many values, carry on with the csv module,
    which keeps such rows so that they can be reported."""
    first_row = header_index + 2
    done = 0
    try:
        reader = pd.read_csv(
            path, sep=delimiter, encoding=encoding, header=header_index, names=range(width), index_col=False,
            dtype=object, na_filter=False, skip_blank_lines=False, chunksize=CHUNK_ROWS, engine="c",
        )
        with reader:
            for frame in reader:
                frame.index = pd.RangeIndex(first_row + done, first_row + done + len(frame))
                done += len(frame)
                _check_row_limit(done, max_rows)
                yield Chunk(frame)
        return
    except pd.errors.ParserError as error:
        if not TOO_MANY_FIELDS.search(str(error)):
            raise _parser_refusal(error) from None
    yield from _tolerant_csv_chunks(path, encoding, delimiter, header_index + 1 + done, width, first_row + done,
                                    done, max_rows)


def _tolerant_csv_chunks(path, encoding, delimiter, skip, width, first_row, done, max_rows) -> Iterator[Chunk]:
    csv.field_size_limit(2**31 - 1)  # huge cells are judged later, per row, not by the parser
    with open(path, encoding=encoding, newline="") as f:
        records = csv.reader(f, delimiter=delimiter)
        try:
            for _ in range(skip):
                next(records, None)
            rows, ragged, start = [], {}, first_row
            for row_number, record in enumerate(records, start=first_row):
                rows.append(_fit_to_width(record, width, row_number, ragged))
                if len(rows) == CHUNK_ROWS:
                    done += len(rows)
                    _check_row_limit(done, max_rows)
                    yield _chunk(rows, ragged, start, width)
                    rows, ragged, start = [], {}, row_number + 1
            if rows:
                _check_row_limit(done + len(rows), max_rows)
                yield _chunk(rows, ragged, start, width)
        except csv.Error as error:
            raise ImportRefused(f"Row {records.line_num} cannot be read as CSV ({error}).") from None


def _fit_to_width(values: list[str], width: int, row_number: int, ragged: dict[int, list[str]]) -> list[str]:
    """The row cut or padded to the header's width; a row with more cells than that is kept whole in `ragged`."""
    if len(values) > width:
        ragged[row_number] = values
        return values[:width]
    if len(values) < width:
        return values + [""] * (width - len(values))
    return values


def _chunk(rows, ragged, start, width) -> Chunk:
    frame = pd.DataFrame(rows, columns=range(width), dtype=object)
    frame.index = pd.RangeIndex(start, start + len(rows))
    return Chunk(frame, ragged)


def _parser_refusal(error: Exception) -> ImportRefused:
    message = str(error)
    if match := EOF_IN_QUOTES.search(message):
        return ImportRefused(
            f"A quoted value starting on line {match.group(1)} is never closed, so the rest of the file would "
            f"become one cell; fix the quote and re-upload the file."
        )
    return ImportRefused(f"The file cannot be read as CSV ({message.strip().splitlines()[-1]}).")


def _check_row_limit(rows: int, max_rows: int) -> None:
    if rows > max_rows:
        raise ImportRefused(f"The file has more than {max_rows:,} rows, the limit for one import; split it into "
                            f"smaller files.")


# --- Excel -------------------------------------------------------------------------------------


def _open_xlsx(path: Path, sheet: str | None, max_rows: int) -> Table:
    from django.conf import settings

    max_unpacked = settings.IMPORT_MAX_UNCOMPRESSED_MB * 1024 * 1024
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
            unpacked = sum(e.file_size for e in entries)
            bomb = any(e.file_size > BIG_ENTRY_BYTES and e.file_size > MAX_COMPRESSION_RATIO * max(e.compress_size, 1)
                       for e in entries)
            if bomb or unpacked > max_unpacked:
                raise ImportRefused(
                    f"The workbook would unpack to {unpacked / 2**20:,.0f} MB, far more than its data can need "
                    f"(a zip bomb?), so it was not opened."
                )
            if "xl/workbook.xml" not in archive.namelist():
                raise ImportRefused("The file is a zip archive, not an Excel workbook; upload a CSV, XLSX or XLS file.")
            sheet_paths = _xlsx_sheet_paths(archive)
            name = _choose_sheet(list(sheet_paths), sheet)
            declared_rows = _xlsx_declared_rows(archive, sheet_paths[name])
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, KeyError, ElementTree.ParseError):
        raise ImportRefused(DAMAGED_WORKBOOK) from None
    if declared_rows - 1 > max_rows:
        raise ImportRefused(f"The sheet '{name}' has {declared_rows - 1:,} rows, more than the limit of "
                            f"{max_rows:,} for one import; split it into smaller files.")
    # Here, not at the top: openpyxl (whose date helpers xlsx uses) loads numpy, and only a spreadsheet
    # upload needs them, not every worker process that loads the app.
    from campaigns.audience.importing import xlsx

    rows = xlsx.sheet_rows(path, sheet_paths[name])
    return _rows_table(_damaged_as_refusal(rows), name, "xlsx", max_rows, declared_rows)


def _xlsx_sheet_paths(archive: zipfile.ZipFile) -> dict[str, str]:
    workbook = ElementTree.fromstring(archive.read("xl/workbook.xml"))
    rels = ElementTree.fromstring(archive.read("xl/_rels/workbook.xml.rels"))
    targets = {rel.get("Id"): rel.get("Target", "") for rel in rels.iter(f"{PKG_REL_NS}Relationship")}
    paths = {}
    for node in workbook.iter(f"{MAIN_NS}sheet"):
        target = targets.get(node.get(f"{REL_NS}id"), "")
        paths[node.get("name")] = target.lstrip("/") if target.startswith("/") else f"xl/{target}"
    return paths


def _xlsx_declared_rows(archive: zipfile.ZipFile, sheet_path: str) -> int:
    """The last row of the sheet's <dimension>, read from the start of its XML without unpacking the rest."""
    with archive.open(sheet_path) as f:
        start = f.read(16 * 1024)
    match = DIMENSION.search(start)
    return int(match.group(1)) if match and match.group(1) else 0


def _open_ole(path: Path, sheet: str | None, max_rows: int) -> Table:
    with path.open("rb") as f:
        while block := f.read(BLOCK_BYTES):
            if ENCRYPTED_PACKAGE in block:
                raise ImportRefused(PASSWORD_PROTECTED)
    try:
        workbook = python_calamine.CalamineWorkbook.from_path(str(path))
        name = _choose_sheet(workbook.sheet_names, sheet)
        # An XLS sheet holds at most 65,536 rows, so calamine may load it whole; rows become text one at a time.
        rows = _calamine_rows(workbook.get_sheet_by_name(name))
        return _rows_table(_damaged_as_refusal(rows), name, "xls", max_rows, 0)
    except ImportRefused:
        raise
    except Exception as error:  # calamine raises several types for damaged files
        raise _calamine_refusal(error) from None


def _calamine_refusal(error: Exception) -> ImportRefused:
    if isinstance(error, python_calamine.PasswordError) or "password" in str(error).lower() \
            or "encrypt" in str(error).lower():
        return ImportRefused(PASSWORD_PROTECTED)
    return ImportRefused(DAMAGED_WORKBOOK)


def _calamine_rows(sheet) -> Iterator[tuple[int, list[str]]]:
    """(row number, cell texts) of a calamine sheet, columns counted from A like the sheet shows them."""
    from campaigns.audience.importing import xlsx  # (see _open_xlsx)

    first_column = sheet.start[1] if sheet.start else 0
    for number, row in enumerate(sheet.iter_rows(), start=1):
        yield number, [""] * first_column + [xlsx.cell_text(value) for value in row]


def _damaged_as_refusal(rows: Iterator[tuple[int, list[str]]]) -> Iterator[tuple[int, list[str]]]:
    """A workbook found damaged part-way through is refused like one that cannot be opened."""
    try:
        yield from rows
    except ImportRefused:
        raise
    except Exception as error:
        raise _calamine_refusal(error) from None


def _rows_table(rows: Iterator[tuple[int, list[str]]], name: str, kind: str, max_rows: int,
                declared_rows: int) -> Table:
    """A Table over a sheet's rows, read as they come: the header is the first row with a value; data rows
    are grouped in chunks of CHUNK_ROWS, counted against MAX_ROWS as they are read."""
    for header_row, header in rows:
        if any(cell.strip() for cell in header):
            break
    else:
        raise ImportRefused(f"The sheet '{name}' is empty.")
    chunks = _sheet_chunks(rows, header_row, len(header), max_rows)
    estimated = max(declared_rows - header_row, 1)
    return Table(header, header_row, estimated, chunks, kind, f"sheet '{name}'")


def _sheet_chunks(rows, header_row: int, width: int, max_rows: int) -> Iterator[Chunk]:
    """Rows the sheet skips (blank ones) are filled in, so that a chunk's index is the sheet's row numbers."""
    block, ragged, start, expected = [], {}, header_row + 1, header_row + 1
    done = 0
    for number, values in rows:
        while len(values) > width and not values[-1]:
            values.pop()
        missing = number - expected
        if missing > 0:
            block.extend([[""] * width] * missing)
        block.append(_fit_to_width(values, width, number, ragged))
        expected = number + 1
        while len(block) >= CHUNK_ROWS:
            done += CHUNK_ROWS
            _check_row_limit(done, max_rows)
            head, block = block[:CHUNK_ROWS], block[CHUNK_ROWS:]
            yield _chunk(head, {n: v for n, v in ragged.items() if n < start + CHUNK_ROWS}, start, width)
            ragged = {n: v for n, v in ragged.items() if n >= start + CHUNK_ROWS}
            start += CHUNK_ROWS
    while block and not any(block[-1]) and start + len(block) - 1 not in ragged:
        block.pop()  # trailing blank rows are not data
    if block:
        _check_row_limit(done + len(block), max_rows)
        yield _chunk(block, ragged, start, width)


def _choose_sheet(names: list[str], wanted: str | None) -> str:
    if not names:
        raise ImportRefused("The workbook has no sheets.")
    if wanted in (None, ""):
        return names[0]
    if wanted in names:
        return wanted
    raise ImportRefused(f"The workbook has no sheet named '{wanted}'; its sheets are: {', '.join(names)}.")
