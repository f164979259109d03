"""CSV cells that are safe to open in a spreadsheet (the delivery-log export, the rejected-rows report)."""

from django.utils import timezone

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
