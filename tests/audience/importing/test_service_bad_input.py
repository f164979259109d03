"""Every kind of bad file gets one clear sentence and changes nothing (DESIGN: bad input changes nothing)."""

import io
import os
import zipfile

import pytest

from campaigns.audience.importing.service import import_recipients
from campaigns.exceptions import ImportRefused
from campaigns.models import Campaign, Recipient, RecipientImport
from tests.audience.importing.conftest import FIXTURES, read_rejected
from tests.support.factories import RecipientFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def existing(campaign):
    """A campaign that already has one recipient, so that "changes nothing" means something."""
    RecipientFactory(campaign=campaign, email="kept@example.com")
    Campaign.objects.filter(pk=campaign.pk).update(total_recipients=1)
    return campaign


def assert_refused_and_unchanged(campaign, path, message, **kwargs):
    with pytest.raises(ImportRefused) as refusal:
        import_recipients(campaign, path, **kwargs)
    text = str(refusal.value)
    assert message in text
    assert "\n" not in text and text.endswith(".")  # one sentence, fit for an admin message
    assert list(Recipient.objects.filter(campaign=campaign).values_list("email", flat=True)) == ["kept@example.com"]
    campaign.refresh_from_db()
    assert campaign.total_recipients == 1
    assert not RecipientImport.objects.exists()
    return text


def write(tmp_path, name, content: bytes):
    path = tmp_path / name
    path.write_bytes(content)
    return path


def with_sheet_changed(workbook, target, change):
    """A copy of WORKBOOK at TARGET whose first sheet's XML is passed through CHANGE."""
    with zipfile.ZipFile(workbook) as original, zipfile.ZipFile(target, "w") as copy:
        for item in original.infolist():
            data = original.read(item)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = change(data)
            copy.writestr(item, data)
    return target


def test_empty_file(existing, tmp_path):
    assert_refused_and_unchanged(existing, write(tmp_path, "empty.csv", b""), "The file is empty.")


def test_whitespace_only_file(existing, tmp_path):
    assert_refused_and_unchanged(existing, write(tmp_path, "blank.csv", b"\xef\xbb\xbf\r\n  \r\n"), "empty")


def test_header_only(existing, tmp_path):
    assert_refused_and_unchanged(existing, write(tmp_path, "header.csv", b"email,first_name\r\n"),
                                 "header row but no data rows")


def test_header_only_workbook(existing, make_xlsx):
    assert_refused_and_unchanged(existing, make_xlsx({"S": [["email", "name"]]}), "header row but no data rows")


def test_no_email_column(existing, make_csv):
    text = assert_refused_and_unchanged(existing, make_csv([["Name", "Phone"], ["Ana", "123"]]), "no email column")
    assert "'Name', 'Phone'" in text


def test_binary_data_named_csv(existing, tmp_path):
    png = b"\x89PNG\r\n\x1a\n" + os.urandom(4096)
    assert_refused_and_unchanged(existing, write(tmp_path, "photo.csv", png), "binary data")


def test_binary_without_nul_bytes(existing, tmp_path):
    junk = bytes(range(1, 32)) * 200
    assert_refused_and_unchanged(existing, write(tmp_path, "junk.csv", junk), "binary data")


def test_truncated_xlsx(existing, make_xlsx):
    path = make_xlsx({"S": [["email"]] + [[f"p{i}@example.com"] for i in range(200)]})
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert_refused_and_unchanged(existing, path, "damaged or incomplete")


def test_xlsx_with_a_corrupt_sheet(existing, make_xlsx, tmp_path):
    source = make_xlsx({"S": [["email"], ["ana@example.com"]]})
    broken = with_sheet_changed(source, tmp_path / "broken.xlsx", lambda xml: xml[: len(xml) // 2])  # cut mid-XML
    assert_refused_and_unchanged(existing, broken, "damaged or incomplete")


def test_encrypted_xlsx(existing):
    assert_refused_and_unchanged(existing, FIXTURES / "encrypted.xlsx", "password-protected")


def test_zip_bomb(existing, make_xlsx, tmp_path):
    source = make_xlsx({"S": [["email"], ["ana@example.com"]]})
    bomb = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as copy:
        for item in original.infolist():
            copy.writestr(item, original.read(item))
        copy.writestr("xl/media/padding.bin", b"\0" * (64 * 1024 * 1024))  # 64 MB that packs into ~64 KB
    assert bomb.stat().st_size < 1024 * 1024
    assert_refused_and_unchanged(existing, bomb, "zip bomb")


def test_a_zip_that_is_not_a_workbook(existing, tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("list.csv", "email\nana@example.com\n")
    assert_refused_and_unchanged(existing, write(tmp_path, "list.xlsx", buffer.getvalue()), "not an Excel workbook")


def test_sheet_far_past_the_row_limit_is_refused_before_loading(existing, make_xlsx, tmp_path, settings):
    settings.IMPORT_MAX_ROWS = 1000
    source = make_xlsx({"S": [["email"], ["ana@example.com"]]})
    # A sheet that declares five million rows; only its <dimension> is read to refuse it.
    forged = with_sheet_changed(source, tmp_path / "huge.xlsx", lambda xml: xml.replace(
        b'<dimension ref="A1:A2"', b'<dimension ref="A1:A5000000"'))
    text = assert_refused_and_unchanged(existing, forged, "4,999,999 rows, more than the limit of 1,000")
    assert "'S'" in text


def test_sheet_past_the_row_limit(existing, make_xlsx, settings):
    settings.IMPORT_MAX_ROWS = 50
    path = make_xlsx({"S": [["email"]] + [[f"p{i}@example.com"] for i in range(120)]})
    assert_refused_and_unchanged(existing, path, "more than the limit of 50")


def test_csv_past_the_row_limit(existing, make_csv, settings, monkeypatch):
    settings.IMPORT_MAX_ROWS = 50
    monkeypatch.setattr("campaigns.audience.importing.reader.CHUNK_ROWS", 20)
    path = make_csv([["email"]] + [[f"p{i}@example.com"] for i in range(120)])
    assert_refused_and_unchanged(existing, path, "more than 50 rows")


def test_mixed_encodings(existing, tmp_path):
    content = "email,name\nana@example.com,Anaïs\n".encode() + "bob@example.com,Chloé\n".encode("cp1252")
    assert_refused_and_unchanged(existing, write(tmp_path, "mixed.csv", content), "mixes text encodings")


def test_unclosed_quote(existing, tmp_path):
    content = b'email,name\nana@example.com,"Ana\nbob@example.com,Bob\n'
    assert_refused_and_unchanged(existing, write(tmp_path, "quote.csv", content), "never closed")


def test_campaign_unchanged_and_import_marked_failed_for_an_uploaded_bad_file(existing, tmp_path):
    from django.core.files.base import ContentFile

    record = RecipientImport.objects.create(campaign=existing, file=ContentFile(b"", name="x.csv"),
                                            original_name="x.csv")
    with pytest.raises(ImportRefused):
        import_recipients(record)
    record.refresh_from_db()
    assert (record.status, record.error) == (RecipientImport.Status.FAILED, "The file is empty.")
    assert Recipient.objects.filter(campaign=existing).count() == 1


# Bad rows inside a good file: the row is refused with its reason, the rest is imported.


def test_ragged_rows_are_reported_with_all_their_values(campaign, tmp_path, monkeypatch):
    monkeypatch.setattr("campaigns.audience.importing.reader.CHUNK_ROWS", 2)
    content = (b"email,name\nana@example.com,Ana\nbob@example.com,Bob\ncarl@example.com,Carl,EXTRA,MORE\n"
               b"dan@example.com\neve@example.com,Eve\n")
    report = import_recipients(campaign, write(tmp_path, "ragged.csv", content))

    assert (report.rows, report.imported, report.invalid) == (5, 4, 1)
    assert Recipient.objects.get(campaign=campaign, email="dan@example.com").data == {"name": ""}
    rejected = read_rejected(report.recipient_import)
    assert rejected[1] == ["4", "The row has 4 values but the header has 2 columns.",
                           "carl@example.com", "Carl", "EXTRA", "MORE"]


def test_huge_cells_reject_their_row(campaign, make_csv, settings):
    settings.IMPORT_MAX_CELL_CHARS = 1000
    rows = [["email", "first_name", "notes"], ["ana@example.com", "Ana", "x" * 1_000_000],
            ["bob@example.com", "B" * 201, "ok"], ["carl@example.com", "Carl", "y" * 1000]]
    report = import_recipients(campaign, make_csv(rows))

    assert (report.imported, report.invalid) == (1, 2)
    assert Recipient.objects.get(campaign=campaign).email == "carl@example.com"
    reasons = [row[1] for row in read_rejected(report.recipient_import)[1:]]
    assert reasons == ["The value in column 'notes' is longer than 1,000 characters.",
                       "The first name is longer than 200 characters."]
