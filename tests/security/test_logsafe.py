"""Issue 13, item 9: no raw recipient address in a log line, and control characters from uploads
(sheet, header and file names) escaped before they reach one. Helpers: campaigns/security/logsafe.py."""

import logging

import pytest
from django.test import Client

from campaigns.audience.importing.uploads import import_upload
from campaigns.exceptions import ImportFailed, ProviderRefused, ProviderUnavailable
from campaigns.message import signed_links
from campaigns.models import DeliveryLog, RecipientImport
from campaigns.security.logsafe import LogSafeFilter, escape, for_log, mask_addresses, mask_email
from campaigns.sending.chain import send_with_fallback
from tests.audience.importing.conftest import make_xlsx, uploaded  # noqa: F401 (fixture)
from tests.sending.conftest import make_batch
from tests.support.factories import CampaignFactory, DeliveryLogFactory

ADDRESS = "john.doe@example.org"
CONTROLS = "\r\n2026-12-01 00:00:00 ERROR forged line\x1b[2J\x00\u202e\u2028"


def assert_log_safe(text):
    assert ADDRESS not in text and "john.doe@" not in text
    for char in "\r\x1b\x00\u202e\u2028":
        assert char not in text
    assert "forged line" not in text.split("\n", 1)[-1] or "\\x0a" in text  # never a line of its own


def test_mask_email_keeps_the_first_letter_and_the_domain():
    assert mask_email(ADDRESS) == "j***@example.org"
    assert mask_email("x@y.test") == "x***@y.test"
    assert mask_email("not an address") == mask_email("") == mask_email(None) == "***"


def test_mask_addresses_masks_every_address_in_free_text():
    text = f"550 5.1.1 <{ADDRESS}>: Recipient address rejected; also ann+tag@mail.example.com, ok"
    assert mask_addresses(text) == ("550 5.1.1 <j***@example.org>: Recipient address rejected; also "
                                    "a***@mail.example.com, ok")


def test_escape_writes_control_and_direction_characters_visibly():
    assert escape("Sheet\r\n1\x1b[31m\x00\x7f\x85\u202e\u2028\ufeff") == (
        "Sheet\\x0d\\x0a1\\x1b[31m\\x00\\x7f\\x85\\u202e\\u2028\\ufeff")
    assert escape("Ünïcode names, 日本 and spaces stay") == "Ünïcode names, 日本 and spaces stay"
    assert for_log(for_log(f"{ADDRESS}{CONTROLS}")) == for_log(f"{ADDRESS}{CONTROLS}")  # idempotent


def test_the_log_filter_masks_and_escapes_whatever_a_line_carries():
    record = logging.LogRecord("campaigns", logging.INFO, __file__, 1, "to %s: %s", (ADDRESS, CONTROLS), None)
    assert LogSafeFilter().filter(record) is True
    assert_log_safe(record.getMessage())
    assert "j***@example.org" in record.getMessage()


@pytest.fixture(autouse=True)
def call_sites_only():
    """Take LogSafeFilter (the net in settings.LOGGING) off every handler, so that these tests prove the
    call sites themselves mask and escape. Handlers share the record, so the net would hide a gap."""
    removed = []
    for logger in [logging.getLogger(), *[logging.getLogger(n) for n in list(logging.root.manager.loggerDict)]]:
        for handler in getattr(logger, "handlers", []):
            for f in list(handler.filters):
                if isinstance(f, LogSafeFilter):
                    handler.removeFilter(f)
                    removed.append((handler, f))
    yield
    for handler, f in removed:
        handler.addFilter(f)


def test_the_console_handler_of_the_app_has_the_net():
    from django.conf import settings
    assert "log_safe" in settings.LOGGING["handlers"]["console"]["filters"]
    assert settings.LOGGING["filters"]["log_safe"]["()"] == "campaigns.security.logsafe.LogSafeFilter"


@pytest.fixture
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")


@pytest.mark.django_db
def test_an_import_refusal_quoting_header_names_logs_them_masked_and_escaped(tmp_path, media_root, caplog):
    path = tmp_path / "list.csv"
    # Text files refuse most control characters as binary data; CR, LF and Unicode ones still pass.
    path.write_bytes(f'{ADDRESS},"Name\u202e\u2028\r\nforged line"\r\nann,Ann\r\n'.encode())
    record = uploaded(CampaignFactory(), path)

    with caplog.at_level(logging.INFO, logger="campaigns"), pytest.raises(ImportFailed):
        import_upload(record.pk)

    line = next(r.getMessage() for r in caplog.records if "refused" in r.getMessage())
    assert_log_safe(caplog.text)
    assert "Name\\u202e\\u2028\\x0d\\x0aforged line" in line and "j***@example.org" in line, line


@pytest.mark.django_db
def test_an_import_refusal_quoting_sheet_names_logs_them_escaped(tmp_path, media_root, caplog, make_xlsx):
    # XML cannot hold C0 controls, so a workbook's sheet names carry the Unicode ones (bidi overrides).
    path = make_xlsx({"People\u202e\u2066": [["email"], ["ann@example.com"]],
                      f"{ADDRESS}": [["email"], ["bob@example.com"]]})
    record = uploaded(CampaignFactory(), path, sheet="Missing")

    with caplog.at_level(logging.INFO, logger="campaigns"), pytest.raises(ImportFailed):
        import_upload(record.pk)

    record.refresh_from_db()
    assert "no sheet named" in record.error, record.error
    line = next(r.getMessage() for r in caplog.records if "refused" in r.getMessage())
    assert "People\\u202e\\u2066" in line and "j***@example.org" in line, line
    assert_log_safe(caplog.text)


class Refusing:
    """A provider whose server quotes a recipient's address (and a control character) in its refusal."""

    name = "fake"

    def __init__(self, error):
        self.error = error

    def send_batch(self, batch):
        raise self.error


@pytest.mark.parametrize("error", [
    ProviderRefused(f"554 5.7.1 <{ADDRESS}>: Relay access denied{CONTROLS}", provider="fake", payload=None),
    ProviderUnavailable(f"421 4.7.0 <{ADDRESS}> try again later{CONTROLS}", provider="fake", payload=None),
])
def test_provider_errors_quoting_a_recipient_are_logged_masked(error, caplog, settings):
    settings.SEND_PROVIDER_RETRIES, settings.SEND_BACKOFF_SECONDS = 1, 0
    batch = make_batch([(1, ADDRESS, "John", "Doe", {})])

    with caplog.at_level(logging.INFO, logger="campaigns"), pytest.raises(type(error)):
        send_with_fallback(batch, [Refusing(error)], sleep=lambda seconds: None)

    assert "j***@example.org" in caplog.text
    assert_log_safe(caplog.text)


@pytest.mark.django_db
def test_unsubscribing_logs_no_address(caplog):
    log = DeliveryLogFactory(email=ADDRESS, status=DeliveryLog.Status.SENT)
    with caplog.at_level(logging.DEBUG):
        Client().get(signed_links.unsubscribe_url(log.pk).split("/", 3)[3].join(["/", ""]))
        response = Client().post("/" + signed_links.unsubscribe_url(log.pk).split("/", 3)[3],
                                 data="List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    assert ADDRESS not in caplog.text


def test_for_log_is_escape_of_mask():
    assert for_log(f"{ADDRESS}\n") == "j***@example.org\\x0a"
    assert RecipientImport  # imported for the fixtures above


def test_the_sendgrid_key_in_python_http_clients_debug_log_is_masked(fake_sendgrid, settings):
    """Issue 22, item 11: at DEBUG, python_http_client logs each request's headers, the API key among them."""
    import io
    import logging.config

    from django.conf import settings as django_settings

    from campaigns.sending.providers.sendgrid import SendGridProvider

    logging.config.dictConfig(django_settings.LOGGING)  # as production configures it (a test may have changed it)
    [console] = [h for h in logging.getLogger().handlers if any(isinstance(f, LogSafeFilter) for f in h.filters)]
    library = logging.getLogger("python_http_client")
    stream = io.StringIO()
    previous = console.setStream(stream)
    level, console_level = library.level, console.level
    library.setLevel(logging.DEBUG)
    console.setLevel(logging.DEBUG)
    try:
        SendGridProvider(api_key=settings.SENDGRID_API_KEY).send_batch(
            make_batch([(1, ADDRESS, "John", "Doe", {})]))
        sent = stream.getvalue()
        # The provider posts its bytes body itself (issue 26), so the library no longer logs the request's
        # headers; were any code to log them as the library did, the filter masks the key.
        library.debug("HEADERS: %s", {"Authorization": f"Bearer {settings.SENDGRID_API_KEY}"})
    finally:
        library.setLevel(level)
        console.setLevel(console_level)
        console.setStream(previous)
    written = stream.getvalue()
    assert "SendGrid accepted 1 messages" in sent and "Authorization" not in sent  # logged at DEBUG, no headers
    assert fake_sendgrid.api_key.split(".", 1)[1] not in written
    assert "'Authorization': 'Bearer ***'" in written
    assert_log_safe(written)
