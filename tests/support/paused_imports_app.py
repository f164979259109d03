"""Test-only fault injection: mailer_project's Celery app, with imports that can be held mid-file.

    celery -A tests.support.paused_imports_app worker -Q imports ...

In this worker's pool processes an import reads IMPORT_TEST_CHUNK_ROWS rows per chunk, writes its progress
after every chunk (inside its transaction, holding the campaign row), and then waits for as long as the
file IMPORT_PAUSE_FILE exists. Production code has no such switch.
"""

import os
import time

from celery.signals import worker_process_init

from mailer_project.celery import app  # noqa: F401  (the app this worker runs)


@worker_process_init.connect
def hold_imports_after_each_chunk(**kwargs):
    from campaigns.audience.importing import progress, reader

    reader.CHUNK_ROWS = int(os.environ.get("IMPORT_TEST_CHUNK_ROWS", "100"))
    pause_file = os.environ["IMPORT_PAUSE_FILE"]
    write_progress = progress.DatabaseProgress.__call__

    def write_progress_then_wait(self, rows_done, rows_estimated):
        self.interval = 0  # every chunk's progress is written, so the test sees where the import is
        write_progress(self, rows_done, rows_estimated)
        while rows_done and os.path.exists(pause_file):
            time.sleep(0.05)

    progress.DatabaseProgress.__call__ = write_progress_then_wait
