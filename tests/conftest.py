from dataclasses import dataclass
from pathlib import Path

import pytest
import redis as redis_lib
from django.conf import settings

from campaigns.localservers import running, sendgrid_api, smtp_sink
from tests.workers import CeleryWorker, service_env


@pytest.fixture
def redis_client():
    client = redis_lib.Redis.from_url(settings.REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def clean_broker(redis_client):
    """An empty broker and cache, so no task left over from an earlier test is delivered."""
    redis_client.flushdb()
    yield redis_client


@pytest.fixture
def worker_env():
    """Settings for worker processes started by `start_worker`, as environment variables.

    Tests (and fixtures such as `smtp_sink`) add to it before starting workers.
    """
    return {}


@pytest.fixture
def start_worker(transactional_db, clean_broker, tmp_path, worker_env):
    """Start real Celery worker processes: start_worker(["scheduler", "senders"], concurrency=2)."""
    workers = []

    def start(queues=("scheduler", "senders"), concurrency=2, **env):
        worker = CeleryWorker(list(queues), tmp_path, concurrency=concurrency,
                              env=service_env(**{**worker_env, **env})).start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()
        print(f"--- log of worker {worker.name} (shown when the test fails) ---\n{worker.log_tail(60)}")


@dataclass
class SmtpSink:
    port: int
    maildir: Path

    def messages(self):
        return smtp_sink.read_messages(self.maildir)

    def count(self):
        return smtp_sink.count_messages(self.maildir)

    def set_faults(self, **faults):
        """reject_rcpt=regex (550), defer_rcpt=regex (451), drop_after=N messages per connection."""
        smtp_sink.write_control(smtp_sink.default_control_file(self.maildir), **faults)


@dataclass
class FakeSendGrid:
    port: int
    record_file: Path
    api_key: str = "SG.test-key"

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def records(self):
        return sendgrid_api.read_records(self.record_file)

    def fail(self, mode, count=-1, **options):
        sendgrid_api.set_fault(self.url, mode, count=count, **options)

    def stats(self):
        return sendgrid_api.get_stats(self.url)


@pytest.fixture
def smtp_sink_server(tmp_path, settings, worker_env):
    """The SMTP capture sink as a real process; settings and worker_env point SMTP at it."""
    maildir = tmp_path / "mail"
    with running("smtp_sink", "--maildir", maildir, log_path=tmp_path / "sink.log") as (_, port):
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
        settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
        settings.EMAIL_USE_TLS = False
        worker_env.update(EMAIL_HOST="127.0.0.1", EMAIL_PORT=port, EMAIL_HOST_USER="", EMAIL_HOST_PASSWORD="",
                          EMAIL_USE_TLS="False")
        yield SmtpSink(port, maildir)


@pytest.fixture
def no_sendgrid(settings, worker_env):
    settings.SENDGRID_API_KEY = ""
    worker_env["SENDGRID_API_KEY"] = ""


@pytest.fixture
def fake_sendgrid(tmp_path, settings, worker_env):
    """The fake SendGrid API as a real process (rendering each personalization); settings point at it."""
    server = FakeSendGrid(0, tmp_path / "sendgrid.jsonl")
    with running("sendgrid_api", "--record-file", server.record_file, "--api-key", server.api_key, "--render",
                 log_path=tmp_path / "sendgrid.log") as (_, port):
        server.port = port
        settings.SENDGRID_API_KEY, settings.SENDGRID_API_HOST = server.api_key, server.url
        worker_env.update(SENDGRID_API_KEY=server.api_key, SENDGRID_API_HOST=server.url)
        yield server
