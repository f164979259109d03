"""An XLSX sheet's rows, read as a stream: the sheet's XML is parsed as it is unzipped, one row at a time,
so a million-row workbook never sits in memory whole (calamine, which reads XLS, loads a sheet at once).

Cells become the text a spreadsheet user expects, as pandas' calamine reader made them before: whole numbers
without ".0", dates as "2024-01-05 00:00:00", times as "09:30:00", booleans as "True"/"False".
Only the shared strings (one copy of each distinct text) and the date styles are held in memory.
"""

from __future__ import annotations

import datetime
import re
import zipfile
from collections.abc import Iterator
from xml.etree.ElementTree import XMLParser, iterparse

from openpyxl.styles.numbers import BUILTIN_FORMATS, is_date_format
from openpyxl.utils.datetime import CALENDAR_MAC_1904, CALENDAR_WINDOWS_1900, from_excel

NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
ROW, CELL, VALUE, TEXT, SHARED, PHONETIC = (
    f"{NS}row", f"{NS}c", f"{NS}v", f"{NS}t", f"{NS}si", f"{NS}rPh")
BLOCK_BYTES = 1024 * 1024
DATE_1904 = re.compile(rb"<(?:\w+:)?workbookPr\b[^>]*\bdate1904=\"(?:1|true)\"")


def sheet_rows(path, sheet_path: str) -> Iterator[tuple[int, list[str]]]:
    """(row number, cell texts from column A) for each row the sheet's XML has, in order."""
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        strings = _shared_strings(archive) if "xl/sharedStrings.xml" in names else []
        date_styles = _date_styles(archive) if "xl/styles.xml" in names else set()
        epoch = CALENDAR_MAC_1904 if DATE_1904.search(archive.read("xl/workbook.xml")) else CALENDAR_WINDOWS_1900
        with archive.open(sheet_path) as sheet:
            yield from _rows(sheet, strings, date_styles, epoch)


def _rows(sheet, strings, date_styles, epoch) -> Iterator[tuple[int, list[str]]]:
    rows = _SheetRows(strings, date_styles, epoch)
    parser = XMLParser(target=rows)
    while block := sheet.read(BLOCK_BYTES):
        parser.feed(block)
        yield from rows.done
        rows.done.clear()
    parser.close()
    yield from rows.done


class _SheetRows:
    """An XMLParser target (no tree is built: that is what makes it fast) collecting finished rows in `done`."""

    def __init__(self, strings, date_styles, epoch):
        self.strings, self.date_styles, self.epoch = strings, date_styles, epoch
        self.done: list[tuple[int, list[str]]] = []
        self.row_number, self.values, self.column = 0, {}, -1
        self.cell: dict = {}
        self.text: str | None = None  # the cell's value; None: the cell has none
        self.collecting = False
        self.in_phonetic = False

    # Called once or more per cell (a million-row sheet: tens of millions of calls), so kept lean.
    def start(self, tag, attrib):
        if tag == CELL:
            self.cell, self.text = attrib, None
        elif tag == VALUE or tag == TEXT:
            self.collecting = not self.in_phonetic
            if self.text is None:
                self.text = ""
        elif tag == ROW:
            self.row_number = int(attrib.get("r") or self.row_number + 1)
            self.values, self.column = {}, -1
        elif tag == PHONETIC:
            self.in_phonetic = True

    def data(self, text):
        if self.collecting:
            self.text += text

    def end(self, tag):
        if tag == VALUE or tag == TEXT:
            self.collecting = False
        elif tag == CELL:
            cell = self.cell
            reference = cell.get("r")
            self.column = _column_index(reference) if reference else self.column + 1
            value = self.text
            if value is not None:
                text = self.strings[int(value)] if cell.get("t") == "s" else self._cell_text(value)
                if text:
                    self.values[self.column] = text
        elif tag == ROW:
            values = self.values
            self.done.append((self.row_number, [values.get(i, "") for i in range(max(values) + 1)] if values else []))
        elif tag == PHONETIC:
            self.in_phonetic = False

    def _cell_text(self, value: str) -> str:
        kind = self.cell.get("t", "n")
        if kind == "s":
            return self.strings[int(value)]
        if kind == "n":
            return _number_text(value, int(self.cell.get("s") or 0) in self.date_styles, self.epoch)
        if kind == "b":
            return "True" if value.strip() in ("1", "true") else "False"
        if kind == "e":
            return ""  # #N/A, #DIV/0!: no value to import
        return value  # "inlineStr", "str" (a formula's text), "d" (an ISO date as text)

    def close(self):
        pass


def _column_index(reference: str, known: dict[str, int] = {}) -> int:  # noqa: B006 (a deliberate cache)
    """0 for "A1", 27 for "AB7"."""
    letters = reference.rstrip("0123456789")
    index = known.get(letters)
    if index is None:
        index = 0
        for letter in letters:
            index = index * 26 + ord(letter) - 64
        index = known[letters] = index - 1
    return index


class _SharedStrings:
    """An XMLParser target: the text of each <si>, its runs joined; phonetic guides (<rPh>) are not text."""

    def __init__(self):
        self.strings: list[str] = []
        self.parts: list[str] = []
        self.collecting = self.in_phonetic = False

    def start(self, tag, attrib):
        if tag == TEXT:
            self.collecting = not self.in_phonetic
        elif tag == SHARED:
            self.parts = []
        elif tag == PHONETIC:
            self.in_phonetic = True

    def data(self, text):
        if self.collecting:
            self.parts.append(text)

    def end(self, tag):
        if tag == TEXT:
            self.collecting = False
        elif tag == SHARED:
            self.strings.append("".join(self.parts))
        elif tag == PHONETIC:
            self.in_phonetic = False

    def close(self):
        return self.strings


def _shared_strings(archive) -> list[str]:
    parser = XMLParser(target=_SharedStrings())
    with archive.open("xl/sharedStrings.xml") as f:
        while block := f.read(BLOCK_BYTES):
            parser.feed(block)
    return parser.close()


def _date_styles(archive) -> set[int]:
    """Indexes of the cell styles (cellXfs) whose number format shows a date or a time."""
    formats = dict(BUILTIN_FORMATS)
    styles = []
    with archive.open("xl/styles.xml") as f:
        in_cell_xfs = False
        for event, element in iterparse(f, events=("start", "end")):
            tag = element.tag
            if tag == f"{NS}numFmt" and event == "end":
                formats[int(element.get("numFmtId"))] = element.get("formatCode", "")
            elif tag == f"{NS}cellXfs":
                in_cell_xfs = event == "start"
            elif tag == f"{NS}xf" and event == "end" and in_cell_xfs:
                styles.append(int(element.get("numFmtId") or 0))
    return {i for i, format_id in enumerate(styles) if is_date_format(formats.get(format_id, "General"))}


def _number_text(value: str, is_date: bool, epoch) -> str:
    number = float(value)
    if is_date:
        try:
            return cell_text(from_excel(number, epoch))
        except (OverflowError, ValueError):
            pass  # not a real date: shown as the number
    return cell_text(number)


def cell_text(value) -> str:
    """The text of one cell value as calamine returns it (str, int, float, bool, date, time...)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, datetime.datetime):
        return str(value)
    if isinstance(value, datetime.date):
        return str(datetime.datetime.combine(value, datetime.time()))
    if value is None:
        return ""
    return str(value)
