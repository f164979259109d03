"""Helpers for the import tests: files are generated in each test, never committed (but for two binary
fixtures that nothing installed here can write, see fixtures/make_fixtures.py)."""

import csv
import io
import time
from pathlib import Path

import openpyxl
import pytest
from django.core.files import File
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.urls import reverse

from campaigns.models import RecipientImport
from tests.support.factories import CampaignFactory, UserFactory

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
    # A spreadsheet has no cell-size limit; the csv module's is process-wide, raised only by an import
    # that took the tolerant path, so without this the result depended on which tests ran before.
    csv.field_size_limit(2**31 - 1)
    with recipient_import.rejected_file.open("rb") as f:
        return list(csv.reader(io.StringIO(f.read().decode("utf-8-sig"))))


@pytest.fixture
def lock_waits_fail(transactional_db):
    """Every connection to the test database (this one, new ones, workers') gives up waiting for a lock
    after 20 s with an error: a test of code that must never wait on a lock then fails instead of hanging."""
    name = connection.settings_dict["NAME"]
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER DATABASE \"{name}\" SET lock_timeout = '20s'")
        cursor.execute("SET lock_timeout = '20s'")
    yield
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER DATABASE \"{name}\" RESET lock_timeout")
        cursor.execute("RESET lock_timeout")


def uploaded(campaign, path, **fields) -> RecipientImport:
    """A RecipientImport for the file at PATH, stored as the admin stores an upload."""
    with open(path, "rb") as f:
        return RecipientImport.objects.create(campaign=campaign, file=File(f, name=Path(path).name),
                                              original_name=Path(path).name, **fields)


# The admin's import pages.

def import_url(campaign):
    return reverse("admin:campaigns_campaign_import", args=[campaign.pk])


def status_json_url(record):
    return reverse("admin:campaigns_campaign_import_status_json", args=[record.pk])


def csv_upload(text, name="people.csv"):
    return SimpleUploadedFile(name, text.encode(), content_type="text/csv")


@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(is_superuser=True))
    return client


def wait_until_finished(client, record, timeout=60):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        status = client.get(status_json_url(record)).json()
        seen.append(status["status"])
        if status["finished"]:
            return status, seen
        time.sleep(0.05)
    raise AssertionError(f"import not finished after {timeout}s: {seen[-5:]}")
