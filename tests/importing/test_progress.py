from django.db import connections, transaction

from campaigns.importing.progress import DatabaseProgress
from campaigns.models import RecipientImport
from tests.factories import CampaignFactory


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
