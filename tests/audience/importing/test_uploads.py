"""Uploads imported by the `imports` worker while staff and the scheduler carry on: progress inside the
import's transaction, a campaign page that never waits, campaign starts on time, no import run twice or
forever, uploaded files removed. Long imports are held mid-file by tests/support/paused_imports_app.py."""

import os
import signal
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from campaigns import services
from campaigns.exceptions import ImportFailed
from campaigns.models import Campaign, Recipient, RecipientImport
from campaigns.tasks.imports import import_recipients_file
from tests.audience.importing.conftest import csv_upload, import_url, status_json_url, uploaded, wait_until_finished
from tests.sending.test_pipeline import make_campaign, status_of, wait_for
from tests.support.factories import CampaignFactory, RecipientFactory

S = RecipientImport.Status
PAUSED_APP = "tests.support.paused_imports_app"
CHUNK_ROWS = 100


def people_csv(rows, domain="example.com"):
    return "email,first name,city\n" + "".join(f"p{i}@{domain},P{i},Town{i}\n" for i in range(rows))


def status_of_import(client, record):
    return client.get(status_json_url(record)).json()


def held_after_first_chunk(client, record):
    """Wait until the import has written the progress of its first chunk and is held there."""
    return wait_for(lambda: (status := status_of_import(client, record))["rows_done"] == CHUNK_ROWS and status,
                    timeout=60)


@pytest.fixture
def pause_file(tmp_path):
    path = tmp_path / "hold-imports"
    path.touch()
    return path


@pytest.fixture
def start_paused_imports_worker(start_worker, media_root, pause_file):
    def start(concurrency=1, **env):
        return start_worker(["imports"], concurrency=concurrency, app_module=PAUSED_APP, MEDIA_ROOT=str(media_root),
                            IMPORT_PAUSE_FILE=str(pause_file), IMPORT_TEST_CHUNK_ROWS=CHUNK_ROWS, **env)
    return start


def campaign_with_stale_merge_field_cache():
    """Opening this campaign's page recomputes and writes its merge-field cache."""
    campaign = CampaignFactory()
    RecipientFactory(campaign=campaign, data={"city": "Lisbon"})
    Campaign.objects.filter(pk=campaign.pk).update(total_recipients=1, merge_fields_total=None)
    return campaign


@pytest.mark.slow
def test_long_imports_show_progress_and_block_neither_the_campaign_page_nor_a_campaign_start(
        start_worker, start_paused_imports_worker, staff_client, pause_file, lock_waits_fail, smtp_sink_server,
        no_sendgrid, media_root):
    start_worker(["scheduler"], concurrency=2, wait=False)  # as in the Procfile
    start_worker(["senders"], concurrency=1)
    start_paused_imports_worker(concurrency=2)
    # Two uploads held mid-file: each import's transaction holds its campaign row.
    held = []
    for _ in range(2):
        campaign = campaign_with_stale_merge_field_cache()
        staff_client.post(import_url(campaign), {"file": csv_upload(people_csv(500))})
        held.append((campaign, RecipientImport.objects.get(campaign=campaign)))
    for campaign, record in held:
        status = held_after_first_chunk(staff_client, record)
        assert (status["status"], status["rows_estimated"]) == ("running", 500)

    # The campaign page opens without waiting for the import and says why its figures may change.
    campaign, record = held[0]
    page = staff_client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))
    assert page.status_code == 200
    assert "Import in progress" in page.content.decode()
    assert reverse("admin:campaigns_campaign_import_status", args=[record.pk]) in page.content.decode()

    # Saving it does not wait either: the form says why it cannot be saved yet, and keeps the changes.
    form = {"name": "Renamed while importing", "subject": campaign.subject, "from_email": campaign.from_email,
            "reply_to": "", "html_body": campaign.html_body, "text_body": "", "batch_size": campaign.batch_size,
            "schedule_for_0": "", "schedule_for_1": ""}
    saved = staff_client.post(reverse("admin:campaigns_campaign_change", args=[campaign.pk]), form)
    assert saved.status_code == 200
    assert "An import into this campaign is still running" in saved.content.decode()
    assert "Renamed while importing" in saved.content.decode()
    campaign.refresh_from_db()
    assert campaign.name != "Renamed while importing"

    # A campaign due now starts and is sent while both imports are still running.
    due = make_campaign(5)
    services.send_now(due.pk)
    wait_for(lambda: status_of(due) == Campaign.Status.COMPLETED)
    assert due.sent_count == 5
    assert all(status_of_import(staff_client, r)["status"] == "running" for _, r in held)

    pause_file.unlink()
    for campaign, record in held:
        status, _ = wait_until_finished(staff_client, record)
        assert (status["status"], status["imported"]) == ("succeeded", 500)
        assert Recipient.objects.filter(campaign=campaign).count() == 501
        record.refresh_from_db()
        assert not record.file  # the upload is removed once imported
    # (checked once both are done: the other import's upload is still there while it runs)
    assert not list((media_root / "imports").rglob("people*.csv"))
    page = staff_client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()
    assert "Import in progress" not in page


@pytest.mark.slow
def test_an_import_whose_worker_process_dies_is_marked_failed_and_never_run_again(
        start_paused_imports_worker, staff_client, pause_file):
    worker = start_paused_imports_worker(concurrency=1)
    campaign = CampaignFactory()
    staff_client.post(import_url(campaign), {"file": csv_upload(people_csv(300))})
    record = RecipientImport.objects.get()
    held_after_first_chunk(staff_client, record)

    for pid in worker.pool_pids():
        os.kill(pid, signal.SIGKILL)  # the process reading the file dies; its transaction rolls back
    status, _ = wait_until_finished(staff_client, record)
    assert status["status"] == "failed"
    assert "import worker stopped while reading this file" in status["error"]

    # The worker carries on with the next upload; the dead one is not delivered again.
    pause_file.unlink()
    other = CampaignFactory()
    staff_client.post(import_url(other), {"file": csv_upload(people_csv(3, domain="other.example"))})
    status, _ = wait_until_finished(staff_client, RecipientImport.objects.get(campaign=other))
    assert status["status"] == "succeeded"
    record.refresh_from_db()
    assert record.status == S.FAILED
    assert not Recipient.objects.filter(campaign=campaign).exists()
    received = [line for line in worker.log_path.read_text().splitlines() if "Task campaigns.tasks.imports."
                "import_recipients_file[" in line and "received" in line]
    assert len(received) == 2, received  # the dead import's task once, the next upload's once


@pytest.mark.slow
def test_an_import_that_reaches_its_time_limit_is_marked_failed_with_that_reason(
        start_paused_imports_worker, staff_client, monkeypatch):
    start_paused_imports_worker(IMPORT_TIME_LIMIT_SECONDS=3)  # held mid-file, so it runs out of time
    # The sender puts the task's limits in the message: the admin here has the same setting as the worker.
    monkeypatch.setattr(import_recipients_file, "soft_time_limit", 3)
    monkeypatch.setattr(import_recipients_file, "time_limit", 60)
    monkeypatch.setattr(import_recipients_file, "_exec_options", None)  # Celery caches them at the first send
    campaign = CampaignFactory()
    staff_client.post(import_url(campaign), {"file": csv_upload(people_csv(300))})
    record = RecipientImport.objects.get()
    status, _ = wait_until_finished(staff_client, record)
    assert status["status"] == "failed"
    assert "stopped after 3 seconds, its time limit (IMPORT_TIME_LIMIT_SECONDS)" in status["error"]
    assert not Recipient.objects.filter(campaign=campaign).exists()
    record.refresh_from_db()
    assert not record.file


def test_an_import_found_running_when_its_task_starts_is_failed_not_run_again(db, make_csv, media_root):
    campaign = CampaignFactory()
    record = uploaded(campaign, make_csv([["email"], ["ana@example.com"]]), status=S.RUNNING,
                      started_at=timezone.now())
    with pytest.raises(ImportFailed, match=f"import {record.pk}: The import worker stopped while reading"):
        import_recipients_file(record.pk)  # a FAILURE for Celery (Flower), once the import says why
    record.refresh_from_db()
    assert record.status == S.FAILED
    assert record.error.startswith("The import worker stopped while reading this file")
    assert not Recipient.objects.filter(campaign=campaign).exists()
    assert not record.file


def test_a_finished_import_delivered_again_changes_nothing(db, make_csv, media_root):
    record = uploaded(CampaignFactory(), make_csv([["email"], ["ana@example.com"]]))
    assert "summary" in import_recipients_file(record.pk)
    assert import_recipients_file(record.pk) is None
    assert Recipient.objects.filter(campaign=record.campaign).count() == 1


def test_uploads_are_kept_for_import_keep_uploads_days_then_removed(db, make_csv, media_root, settings):
    from campaigns.audience.importing import uploads

    settings.IMPORT_KEEP_UPLOADS_DAYS = 2
    record = uploaded(CampaignFactory(), make_csv([["email"], ["ana@example.com"]]))
    import_recipients_file(record.pk)
    record.refresh_from_db()
    kept = record.file.path
    assert record.status == S.SUCCEEDED and record.file and (media_root / kept).exists()

    assert uploads.tidy_uploads() == {"abandoned": 0, "removed": 0}  # not old enough yet
    RecipientImport.objects.filter(pk=record.pk).update(finished_at=timezone.now() - timedelta(days=3))
    assert uploads.tidy_uploads() == {"abandoned": 0, "removed": 1}
    record.refresh_from_db()
    assert not record.file and not (media_root / kept).exists()


def test_the_hourly_tidy_fails_imports_whose_worker_vanished(db, make_csv, media_root, settings):
    from campaigns.audience.importing import uploads

    long_ago = timezone.now() - timedelta(seconds=settings.IMPORT_TIME_LIMIT_SECONDS + 600)
    lost = uploaded(CampaignFactory(), make_csv([["email"], ["ana@example.com"]]), status=S.RUNNING,
                    started_at=long_ago)
    recent = uploaded(CampaignFactory(), make_csv([["email"], ["bob@example.com"]]), status=S.RUNNING,
                      started_at=timezone.now())
    assert uploads.tidy_uploads()["abandoned"] == 1
    lost.refresh_from_db()
    recent.refresh_from_db()
    assert (lost.status, lost.error, bool(lost.file)) == (S.FAILED, uploads.WORKER_STOPPED, False)
    assert (recent.status, bool(recent.file)) == (S.RUNNING, True)
