"""The import service end to end against PostgreSQL: formats, de-duplication, the report."""

from types import SimpleNamespace

import dns.resolver
import pytest
from django.db import connection

from campaigns.audience.importing.libraries import np
from campaigns.audience.importing.service import SeenAddresses, import_recipients
from campaigns.exceptions import ImportRefused
from campaigns.models import Campaign, Recipient, RecipientImport
from tests.audience.importing.conftest import FIXTURES, read_rejected
from tests.support.factories import RecipientFactory, SuppressionFactory

pytestmark = pytest.mark.django_db

PEOPLE = [
    ["Email", "First Name", "Last Name", "City", "Plan"],
    ["ana@example.com", "Ana", "Silva", "Lisbon", "pro"],
    ["Bob.Jones@Example.COM", "Bob", "Jones", "London", "free"],
    ["chloé@exämple.com", "Chloé", "Dubois", "Paris", "pro"],
]


def emails_of(campaign):
    return set(Recipient.objects.filter(campaign=campaign).values_list("email", flat=True))


def test_csv_rows_become_recipients_with_every_other_column_as_data(campaign, make_csv):
    report = import_recipients(campaign, make_csv(PEOPLE))

    assert (report.rows, report.imported, report.invalid) == (3, 3, 0)
    bob = Recipient.objects.get(campaign=campaign, email="bob.jones@example.com")
    assert (bob.first_name, bob.last_name, bob.data) == ("Bob", "Jones", {"city": "London", "plan": "free"})
    assert emails_of(campaign) == {"ana@example.com", "bob.jones@example.com", "chloé@exämple.com"}
    campaign.refresh_from_db()
    assert campaign.total_recipients == 3


def test_the_report_is_saved_with_the_import(campaign, make_csv):
    report = import_recipients(campaign, make_csv(PEOPLE, name="crm-export.csv"))

    record = report.recipient_import
    assert record.status == RecipientImport.Status.SUCCEEDED
    assert (record.original_name, record.total_rows, record.imported) == ("crm-export.csv", 3, 3)
    assert not record.rejected_file  # nothing was rejected


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "cp1252"])
def test_csv_delimiters_and_encodings_are_detected(campaign, make_csv, delimiter, encoding):
    rows = PEOPLE if encoding != "cp1252" else [r for r in PEOPLE if "ä" not in r[0]]
    rows = rows + [["zoë@example.com", "Zoë", "Müller", "Zürich, CH", "pro"]]
    report = import_recipients(campaign, make_csv(rows, delimiter=delimiter, encoding=encoding))

    assert report.imported == len(rows) - 1
    zoe = Recipient.objects.get(campaign=campaign, email="zoë@example.com")
    assert (zoe.first_name, zoe.last_name, zoe.data["city"]) == ("Zoë", "Müller", "Zürich, CH")


def test_latin1_bytes_outside_cp1252_are_read_as_latin1(campaign, tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"email,name\nana@example.com,Ana \x81\xe9\n")
    import_recipients(campaign, path)
    assert Recipient.objects.get(campaign=campaign).data == {"name": "Ana \x81é"}


def test_utf16_without_bom_is_detected(campaign, tmp_path):
    path = tmp_path / "utf16.csv"
    path.write_bytes("email;prénom\nana@example.com;Anaïs\n".encode("utf-16-le"))
    import_recipients(campaign, path)
    assert Recipient.objects.get(campaign=campaign).data == {"prenom": "Anaïs"}  # accents dropped from the tag


def test_quoted_newlines_and_delimiters_stay_inside_their_cell(campaign, make_csv):
    rows = [["email", "address", "note"],
            ["ana@example.com", "1 Main St\nSpringfield", 'said "hi", then left'],
            ["bad", "x", "y"]]
    report = import_recipients(campaign, make_csv(rows))

    assert Recipient.objects.get(campaign=campaign).data == {
        "address": "1 Main St\nSpringfield", "note": 'said "hi", then left'}
    assert read_rejected(report.recipient_import)[1][0] == "3"  # the row number is the spreadsheet's row


def test_values_with_backslashes_tabs_and_braces_round_trip(campaign, make_csv):
    rows = [["email", "first_name", "path", "json"],
            ["ana@example.com", "A\\na\tB", "C:\\Users\\ana", '{"x": %s}']]
    import_recipients(campaign, make_csv(rows))
    ana = Recipient.objects.get(campaign=campaign)
    assert ana.first_name == "A\\na\tB"
    assert ana.data == {"path": "C:\\Users\\ana", "json": '{"x": %s}'}


def test_xlsx_reads_the_first_sheet_by_default_and_a_named_sheet_on_request(campaign, make_xlsx):
    path = make_xlsx({"Customers": [["E-mail Address", "FName", "Age"], ["ana@example.com", "Ana", 42]],
                      "Leads": [["email"], ["lead@example.com"]]})
    import_recipients(campaign, path)
    ana = Recipient.objects.get(campaign=campaign)
    assert (ana.email, ana.first_name, ana.data) == ("ana@example.com", "Ana", {"age": "42"})

    import_recipients(campaign, path, sheet="Leads")
    assert emails_of(campaign) == {"ana@example.com", "lead@example.com"}


def test_xlsx_row_numbers_match_the_sheet_even_below_blank_rows(campaign, make_xlsx):
    path = make_xlsx({"S": [[], ["email", "name"], ["ana@example.com", "Ana"], [], ["oops", "Bad"]]})
    report = import_recipients(campaign, path)
    assert (report.rows, report.imported, report.invalid) == (2, 1, 1)
    row_number, reason = read_rejected(report.recipient_import)[1][:2]
    assert row_number == "5" and "@-sign" in reason


def test_a_missing_sheet_is_refused_naming_the_sheets(campaign, make_xlsx):
    path = make_xlsx({"Customers": [["email"], ["ana@example.com"]]})
    with pytest.raises(ImportRefused, match="no sheet named 'Nope'; its sheets are: Customers"):
        import_recipients(campaign, path, sheet="Nope")


def test_xls_goes_through_calamine(campaign):
    report = import_recipients(campaign, FIXTURES / "recipients.xls")
    assert (report.imported, report.invalid) == (2, 1)
    bob = Recipient.objects.get(campaign=campaign, email="bob@example.com")
    assert (bob.first_name, bob.last_name, bob.data) == ("Bob", "Jones", {"city": "London"})
    import_recipients(campaign, FIXTURES / "recipients.xls", sheet="Other")
    assert "zed@example.com" in emails_of(campaign)


def test_duplicates_in_the_file_are_caught_case_insensitively(campaign, make_csv):
    rows = [["email", "name"], ["ana@example.com", "first"], ["ANA@Example.com", "second"],
            ["bob@example.com", "bob"], ["ana@EXAMPLE.com", "third"]]
    report = import_recipients(campaign, make_csv(rows))

    assert (report.imported, report.duplicates_in_file) == (2, 2)
    assert Recipient.objects.get(campaign=campaign, email="ana@example.com").data == {"name": "first"}
    rejected = read_rejected(report.recipient_import)
    assert rejected[1:] == [["3", "Duplicate of row 2 (the same address).", "ANA@Example.com", "second"],
                            ["5", "Duplicate of row 2 (the same address).", "ana@EXAMPLE.com", "third"]]


def test_duplicates_are_found_across_chunks(campaign, make_csv, monkeypatch):
    monkeypatch.setattr("campaigns.audience.importing.reader.CHUNK_ROWS", 2)
    monkeypatch.setattr(SeenAddresses, "MAX_RUN", 3)  # the addresses seen are kept in several runs
    emails = ["a", "b", "c", "A", "d", "d", "b", "e", "D", "f", "a", "F", "B", "b"]  # rows 2-15, two a chunk
    report = import_recipients(campaign, make_csv([["email"], *([f"{e}@example.com"] for e in emails)]))
    assert (report.imported, report.duplicates_in_file) == (6, 8)
    assert [row[:2] for row in read_rejected(report.recipient_import)[1:]] == [
        [str(row), f"Duplicate of row {first} (the same address)."]
        for row, first in [(5, 2), (7, 6), (8, 3), (10, 6), (12, 2), (13, 11), (14, 3), (15, 3)]]


def test_the_addresses_seen_are_told_apart_by_their_whole_digest():
    seen = SeenAddresses()
    seen.add(np.array([[5, 1], [5, 2], [7, 3]], dtype="<u8"), np.array([10, 11, 12]))  # two share a key
    asked = np.array([[5, 2], [5, 1], [5, 3], [7, 3], [1, 1], [9, 9]], dtype="<u8")
    assert seen.first_rows(asked).tolist() == [11, 10, -1, 12, -1, -1]


def test_addresses_already_in_the_campaign_are_left_alone_and_counted(campaign, make_csv):
    RecipientFactory(campaign=campaign, email="ana@example.com", first_name="Original")
    rows = [["email", "first name"], ["Ana@Example.com", "New"], ["bob@example.com", "Bob"]]
    report = import_recipients(campaign, make_csv(rows))

    assert (report.imported, report.already_present) == (1, 1)
    assert Recipient.objects.get(campaign=campaign, email="ana@example.com").first_name == "Original"
    assert read_rejected(report.recipient_import)[1][:2] == ["2", "Already in this campaign."]
    campaign.refresh_from_db()
    assert campaign.total_recipients == 2


def test_importing_the_same_file_twice_is_harmless(campaign, make_csv):
    path = make_csv(PEOPLE + [["ana@example.com", "again", "", "", ""], ["nope", "", "", "", ""]])
    first = import_recipients(campaign, path)
    before = list(Recipient.objects.filter(campaign=campaign).order_by("id").values())

    second = import_recipients(campaign, path)

    assert (first.imported, first.duplicates_in_file, first.invalid) == (3, 1, 1)
    assert (second.imported, second.already_present, second.duplicates_in_file, second.invalid) == (0, 3, 1, 1)
    assert list(Recipient.objects.filter(campaign=campaign).order_by("id").values()) == before
    campaign.refresh_from_db()
    assert campaign.total_recipients == 3


@pytest.mark.django_db(transaction=True)  # three imports, each committed as a real one is
def test_the_import_records_its_merge_tag_columns_so_no_page_reads_the_rows_back(
        campaign, make_csv, django_assert_num_queries):
    # At 10M recipients reading the columns back from the rows took 8 s: the first campaign page after an
    # import, or a Send now through the API, waited for it.
    import_recipients(campaign, make_csv(PEOPLE))
    import_recipients(campaign, make_csv([["email", "Shoe size"], ["ana@example.com", "38"]]))  # nobody new
    import_recipients(campaign, make_csv([["email", "company"], ["dan@example.com", "Acme"]]))

    campaign = Campaign.objects.get(pk=campaign.pk)
    with django_assert_num_queries(0):
        known = campaign.recipient_data_keys()
    assert known == ["city", "company", "plan"]
    with connection.cursor() as cursor:  # what the rows themselves hold
        cursor.execute("SELECT DISTINCT jsonb_object_keys(data) FROM campaigns_recipient WHERE campaign_id = %s",
                       [campaign.pk])
        assert sorted(row[0] for row in cursor.fetchall()) == known


def test_the_same_address_in_another_campaign_is_not_a_duplicate(campaign, make_csv):
    RecipientFactory(email="ana@example.com")
    assert import_recipients(campaign, make_csv(PEOPLE)).imported == 3


def test_suppressed_addresses_are_imported_and_counted(campaign, make_csv):
    SuppressionFactory(email="ana@example.com")
    SuppressionFactory(email="bob.jones@example.com")
    SuppressionFactory(email="someone.else@example.com")
    report = import_recipients(campaign, make_csv(PEOPLE))
    assert (report.imported, report.suppressed) == (3, 2)
    assert report.recipient_import.suppressed == 2


def test_invalid_addresses_are_rejected_with_the_libraries_reason_and_original_values(campaign, make_csv):
    rows = [["Email", "Name"], ["ana@example.com", "Ana"], ["john@", "John"], ["", "No address"],
            ["x@localhost", "Local"], ["  padded@example.com  ", "Padded"]]
    report = import_recipients(campaign, make_csv(rows))

    assert (report.rows, report.imported, report.invalid) == (5, 2, 3)
    assert emails_of(campaign) == {"ana@example.com", "padded@example.com"}
    rejected = read_rejected(report.recipient_import)
    assert rejected[0] == ["Row", "Reason", "Email", "Name"]
    assert [(r[0], r[2], r[3]) for r in rejected[1:]] == [("3", "john@", "John"), ("4", "", "No address"),
                                                         ("5", "x@localhost", "Local")]
    assert rejected[1][1] == "There must be something after the @-sign."
    assert rejected[2][1] == "Missing email address"


def test_rejected_rows_csv_neutralizes_spreadsheet_formulas(campaign, make_csv):
    rows = [["email", "=HEADER()", "note"],
            ["=HYPERLINK(\"http://evil\")", "+1", "-2"], ["@SUM(A1)", "\tx", "plain"]]
    report = import_recipients(campaign, make_csv(rows))
    rejected = read_rejected(report.recipient_import)
    assert rejected[0] == ["Row", "Reason", "email", "'=HEADER()", "note"]
    assert rejected[1][2:] == ["'=HYPERLINK(\"http://evil\")", "'+1", "'-2"]
    assert rejected[2][2:] == ["'@SUM(A1)", "'\tx", "plain"]


def test_blank_lines_are_skipped_without_counting(campaign, tmp_path):
    path = tmp_path / "gaps.csv"
    path.write_text("email,name\n\nana@example.com,Ana\n,\n\nbob@example.com,Bob\n")
    report = import_recipients(campaign, path)
    assert (report.rows, report.imported, report.invalid) == (2, 2, 0)


def test_refused_for_a_campaign_that_has_started(campaign, make_csv):
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.IN_PROGRESS)
    with pytest.raises(ImportRefused, match="only be added to a draft or scheduled campaign"):
        import_recipients(campaign, make_csv(PEOPLE))
    assert not Recipient.objects.filter(campaign=campaign).exists()


def test_scheduled_campaigns_accept_imports(campaign, make_csv):
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.SCHEDULED)
    assert import_recipients(campaign, make_csv(PEOPLE)).imported == 3


class FakeResolver:
    """Answers like dnspython: MX records for the domains given, NXDOMAIN for the rest."""

    def __init__(self, mail_domains):
        self.mail_domains = mail_domains
        self.asked = []

    def resolve(self, name, rdtype):
        self.asked.append((name, rdtype))
        if name not in self.mail_domains:
            raise dns.resolver.NXDOMAIN
        if rdtype == "MX":
            return [SimpleNamespace(preference=10, exchange=f"mx.{name}.")]
        raise dns.resolver.NoAnswer


def test_mx_check_rejects_domains_without_mail_and_asks_once_per_domain(campaign, make_csv):
    resolver = FakeResolver({"example.com"})
    rows = [["email"], ["a@example.com"], ["b@example.com"], ["c@nomail.test-domain.org"],
            ["d@nomail.test-domain.org"]]
    report = import_recipients(campaign, make_csv(rows), check_mx=True, resolver=resolver)

    assert (report.imported, report.invalid) == (2, 2)
    assert [name for name, rdtype in resolver.asked if rdtype == "MX"] == ["example.com", "nomail.test-domain.org"]
    assert read_rejected(report.recipient_import)[1][1] == (
        "The domain nomail.test-domain.org does not accept email (it has no MX record).")


def test_mx_check_is_off_by_default(campaign, make_csv):
    rows = [["email"], ["a@no-such-domain-for-sure.org"]]
    assert import_recipients(campaign, make_csv(rows)).imported == 1


def test_progress_is_reported_in_rows(campaign, make_csv, monkeypatch):
    monkeypatch.setattr("campaigns.audience.importing.reader.CHUNK_ROWS", 2)
    calls = []
    rows = [["email"]] + [[f"p{i}@example.com"] for i in range(5)]
    import_recipients(campaign, make_csv(rows), progress=lambda done, estimated: calls.append((done, estimated)))
    assert [done for done, _ in calls] == [0, 2, 4, 5, 5]
    assert calls[0][1] == 5


def test_a_recipient_import_record_is_marked_running_then_succeeded(campaign, make_csv, media_root):
    from django.core.files import File

    with open(make_csv(PEOPLE + [["bad", "", "", "", ""]]), "rb") as f:
        record = RecipientImport.objects.create(campaign=campaign, file=File(f, name="upload.csv"),
                                                original_name="upload.csv")
    report = import_recipients(record)
    record.refresh_from_db()
    assert record.status == RecipientImport.Status.SUCCEEDED
    assert (record.imported, record.invalid, record.total_rows) == (3, 1, 4)
    assert record.rejected_file.path.startswith(str(media_root))
    assert report.recipient_import.pk == record.pk


def test_the_committed_sample_file_imports_with_its_deliberate_mistakes(campaign, settings):
    report = import_recipients(campaign, settings.BASE_DIR / "sample_recipients.csv")
    assert (report.rows, report.imported, report.duplicates_in_file, report.invalid) == (20, 16, 1, 3)
    rejected = read_rejected(report.recipient_import)
    assert [row[0] for row in rejected[1:]] == ["14", "16", "17", "18"]
    quinn = Recipient.objects.get(campaign=campaign, email="quinn@example.com")
    assert quinn.data["company"] == '=HYPERLINK("http://example.com")'  # stored as is; neutralised only in reports
