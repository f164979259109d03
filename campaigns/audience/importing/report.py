"""The import report: its counts, and the CSV of every rejected row."""

from __future__ import annotations

import csv
import os
import tempfile
from dataclasses import dataclass, field

from campaigns.audience.spreadsheets import spreadsheet_safe


@dataclass
class ImportReport:
    rows: int = 0
    imported: int = 0
    duplicates_in_file: int = 0
    already_present: int = 0
    invalid: int = 0
    suppressed: int = 0
    merge_tags: list = field(default_factory=list)  # the tags the file's columns give
    new_merge_tags: list = field(default_factory=list)  # those the campaign had not before
    recipient_import: object = None  # the RecipientImport holding this report

    @property
    def rejected(self) -> int:
        return self.duplicates_in_file + self.already_present + self.invalid

    def summary_line(self) -> str:
        duplicates = self.duplicates_in_file + self.already_present
        return f"imported={self.imported} duplicates={duplicates} invalid={self.invalid} suppressed={self.suppressed}"


class RejectedRows:
    """Rejected rows as CSV in a temporary file: row number (the header is row 1), reason, original values."""

    def __init__(self, header: list[str]):
        fd, self.path = tempfile.mkstemp(prefix="rejected-", suffix=".csv")
        # utf-8-sig: Excel opens a CSV as UTF-8 only when it starts with a BOM.
        self.file = os.fdopen(fd, "w", encoding="utf-8-sig", newline="")
        self.writer = csv.writer(self.file)
        self.writer.writerow(["Row", "Reason", *map(spreadsheet_safe, header)])
        self.count = 0

    def add(self, row_number: int, reason: str, values: list[str]) -> None:
        self.writer.writerow([row_number, spreadsheet_safe(reason), *map(spreadsheet_safe, values)])
        self.count += 1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()
        os.unlink(self.path)
        return False
