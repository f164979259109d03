"""CSV cells that are safe to open in a spreadsheet (the delivery-log export, the rejected-rows report),
and the delivery-log export's rows (the admin's Export and the API's delivery-logs/ as text/csv)."""

import csv

from django.utils import timezone

from campaigns.models import Campaign, DeliveryLog

# A cell starting with one of these is a formula to Excel, LibreOffice and Google Sheets (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value):
    """VALUE as the text of a CSV cell: None is empty, a datetime is local ISO 8601, and text that starts
    like a formula gets a leading apostrophe, so a spreadsheet shows it instead of running it."""
    if value is None:
        return ""
    if hasattr(value, "tzinfo"):
        return timezone.localtime(value).isoformat()
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


DELIVERY_LOG_COLUMNS = (
    ("email", "email"), ("recipient__first_name", "first_name"), ("recipient__last_name", "last_name"),
    ("status", "status"), ("provider", "provider"), ("provider_message_id", "provider_message_id"),
    ("attempts", "attempts"), ("last_error", "last_error"), ("sent_at", "sent_at"),
    ("delivered_at", "delivered_at"), ("opened_at", "opened_at"),
    ("machine_opened_at", "machine_opened_at"), ("clicked_at", "clicked_at"),
    ("bounced_at", "bounced_at"), ("complained_at", "complained_at"), ("unsubscribed_at", "unsubscribed_at"),
)
CHUNK_SIZE = 5000


class _Echo:
    """A file-like object whose write() returns the line, so csv.writer feeds the stream directly."""

    def write(self, value):
        return value


# Rows that were never handed to a provider: they got no variant.
NOT_SENT = (DeliveryLog.Status.PENDING, DeliveryLog.Status.SKIPPED)


def delivery_log_rows(campaign_id, status=None):
    """The CSV lines of a campaign's delivery logs (of one STATUS when given), read over a server-side cursor.

    The last column, `variant`, is the A/B variant the recipient got: its own for the test share, the
    winner's for the rest once sent (empty without an A/B test, and for rows not sent)."""
    writer = csv.writer(_Echo())
    yield writer.writerow([header for _, header in DELIVERY_LOG_COLUMNS] + ["variant"])
    winner = (Campaign.objects.filter(pk=campaign_id).values_list("ab_winner__letter", flat=True).first()) or ""
    logs = DeliveryLog.objects.filter(campaign_id=campaign_id)
    if status:
        logs = logs.filter(status=status)
    rows = (logs.order_by("id").values_list(*(field for field, _ in DELIVERY_LOG_COLUMNS), "variant__letter")
            .iterator(chunk_size=CHUNK_SIZE))
    status_at = [field for field, _ in DELIVERY_LOG_COLUMNS].index("status")
    for *row, letter in rows:
        got = letter or ("" if row[status_at] in NOT_SENT else winner)
        yield writer.writerow([spreadsheet_safe(value) for value in row] + [got])
