"""The suppression list: addresses no campaign mails again. Add, import from CSV, unsubscribe.

Suppressed addresses are stored lower-cased (the model's rule); the send-time check compares them
with the lower-cased recipient address. Every write is one set-based statement with
ON CONFLICT DO NOTHING, so repeating any of them is harmless and the counts they return are exact.
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from campaigns.audience.importing.libraries import pd
from campaigns.audience.importing.reader import open_table
from campaigns.audience.importing.validation import validate_emails
from campaigns.exceptions import ImportRefused, SuppressionImportError, UnknownDelivery
from campaigns.models import Campaign, DeliveryLog, Suppression
from campaigns.webhooks import events as webhook_events

R = Suppression.Reason
ONE_CLICK_SOURCE = "one-click unsubscribe"
CSV_MAX_REPORTED_INVALID = 20

INSERT_SUPPRESSIONS = """
INSERT INTO campaigns_suppression (email, reason, source, campaign_id, created_at)
SELECT DISTINCT ON (lower(v.email)) lower(v.email), v.reason, v.source, c.id, now()
FROM unnest(%(emails)s::text[], %(reasons)s::text[], %(sources)s::text[], %(campaigns)s::bigint[])
     WITH ORDINALITY AS v(email, reason, source, campaign_id, n)
LEFT JOIN campaigns_campaign c ON c.id = v.campaign_id
WHERE v.email <> ''
ORDER BY lower(v.email), v.n
ON CONFLICT (email) DO NOTHING
RETURNING email
"""


def normalize(email: str) -> str:
    return (email or "").strip().lower()


def suppress_many(rows) -> int:
    """Add (email, reason, source, campaign_id or None) rows; returns how many addresses were new.

    An address already suppressed, or listed twice, keeps its first reason."""
    rows = list(rows)
    if not rows:
        return 0
    emails, reasons, sources, campaigns = (list(column) for column in zip(*rows))
    with connection.cursor() as cursor:
        cursor.execute(INSERT_SUPPRESSIONS, {"emails": emails, "reasons": reasons, "sources": sources,
                                             "campaigns": campaigns})
        return len(cursor.fetchall())


def suppress(email, reason=R.MANUAL, source="", campaign_id=None) -> bool:
    return suppress_many([(email, reason, source, campaign_id)]) == 1


def is_suppressed(email) -> bool:
    return Suppression.objects.filter(email=normalize(email)).exists()


# --- unsubscribe ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Unsubscribed:
    email: str
    campaign_id: int
    first_time: bool  # False when this recipient had already unsubscribed from this campaign


def unsubscribe(delivery_id, source=ONE_CLICK_SOURCE) -> Unsubscribed:
    """Suppress a delivery's address at once; the recipient is counted once however often it is called."""
    with transaction.atomic():
        log = DeliveryLog.objects.filter(pk=delivery_id).values("campaign_id", "email").first()
        if log is None:
            raise UnknownDelivery(delivery_id)
        Campaign.lock([log["campaign_id"]])  # campaign, then the row: the lock order of every writer
        first_time = bool(DeliveryLog.objects.filter(pk=delivery_id, unsubscribed_at__isnull=True)
                          .update(unsubscribed_at=timezone.now()))
        if first_time:
            Campaign.objects.filter(pk=log["campaign_id"]).update(unsubscribed_count=F("unsubscribed_count") + 1)
            webhook_events.record_delivery_events("delivery.unsubscribed", [delivery_id])
        # Always (re)suppress: staff may have removed the address since, but this is the recipient's own wish.
        suppress(log["email"], R.UNSUBSCRIBED, source, log["campaign_id"])
    return Unsubscribed(log["email"], log["campaign_id"], first_time)


# --- CSV import ---------------------------------------------------------------------------------------

@dataclass
class SuppressionImportReport:
    rows: int = 0
    added: int = 0
    already_suppressed: int = 0
    invalid: int = 0
    invalid_examples: list = field(default_factory=list)  # (row number, cell, reason)

    def summary(self):
        text = (f"{self.added} address(es) added to the suppression list, {self.already_suppressed} already "
                f"on it, {self.invalid} invalid.")
        if self.invalid_examples:
            text += " Invalid: " + "; ".join(f"row {row}: {cell!r} ({reason})"
                                             for row, cell, reason in self.invalid_examples)
        return text


def import_csv(file, reason=R.MANUAL, source="CSV import") -> SuppressionImportReport:
    """Add every address in a CSV file (a column named "email", or a one-column list without header).

    The file is read as recipient imports read it (campaigns.audience.importing.reader: UTF-8, UTF-16, cp1252 or
    Latin-1, any common delimiter). Raises SuppressionImportError, changing nothing, for a file that
    cannot be read or has no email column.
    """
    with _saved(file) as path:
        try:
            table = open_table(path)
            column, header_is_an_address = _email_column(table.header)
            report = SuppressionImportReport()
            with transaction.atomic():
                if header_is_an_address:
                    _import_rows(pd.DataFrame([table.header], index=[table.header_row], dtype=object), column,
                                 reason, source, report)
                for chunk in table.chunks:
                    _import_rows(chunk.frame, column, reason, source, report)
        except ImportRefused as refusal:
            raise SuppressionImportError(f"{refusal} Nothing was imported.") from None
    if report.rows == 0:
        raise SuppressionImportError("The file has a header row but no addresses.")
    return report


def _email_column(header):
    """(index of the email column, whether the first row is an address: a one-column list without header)."""
    names = [name.strip().lower() for name in header]
    if "email" in names:
        return names.index("email"), False
    if len(header) == 1 and "@" in header[0]:
        return 0, True
    raise SuppressionImportError(
        'No column named "email": the first row must name the columns (e.g. email,reason), '
        "or the file must list one address per line.")


def _import_rows(frame, column, reason, source, report):
    """Suppress the valid addresses in COLUMN of FRAME (indexed by row number), counting them in REPORT.
    Rows with no value at all (blank lines) are skipped."""
    frame = frame.fillna("")
    cells = frame[frame.apply(lambda values: values.str.strip().ne("")).any(axis=1)][column].str.strip()
    report.rows += len(cells)
    result = validate_emails(cells)
    valid = []
    for number, cell, address, error in zip(cells.index, cells, result.normalized, result.error):
        if address is None:
            report.invalid += 1
            if len(report.invalid_examples) < CSV_MAX_REPORTED_INVALID:
                report.invalid_examples.append((int(number), cell, error))
        else:
            valid.append(address)
    added = suppress_many((address, reason, source, None) for address in valid)
    report.added += added
    report.already_suppressed += len(valid) - added


@contextmanager
def _saved(file):
    """The uploaded FILE as a path on disk, which the reader needs; removed afterwards."""
    with tempfile.NamedTemporaryFile(prefix="suppressions-", suffix=".csv") as copy:
        shutil.copyfileobj(file, copy)
        copy.flush()
        yield Path(copy.name)
