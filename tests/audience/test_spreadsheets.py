"""One escaper for every CSV staff open in a spreadsheet: the delivery-log export and the rejected-rows report."""

from datetime import datetime, timezone

from django.test import override_settings

from campaigns.audience.spreadsheets import spreadsheet_safe


def test_spreadsheet_safe_prefixes_every_formula_start():
    assert [spreadsheet_safe(v) for v in ("=1", "+1", "-1", "@a", "\tx", "\rx", "ok", None, 3)] == [
        "'=1", "'+1", "'-1", "'@a", "'\tx", "'\rx", "ok", "", "3"]


@override_settings(TIME_ZONE="Europe/Lisbon")
def test_a_datetime_is_written_in_local_time():
    assert spreadsheet_safe(datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc)) == "2026-07-01T13:00:00+01:00"
