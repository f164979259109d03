"""CSV export of a campaign's delivery logs: streamed over a server-side cursor, safe to open in a spreadsheet."""

from django.http import StreamingHttpResponse

from campaigns.audience.spreadsheets import delivery_log_rows


def delivery_logs_csv(campaign) -> StreamingHttpResponse:
    response = StreamingHttpResponse(delivery_log_rows(campaign.pk), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="campaign-{campaign.pk}-delivery-logs.csv"'
    return response
