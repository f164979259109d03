"""Progress of a background import, written where the admin page can see it while the import's own
transaction is still open: through a second database connection, at most every half second.

The import never locks its RecipientImport row, and a progress write skips a row that is locked anyway
(SKIP LOCKED): progress is worth a dropped update, never a wait.
"""

from __future__ import annotations

import time

from django.db import connections

from campaigns.models import RecipientImport

INTERVAL_SECONDS = 0.5
TABLE = RecipientImport._meta.db_table


class DatabaseProgress:
    def __init__(self, recipient_import_id: int, interval: float = INTERVAL_SECONDS):
        self.recipient_import_id = recipient_import_id
        self.interval = interval
        self.last_write: float | None = None
        self.connection = None

    def __call__(self, rows_done: int, rows_estimated: int) -> None:
        now = time.monotonic()
        if self.last_write is not None and now - self.last_write < self.interval:
            return
        self.last_write = now
        if self.connection is None:
            self.connection = connections.create_connection("default")  # autocommit, outside the import
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {TABLE} SET rows_done = %s, rows_estimated = %s WHERE id = ("
                f"SELECT id FROM {TABLE} WHERE id = %s AND status = %s FOR UPDATE SKIP LOCKED)",
                [rows_done, rows_estimated, self.recipient_import_id, RecipientImport.Status.RUNNING],
            )

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None
