"""The two local mail servers as real processes, and batches built the way the pipeline builds them.

`sink` and `fake_sendgrid` start their server once per session, reset it before each test and
point the settings (EMAIL_HOST/PORT, SENDGRID_API_HOST/KEY) at it.
"""

import time

import pytest

from campaigns.localservers import free_port, running
from campaigns.localservers import sendgrid_api
from campaigns.localservers.smtp_sink import read_messages, write_control
from campaigns.rendering import compile_campaign, recipient_context
from campaigns.sending.providers.base import Batch, OutgoingMessage

SENDGRID_KEY = "SG.test-key"


class Sink:
    def __init__(self, port, maildir, control_file):
        self.port = port
        self.maildir = maildir
        self.control_file = control_file

    def clear(self):
        for path in self.maildir.glob("*.eml"):
            path.unlink()
        self.control_file.unlink(missing_ok=True)

    def faults(self, reject_rcpt=None, defer_rcpt=None, drop_after=0):
        write_control(self.control_file, reject_rcpt=reject_rcpt, defer_rcpt=defer_rcpt, drop_after=drop_after)

    def messages(self):
        return read_messages(self.maildir)

    def recipients(self):
        return [message["X-Sink-Rcpt-To"] for message in self.messages()]


class FakeSendGrid:
    def __init__(self, url, record_file):
        self.url = url
        self.record_file = record_file

    def clear(self):
        sendgrid_api.reset(self.url)
        self.record_file.write_text("")  # the server appends, so truncating is safe

    def fault(self, mode, count=-1, **options):
        return sendgrid_api.set_fault(self.url, mode, count, **options)

    def stats(self):
        return sendgrid_api.get_stats(self.url)

    def records(self):
        return sendgrid_api.read_records(self.record_file)

    def recipients(self):
        return [address for record in self.records() for address in record["to"]]


@pytest.fixture(scope="session")
def sink_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("smtp-sink")
    maildir = base / "mail"
    with running("smtp_sink", "--maildir", maildir, log_path=base / "sink.log") as (_, port):
        yield Sink(port, maildir, base / "sink-control.json")


@pytest.fixture(scope="session")
def sendgrid_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("fake-sendgrid")
    record_file = base / "sendgrid.jsonl"
    with running("sendgrid_api", "--record-file", record_file, "--api-key", SENDGRID_KEY, "--render",
                 log_path=base / "sendgrid.log") as (_, port):
        yield FakeSendGrid(f"http://127.0.0.1:{port}", record_file)


@pytest.fixture
def sink(sink_server, settings):
    sink_server.clear()
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = sink_server.port
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_TIMEOUT = 10
    yield sink_server
    sink_server.clear()


@pytest.fixture
def fake_sendgrid(sendgrid_server, settings):
    sendgrid_server.clear()
    settings.SENDGRID_API_HOST = sendgrid_server.url
    settings.SENDGRID_API_KEY = SENDGRID_KEY
    settings.SENDGRID_TIMEOUT_SECONDS = 10
    yield sendgrid_server
    sendgrid_server.clear()


@pytest.fixture
def closed_port():
    """A port nothing listens on: connections to it are refused."""
    return free_port()


class SleepRecorder:
    """Stands in for time.sleep: records each wait instead of waiting."""

    def __init__(self):
        self.waits = []

    def __call__(self, seconds):
        self.waits.append(seconds)


@pytest.fixture
def no_sleep():
    return SleepRecorder()


SUBJECT = 'News for {{ first_name|default:"you" }}'
HTML = ('<p>Hi {{ first_name|default:"there" }} {{ last_name }}, your code is <b>{{ code }}</b>.</p>'
        '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>')
TEXT = "Hi {{ first_name|default:\"there\" }}, your code is {{ code }}.\nUnsubscribe: {{ unsubscribe_url }}\n"


def unsubscribe_url(delivery_id):
    return f"https://mail.example.com/u/{delivery_id}/signed-token"


def make_recipients(count, start=1):
    """(delivery_id, email, first_name, last_name, data) rows like the pipeline's claim returns."""
    return [(start + i, f"user{start + i}@example.com", f"User{start + i}", "Smith", {"code": f"C{start + i:04d}"})
            for i in range(count)]


def make_batch(recipients, campaign_id=42, from_email="Acme News <news@example.com>", reply_to="",
               subject=SUBJECT, html=HTML, text=TEXT, categories=("campaign-42",)):
    compiled = compile_campaign(subject, html, text)
    messages = [
        OutgoingMessage(delivery_id, email,
                        recipient_context(email, first, last, data, unsubscribe_url(delivery_id)))
        for delivery_id, email, first, last, data in recipients
    ]
    return Batch(campaign_id=campaign_id, from_email=from_email, reply_to=reply_to, compiled=compiled,
                 messages=messages, categories=tuple(categories))


@pytest.fixture
def batch_of():
    def build(count, **kwargs):
        return make_batch(make_recipients(count), **kwargs)
    return build


def wait_until(predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)
