"""The admin's import pages: upload -> Celery task on a real worker -> status JSON -> report and rejected rows."""

import pytest
from django.urls import reverse

from campaigns.models import Campaign, Recipient, RecipientImport
from tests.audience.importing.conftest import (
    csv_upload,
    import_url,
    media_root,  # noqa: F401  (autouse: uploads go to a temporary MEDIA_ROOT)
    read_rejected,
    status_json_url,
    wait_until_finished,
)
from tests.support.factories import CampaignFactory, UserFactory


@pytest.mark.slow
def test_upload_runs_on_a_worker_and_reports(start_worker, staff_client, media_root):
    worker = start_worker(["imports"], concurrency=1, MEDIA_ROOT=str(media_root))
    campaign = CampaignFactory()
    change_page = staff_client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))
    assert import_url(campaign) in change_page.content.decode()  # the "Import recipients" button

    upload = csv_upload("Email,First Name,City\nana@example.com,Ana,Lisbon\nANA@example.com,Dup,X\n"
                        "=cmd|' /C calc'!A0,Evil,Y\n")
    response = staff_client.post(import_url(campaign), {"file": upload})
    record = RecipientImport.objects.get()
    status_url = reverse("admin:campaigns_campaign_import_status", args=[record.pk])
    assert response.status_code == 302 and response["Location"] == status_url
    assert 'id="import-progress"' in staff_client.get(status_url).content.decode() or record.status != "queued"

    status, _ = wait_until_finished(staff_client, record)
    assert status["status"] == "succeeded", worker.log_tail()
    assert (status["rows"], status["imported"], status["duplicates_in_file"], status["invalid"]) == (3, 1, 1, 1)
    assert status["percent"] == 100
    assert Recipient.objects.get(campaign=campaign).data == {"city": "Lisbon"}

    page = staff_client.get(status_url).content.decode()
    assert "Download the rejected rows" in page and status["rejected_url"] in page
    download = staff_client.get(status["rejected_url"])
    assert download.status_code == 200 and "attachment" in download["Content-Disposition"]
    body = b"".join(download.streaming_content).decode("utf-8-sig")
    assert "'=cmd|' /C calc'!A0" in body and "Duplicate of row 2" in body

    # The same file again: harmless.
    staff_client.post(import_url(campaign), {"file": csv_upload("Email,First Name,City\nana@example.com,Ana,Lisbon\n")})
    second = RecipientImport.objects.exclude(pk=record.pk).get()
    status, _ = wait_until_finished(staff_client, second)
    assert (status["imported"], status["already_present"]) == (0, 1)
    assert Recipient.objects.filter(campaign=campaign).count() == 1
    campaign.refresh_from_db()
    assert campaign.total_recipients == 1


@pytest.mark.slow
def test_a_bad_file_fails_with_its_reason_on_the_page(start_worker, staff_client, media_root):
    worker = start_worker(["imports"], concurrency=1, MEDIA_ROOT=str(media_root))
    campaign = CampaignFactory()
    staff_client.post(import_url(campaign), {"file": csv_upload("name\nAna\n")})
    record = RecipientImport.objects.get()
    status, _ = wait_until_finished(staff_client, record)
    assert status["status"] == "failed"
    assert status["error"].startswith("The file has no email column")
    page = staff_client.get(reverse("admin:campaigns_campaign_import_status", args=[record.pk])).content.decode()
    assert "The file has no email column" in page and "Nothing was imported" in page
    assert not Recipient.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("rows, refusal", [
    (80_000, "the limit is 1 MB"),  # about 1.1 MB: read, then refused by the form
    (300_000, "larger than the 1 MB limit"),  # about 4 MB: refused from its declared length, before it is read
])
def test_upload_over_the_size_limit_is_refused(staff_client, settings, rows, refusal):
    settings.IMPORT_MAX_UPLOAD_MB = 1
    big = csv_upload("email\n" + "a@example.com\n" * rows)
    response = staff_client.post(import_url(CampaignFactory()), {"file": big})
    assert response.status_code == 200 and refusal in response.content.decode()
    assert not RecipientImport.objects.exists()


@pytest.mark.django_db
def test_upload_refused_for_a_campaign_that_is_sending(staff_client):
    campaign = CampaignFactory(status=Campaign.Status.IN_PROGRESS)
    response = staff_client.post(import_url(campaign), {"file": csv_upload("email\na@example.com\n")})
    assert "Recipients cannot be added to this campaign: it is in progress." in response.content.decode()
    assert not RecipientImport.objects.exists()


@pytest.mark.django_db
def test_a_paused_campaign_says_why_in_place_of_the_upload_form(staff_client):
    """Issue 25 item 13: the form was shown, and the refusal came only after the upload."""
    campaign = CampaignFactory(status=Campaign.Status.PAUSED, total_recipients=49_200)
    page = staff_client.get(import_url(campaign)).content.decode()
    assert "Recipients cannot be added to this campaign: it is paused." in page
    assert "duplicate the campaign and import the file into the copy" in page and "49,200 recipients" in page
    assert 'id="recipient-import-form"' not in page and 'type="file"' not in page


@pytest.mark.django_db
def test_the_progress_line_says_queued_then_counts_with_separators(staff_client):
    campaign = CampaignFactory()
    record = RecipientImport.objects.create(campaign=campaign, original_name="crm.csv", file="imports/crm.csv")
    assert staff_client.get(status_json_url(record)).json()["progress_line"] == "Queued: waiting for an import worker"
    page = staff_client.get(reverse("admin:campaigns_campaign_import_status", args=[record.pk])).content.decode()
    assert "Queued: waiting for an import worker" in page and "of about 0" not in page
    RecipientImport.objects.filter(pk=record.pk).update(status="running", rows_done=12_000, rows_estimated=49_200)
    assert staff_client.get(status_json_url(record)).json()["progress_line"] == "12,000 of about 49,200 rows read"


@pytest.mark.django_db
def test_the_report_lists_the_new_merge_tags_the_files_columns_made(staff_client, tmp_path):
    from campaigns.audience.importing.service import import_recipients

    campaign = CampaignFactory()
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    first.write_text("Email,First Name,City,Plan\na@example.com,Ana,Lisbon,pro\n")
    second.write_text("Email,City,Código postal\nb@example.com,Porto,4000\n")
    report = import_recipients(campaign, first).recipient_import
    assert (report.merge_tags, report.new_merge_tags) == (["city", "plan"], ["city", "plan"])
    record = import_recipients(campaign, second).recipient_import
    assert (record.merge_tags, record.new_merge_tags) == (["city", "codigo_postal"], ["codigo_postal"])
    tags = staff_client.get(reverse("admin:campaigns_campaign_import_status", args=[record.pk]))
    text = " ".join(tags.content.decode().split())
    assert "New merge tags from this file's columns, for the subject and body:" in text
    assert "<code>{{ codigo_postal }}</code>" in text and "{{ city }}" not in text


@pytest.mark.django_db
def test_the_imports_list_writes_its_figures_with_separators(staff_client):
    RecipientImport.objects.create(campaign=CampaignFactory(), original_name="crm.csv", file="imports/crm.csv",
                                   status="succeeded", imported=49_200, invalid=1_250)
    page = staff_client.get(reverse("admin:campaigns_recipientimport_changelist")).content.decode()
    assert "49,200" in page and "1,250" in page


@pytest.mark.django_db
def test_upload_page_shows_the_limits(staff_client, settings):
    settings.IMPORT_MAX_UPLOAD_MB = 42
    page = staff_client.get(import_url(CampaignFactory())).content.decode()
    assert "42 MB" in page


@pytest.fixture
def finished_import(db, tmp_path):
    from campaigns.audience.importing.service import import_recipients

    path = tmp_path / "list.csv"
    path.write_text("email\na@example.com\nbad\n")
    return import_recipients(CampaignFactory(), path).recipient_import


def import_urls(campaign, record):
    return [import_url(campaign), status_json_url(record),
            reverse("admin:campaigns_campaign_import_status", args=[record.pk]),
            reverse("admin:campaigns_campaign_import_rejected", args=[record.pk])]


@pytest.mark.django_db
def test_anonymous_visitors_are_sent_to_the_login_page(client, finished_import):
    for url in import_urls(finished_import.campaign, finished_import):
        response = client.get(url)
        assert response.status_code == 302 and "/login/" in response["Location"], url
    assert client.post(import_url(finished_import.campaign), {"file": csv_upload("email\nx@example.com\n")}
                       ).status_code == 302
    assert not RecipientImport.objects.exclude(pk=finished_import.pk).exists()


@pytest.mark.django_db
def test_non_staff_users_are_refused(client, finished_import):
    client.force_login(UserFactory(is_staff=False))
    for url in import_urls(finished_import.campaign, finished_import):
        response = client.get(url)
        assert response.status_code == 302 and "/login/" in response["Location"], url


@pytest.mark.django_db
def test_staff_without_campaign_permissions_are_refused(client, finished_import):
    client.force_login(UserFactory(is_staff=True, is_superuser=False))
    for url in import_urls(finished_import.campaign, finished_import):
        assert client.get(url).status_code == 403, url


@pytest.mark.django_db
def test_staff_can_download_the_rejected_rows(staff_client, finished_import):
    response = staff_client.get(reverse("admin:campaigns_campaign_import_rejected", args=[finished_import.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv"
    assert read_rejected(finished_import)[1][0] == "3"
