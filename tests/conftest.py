from dataclasses import dataclass
from pathlib import Path

import pytest
import redis as redis_lib
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.management import call_command

from localservers import sendgrid_api, smtp_sink
from localservers.serving import running
from tests.support.dns_server import LocalDns
from tests.support.factories import UserFactory
from tests.support.workers import worker_for_tests

# Where a test's DNS checks go when it starts no local DNS server: a local port where nothing
# answers, so that no lookup of the suite ever reaches the internet.
NO_DNS = "127.0.0.1:9"


def pytest_configure(config):
    # Django's "Speeding up the tests": the default hasher is slow by design (a quarter of a second of CPU
    # per password, in every UserFactory), and the suite makes well over a thousand staff users. The
    # production hasher stays second, for passwords that a server process (gunicorn) has to check.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher",
                                 "django.contrib.auth.hashers.PBKDF2PasswordHasher"]


def pytest_addoption(parser):
    group = parser.getgroup("chaos", "the seeded chaos run (tests/chaos, make chaos)")
    group.addoption("--chaos-seeds", help='seeds for tests/chaos/test_chaos.py::test_seed: "1-50", "7", "3,9"')
    group.addoption("--chaos-knobs", default="", help="comma-separated knobs of tests/chaos/scenario.py")


@pytest.fixture
def redis_client():
    client = redis_lib.Redis.from_url(settings.REDIS_URL)
    yield client
    client.close()


@pytest.fixture(autouse=True)
def dns_stays_local(settings, worker_env):
    """Every DNS check of every test asks a local server (`dns_server`, or NO_DNS)."""
    settings.DNS_RESOLVER, settings.DNS_TIMEOUT_SECONDS = NO_DNS, 1
    worker_env.update(DNS_RESOLVER=NO_DNS, DNS_TIMEOUT_SECONDS=1)


@pytest.fixture(scope="session")
def dns_process():
    server = LocalDns().start()
    yield server
    server.stop()


@pytest.fixture
def dns_server(dns_process, settings, worker_env, dns_stays_local):
    """The local DNS server, with no records; settings and worker_env point the DNS checks at it.
    Tests write the zones: dns_server.txt(name, text), dns_server.add(zone file lines)."""
    dns_process.clear()
    settings.DNS_RESOLVER = dns_process.address
    worker_env["DNS_RESOLVER"] = dns_process.address
    return dns_process


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
    """Start real Celery worker processes: start_worker(["scheduler", "senders"], concurrency=2)
    (app_module="tests.x" runs a test-only wrapper of the app instead). It returns once the worker
    answers; wait=False returns at once, and the next start_worker() waits for both (they boot together)."""
    workers, booting = [], []

    def start(queues=("scheduler", "senders"), concurrency=2, app_module="mailer_project", module="celery",
              wait=True, **env):
        worker = worker_for_tests(queues, tmp_path, concurrency, app_module, module, **{**worker_env, **env}).launch()
        workers.append(worker)
        booting.append(worker)
        if wait:
            while booting:
                booting.pop(0).wait_ready()
        return worker

    yield start
    # The test is over: SIGKILL (a warm shutdown takes a second or two per worker, and nothing after the
    # test depends on it; tests of shutdown stop their workers themselves).
    for worker in workers:
        worker.kill()
        print(f"--- log of worker {worker.name} (shown when the test fails) ---\n{worker.log_tail(60)}")


@dataclass
class SmtpSink:
    port: int
    maildir: Path
    rcpt_log: Path

    def accepted_rcpts(self):
        """Every address the sink accepted a RCPT TO for, in order: what it saw or had in flight."""
        try:
            return self.rcpt_log.read_text().split()
        except FileNotFoundError:
            return []

    def receive_times(self):
        """When each stored message arrived (the sink's clock, epoch seconds), oldest first."""
        return [int(name.split("-", 1)[0]) / 1e9 for name in smtp_sink.message_files(self.maildir)]

    @property
    def control_file(self):
        return smtp_sink.default_control_file(self.maildir)

    def messages(self):
        return smtp_sink.read_messages(self.maildir)

    def recipients(self):
        return [message["X-Sink-Rcpt-To"] for message in self.messages()]

    def count(self):
        return smtp_sink.count_messages(self.maildir)

    def set_faults(self, reject_rcpt=None, defer_rcpt=None, drop_after=0):
        """reject_rcpt=regex (550), defer_rcpt=regex (451), drop_after=N messages per connection."""
        smtp_sink.write_control(self.control_file, reject_rcpt=reject_rcpt, defer_rcpt=defer_rcpt,
                                drop_after=drop_after)

    def clear(self):
        for path in self.maildir.glob("*.eml"):
            path.unlink()
        self.control_file.unlink(missing_ok=True)
        self.rcpt_log.write_text("")  # the sink appends, so truncating is safe


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

    def recipients(self):
        return [address for record in self.records() for address in record["to"]]

    def fail(self, mode, count=-1, **options):
        """The next COUNT mail/send requests answer MODE ("500", "429", "401", "403", "hang"); -1: until reset."""
        return sendgrid_api.set_fault(self.url, mode, count=count, **options)

    def stats(self):
        return sendgrid_api.get_stats(self.url)

    def clear(self):
        sendgrid_api.reset(self.url)
        self.record_file.write_text("")  # the server appends, so truncating is safe


# The two local servers run once per session as real processes; each test starts them empty.
# (Clearing happens at set-up: workers of the previous test have stopped by then.)

@pytest.fixture(scope="session")
def sink_process(tmp_path_factory):
    base = tmp_path_factory.mktemp("smtp-sink")
    with running("smtp_sink", "--maildir", base / "mail", "--rcpt-log", base / "rcpt.log",
                 log_path=base / "sink.log") as (_, port):
        yield SmtpSink(port, base / "mail", base / "rcpt.log")


@pytest.fixture(scope="session")
def second_sink_process(tmp_path_factory):
    """Another SMTP sink, for tests with two SMTP servers (two sending accounts)."""
    base = tmp_path_factory.mktemp("smtp-sink-2")
    with running("smtp_sink", "--maildir", base / "mail", "--rcpt-log", base / "rcpt.log",
                 log_path=base / "sink.log") as (_, port):
        yield SmtpSink(port, base / "mail", base / "rcpt.log")


SINK_PASSWORD = "the-right-password"


@pytest.fixture(scope="session")
def password_sink_process(tmp_path_factory):
    """An SMTP sink that accepts AUTH with SINK_PASSWORD only (535 for any other)."""
    base = tmp_path_factory.mktemp("smtp-sink-password")
    with running("smtp_sink", "--maildir", base / "mail", "--rcpt-log", base / "rcpt.log", "--password",
                 SINK_PASSWORD, log_path=base / "sink.log") as (_, port):
        yield SmtpSink(port, base / "mail", base / "rcpt.log")


@pytest.fixture
def second_sink(second_sink_process):
    second_sink_process.clear()
    return second_sink_process


@pytest.fixture
def password_sink(password_sink_process):
    password_sink_process.clear()
    return password_sink_process


@pytest.fixture(scope="session")
def sendgrid_process(tmp_path_factory):
    base = tmp_path_factory.mktemp("fake-sendgrid")
    server = FakeSendGrid(0, base / "sendgrid.jsonl")
    with running("sendgrid_api", "--record-file", server.record_file, "--api-key", server.api_key, "--render",
                 log_path=base / "sendgrid.log") as (_, port):
        server.port = port
        yield server


@pytest.fixture
def smtp_sink_server(sink_process, settings, worker_env):
    """The SMTP capture sink, empty; settings and worker_env point SMTP at it."""
    sink_process.clear()
    point_smtp_at(sink_process.port, settings, worker_env)
    return sink_process


def point_smtp_at(port, settings, worker_env):
    """Send this test's SMTP mail, in-process and in its workers, to the server on 127.0.0.1:PORT."""
    smtp = {"EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": port, "EMAIL_HOST_USER": "",
            "EMAIL_HOST_PASSWORD": "", "EMAIL_USE_TLS": False, "EMAIL_TIMEOUT": 10}
    for name, value in smtp.items():
        setattr(settings, name, value)
    worker_env.update(smtp)


@pytest.fixture
def no_sendgrid(settings, worker_env):
    settings.SENDGRID_API_KEY = ""
    worker_env["SENDGRID_API_KEY"] = ""


@pytest.fixture
def fake_sendgrid(sendgrid_process, settings, worker_env):
    """The fake SendGrid API (rendering each personalization), empty and fault-free; settings point at it."""
    sendgrid_process.clear()
    api = {"SENDGRID_API_KEY": sendgrid_process.api_key, "SENDGRID_API_HOST": sendgrid_process.url,
           "SENDGRID_TIMEOUT_SECONDS": 10}
    for name, value in api.items():
        setattr(settings, name, value)
    worker_env.update(api)
    return sendgrid_process


@pytest.fixture
def member(client):
    """member(group) -> a client logged in as a member of that staff group only."""
    call_command("create_staff_groups", verbosity=0)

    def login(group):
        user = UserFactory()
        user.groups.add(Group.objects.get(name=group))
        client.force_login(user)
        client.user = user
        return client

    return login
