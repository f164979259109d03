"""CSV export of a campaign's delivery logs: streamed over a server-side cursor, safe to open in a spreadsheet."""

import csv

from django.http import StreamingHttpResponse

from campaigns.audience.spreadsheets import spreadsheet_safe
from campaigns.models import DeliveryLog

COLUMNS = (
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


def delivery_log_rows(campaign_id):
    writer = csv.writer(_Echo())
    yield writer.writerow([header for _, header in COLUMNS])
    rows = (DeliveryLog.objects.filter(campaign_id=campaign_id).order_by("id")
            .values_list(*(field for field, _ in COLUMNS)).iterator(chunk_size=CHUNK_SIZE))
    for row in rows:
        yield writer.writerow([spreadsheet_safe(value) for value in row])


def delivery_logs_csv(campaign) -> StreamingHttpResponse:
    response = StreamingHttpResponse(delivery_log_rows(campaign.pk), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="campaign-{campaign.pk}-delivery-logs.csv"'
    return response
