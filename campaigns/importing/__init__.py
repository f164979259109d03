"""Recipient import: read CSV/XLSX/XLS in chunks, validate, de-duplicate, COPY into PostgreSQL.

`service.import_recipients` is the one entry point; the Celery task, the admin and the
`import_recipients` command all call it.
"""

from campaigns.importing.errors import ImportRefused

__all__ = ["ImportRefused"]
