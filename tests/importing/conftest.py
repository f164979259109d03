"""Helpers for the import tests: files are generated in each test, never committed (but for two binary
fixtures that nothing installed here can write, see fixtures/make_fixtures.py)."""

import csv
import io
from pathlib import Path

import openpyxl
import pytest

from tests.factories import CampaignFactory

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return Path(settings.MEDIA_ROOT)


@pytest.fixture
def campaign(db):
    return CampaignFactory()


@pytest.fixture
def make_csv(tmp_path):
    """make_csv(rows, name=..., delimiter=..., encoding=...) -> path of a CSV written with the csv module."""

    def make(rows, name="list.csv", delimiter=",", encoding="utf-8"):
        buffer = io.StringIO(newline="")
        csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n").writerows(rows)
        path = tmp_path / name
        path.write_bytes(buffer.getvalue().encode(encoding))
        return path

    return make


@pytest.fixture
def make_xlsx(tmp_path):
    """make_xlsx({"Sheet": rows, ...}, name=...) -> path of a workbook written with openpyxl."""

    def make(sheets, name="list.xlsx"):
        workbook = openpyxl.Workbook()
        workbook.remove(workbook.active)
        for title, rows in sheets.items():
            sheet = workbook.create_sheet(title)
            for row in rows:
                sheet.append(row)
        path = tmp_path / name
        workbook.save(path)
        return path

    return make


def read_rejected(recipient_import):
    """The rejected-rows CSV as a list of rows (header first), read as a spreadsheet would."""
    with recipient_import.rejected_file.open("rb") as f:
        return list(csv.reader(io.StringIO(f.read().decode("utf-8-sig"))))
