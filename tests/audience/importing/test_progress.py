from django.db import connection, connections, transaction

from campaigns.audience.importing import reader
from campaigns.audience.importing.progress import DatabaseProgress
from campaigns.audience.importing.service import import_recipients
from campaigns.models import RecipientImport
from tests.audience.importing.conftest import uploaded
from tests.support.factories import CampaignFactory


def read_progress(record_id):
    """What the admin's status endpoint would see, from a connection of its own."""
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT rows_done, rows_estimated FROM campaigns_recipientimport WHERE id = %s",
                           [record_id])
            return cursor.fetchone()
    finally:
        other.close()


def test_progress_is_visible_while_the_import_transaction_is_open(transactional_db):
    record = RecipientImport.objects.create(campaign=CampaignFactory(), file="x.csv", original_name="x.csv",
                                            status=RecipientImport.Status.RUNNING)
    progress = DatabaseProgress(record.pk, interval=0)
    with transaction.atomic():
        progress(500, 2000)
        assert read_progress(record.pk) == (500, 2000)
    progress.close()


def test_progress_is_written_at_most_once_per_interval(transactional_db):
    record = RecipientImport.objects.create(campaign=CampaignFactory(), file="x.csv", original_name="x.csv",
                                            status=RecipientImport.Status.RUNNING)
    progress = DatabaseProgress(record.pk, interval=3600)
    progress(10, 100)
    progress(20, 100)
    progress.close()
    assert read_progress(record.pk) == (10, 100)


def test_progress_written_inside_the_import_transaction_is_seen_and_never_waits(lock_waits_fail, monkeypatch,
                                                                              make_csv):
    monkeypatch.setattr(reader, "CHUNK_ROWS", 10)
    record = uploaded(CampaignFactory(), make_csv([["email"], *[[f"p{i}@example.com"] for i in range(50)]]))
    progress = DatabaseProgress(record.pk, interval=0)  # every call writes
    seen_inside = []

    def write_and_look(done, estimated):
        progress(done, estimated)
        if connection.in_atomic_block:  # the import's transaction is open, holding its locks
            seen_inside.append(read_progress(record.pk)[0])

    report = import_recipients(record, progress=write_and_look)
    progress.close()
    assert report.imported == 50
    assert seen_inside == [10, 20, 30, 40, 50]
    record.refresh_from_db()
    assert (record.status, record.rows_done) == (RecipientImport.Status.SUCCEEDED, 50)
