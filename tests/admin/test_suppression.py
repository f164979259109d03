"""The suppression list in the admin: add, remove, import from CSV; checked whatever the address's case."""

import html

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from campaigns.models import Suppression
from campaigns.sending import pipeline
from tests.support.factories import CampaignFactory, RecipientFactory, SuppressionFactory, UserFactory

pytestmark = pytest.mark.django_db
IMPORT_URL = reverse("admin:campaigns_suppression_import")
CHANGELIST = reverse("admin:campaigns_suppression_changelist")


@pytest.fixture
def staff(client):
    client.force_login(UserFactory(is_superuser=True))
    return client


def upload(staff, content: bytes, name="list.csv", reason="manual", source=""):
    return staff.post(IMPORT_URL, {"file": SimpleUploadedFile(name, content, "text/csv"), "reason": reason,
                                   "source": source}, follow=True)


def test_the_list_shows_reason_source_and_campaign(staff):
    campaign = CampaignFactory(name="Spring sale")
    SuppressionFactory(email="ann@example.com", reason="complained", source="sendgrid webhook: spamreport",
                       campaign=campaign)
    page = staff.get(CHANGELIST).content.decode()
    assert "ann@example.com" in page and "Complained (spam report)" in page
    assert "sendgrid webhook: spamreport" in page and "Spring sale" in page and "Import from CSV" in page


def test_staff_add_an_address_normalized_and_a_duplicate_is_refused(staff):
    add = reverse("admin:campaigns_suppression_add")
    response = staff.post(add, {"email": "  Ann.Lee@Example.COM ", "reason": "manual", "source": "asked by phone"})
    assert response.status_code == 302
    assert list(Suppression.objects.values_list("email", "reason", "source")) == [
        ("ann.lee@example.com", "manual", "asked by phone")]

    again = staff.post(add, {"email": "ANN.LEE@example.com", "reason": "manual", "source": ""})
    assert again.status_code == 200 and "already exists" in again.content.decode()
    bad = staff.post(add, {"email": "not an address", "reason": "manual", "source": ""})
    assert "Enter a valid email address" in bad.content.decode()
    assert Suppression.objects.count() == 1


def test_staff_remove_an_address(staff):
    entry = SuppressionFactory(email="ann@example.com")
    response = staff.post(reverse("admin:campaigns_suppression_delete", args=[entry.pk]), {"post": "yes"})
    assert response.status_code == 302 and not Suppression.objects.exists()


def test_a_suppressed_address_is_skipped_at_send_time_whatever_its_case(db):
    campaign = CampaignFactory()
    RecipientFactory(campaign=campaign, email="Ann.Lee@example.com")  # the importer keeps a local part's case
    RecipientFactory(campaign=campaign, email="bob@example.com")
    SuppressionFactory(email="ann.lee@example.com", reason="manual")

    created, skipped, *_ = pipeline.create_delivery_logs(campaign.pk, 200)

    assert (created, skipped) == (2, 1)
    assert campaign.delivery_logs.get(email="Ann.Lee@example.com").status == "skipped"


def test_import_from_csv_adds_new_addresses_and_counts_the_rest(staff):
    SuppressionFactory(email="old@example.com", reason="bounced")
    content = (b"\xef\xbb\xbfName;Email\nAnn;Ann@Example.com\nOld;OLD@example.com\nBad;not-an-address\n\n"
               b"Bob;bob@example.com\nAnn again;ann@example.com\n")

    response = upload(staff, content, reason="unsubscribed", source="old ESP export")

    message = [str(m) for m in response.context["messages"]][0]
    assert message.startswith("2 address(es) added to the suppression list, 2 already on it, 1 invalid.")
    assert "row 4: 'not-an-address'" in message
    assert dict(Suppression.objects.values_list("email", "reason")) == {
        "old@example.com": "bounced", "ann@example.com": "unsubscribed", "bob@example.com": "unsubscribed"}
    assert Suppression.objects.get(email="bob@example.com").source == "old ESP export"


def test_import_of_a_plain_list_without_header(staff):
    upload(staff, b"ann@example.com\nbob@example.com\n")
    assert set(Suppression.objects.values_list("email", flat=True)) == {"ann@example.com", "bob@example.com"}


@pytest.mark.parametrize("content, error", [
    (b"name,city\nAnn,Lisbon\n", 'No column named "email"'),
    ("email\nJosé@example.com\n".encode() + "René@example.com\n".encode("latin-1"), "mixes text encodings"),
    (b"", "The submitted file is empty"),
    (b"email\n", "no addresses"),
])
def test_a_file_that_cannot_be_imported_says_why_and_changes_nothing(staff, content, error):
    SuppressionFactory(email="old@example.com")
    response = upload(staff, content)
    assert response.status_code == 200 and error in html.unescape(response.content.decode())
    assert list(Suppression.objects.values_list("email", flat=True)) == ["old@example.com"]


def test_an_unreadable_row_late_in_the_file_rolls_back_the_whole_import(staff):
    content = b"email\n" + b"".join(f"p{i}@example.com\n".encode() for i in range(70_000)) + b'"open@x.com\n'
    response = upload(staff, content)
    assert "Nothing was imported" in response.content.decode()
    assert not Suppression.objects.exists()


@pytest.mark.parametrize("encoding", ["cp1252", "latin-1"])
def test_a_file_saved_in_a_windows_or_latin_1_encoding_imports_as_recipient_files_do(staff, encoding):
    content = "Name;Email\nJosé;José@example.com\nZoë;zoe@example.com\n".encode(encoding)
    if encoding == "cp1252":
        content += "O’Brien;obrien@example.com\n".encode(encoding)  # ’ is cp1252's, not Latin-1's
    response = upload(staff, content)
    assert [str(m) for m in response.context["messages"]][0].startswith("%d address(es) added" % (
        3 if encoding == "cp1252" else 2))
    assert "josé@example.com" in set(Suppression.objects.values_list("email", flat=True))
