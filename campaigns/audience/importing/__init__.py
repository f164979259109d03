"""Recipient import: read CSV/XLSX/XLS in chunks, validate, de-duplicate, COPY into PostgreSQL.

`service.import_recipients` is the one entry point; the Celery task, the admin and the
`import_recipients` command all call it.

Every refusal is a campaigns.exceptions.ImportRefused whose message is one sentence for staff.
"""
