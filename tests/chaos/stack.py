"""The chaos run's stack: the local providers (three SMTP sinks, two fake SendGrid APIs), each with its
own record of what it received, and the worker processes and beat, which the run kills and restarts.

Every server is started once per pytest session and emptied before each seed; the worker processes
are started per seed by tests/chaos/run.py (Processes), beat with `Beat` here.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from localservers import sendgrid_api, smtp_sink
from localservers.ports import log_tail
from localservers.serving import REPO_ROOT, running, stop_when_parent_dies


@dataclass
class Sink:
    name: str
    port: int
    maildir: Path
    rcpt_log: Path

    @property
    def control_file(self):
        return smtp_sink.default_control_file(self.maildir)

    def clear(self):
        for path in self.maildir.glob("*.eml"):
            path.unlink()
        self.control_file.unlink(missing_ok=True)
        self.rcpt_log.write_text("")  # the sink appends, so truncating is safe

    def set_faults(self, dead_pattern, settings):
        """The dead addresses are refused whatever else SETTINGS (control-file keys) say."""
        smtp_sink.write_control(self.control_file, reject_rcpt=dead_pattern, **settings)

    def accepted_rcpts(self):
        try:
            return set(self.rcpt_log.read_text().split())
        except FileNotFoundError:
            return set()

    def receipts(self):
        """[(campaign id, address, arrival time)] of every stored message, oldest first."""
        found = []
        for name, message in zip(smtp_sink.message_files(self.maildir), smtp_sink.read_messages(self.maildir)):
            campaign = message["X-Campaign-ID"]
            found.append((int(campaign) if campaign else None, message["X-Sink-Rcpt-To"].strip().lower(),
                          int(name.split("-", 1)[0]) / 1e9, int(message["X-Delivery-ID"] or 0)))
        return found


    def subjects(self):
        """{(campaign id, delivery id): the Subject it arrived with}."""
        found = {}
        for message in smtp_sink.read_messages(self.maildir):
            if message["X-Campaign-ID"] and message["X-Delivery-ID"]:
                found[(int(message["X-Campaign-ID"]), int(message["X-Delivery-ID"]))] = str(message["Subject"] or "")
        return found


@dataclass
class SendGridApi:
    name: str
    port: int
    record_file: Path
    api_key: str

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def clear(self):
        sendgrid_api.reset(self.url)
        self.record_file.write_text("")

    def set_faults(self, dead_pattern, settings):
        sendgrid_api.set_fault(self.url, **{"mode": "ok", **settings, "reject_to": dead_pattern})

    def in_flight(self):
        return {a.lower() for a in sendgrid_api.get_stats(self.url)["hung_recipients"]}

    def accepted_rcpts(self):
        """Every address of a request the API received, whatever its answer (a 400 naming it too): what
        it saw."""
        return {a.lower() for a in sendgrid_api.get_stats(self.url)["seen_recipients"] if a}

    def receipts(self):
        found = []
        for record in sendgrid_api.read_records(self.record_file):
            args = record.get("custom_args") or {}
            found.append((int(args["campaign_id"]) if args.get("campaign_id") else None, record["to"][0].lower(),
                          record["received_at"], int(args.get("delivery_id") or 0)))
        return found

    def subjects(self):
        found = {}
        for record in sendgrid_api.read_records(self.record_file):
            args = record.get("custom_args") or {}
            if args.get("campaign_id") and args.get("delivery_id"):
                found[(int(args["campaign_id"]), int(args["delivery_id"]))] = record.get("subject") or ""
        return found


@contextlib.contextmanager
def servers(base):
    """{name: Sink | SendGridApi} running until the block ends."""
    with contextlib.ExitStack() as stack:
        found = {}
        for name in ("sink1", "sink2", "sink3"):
            d = Path(base) / name
            d.mkdir(parents=True, exist_ok=True)
            _, port = stack.enter_context(running("smtp_sink", "--maildir", d / "mail", "--rcpt-log", d / "rcpt.log",
                                                  log_path=d / "sink.log"))
            found[name] = Sink(name, port, d / "mail", d / "rcpt.log")
        for name in ("sg1", "sg2"):
            d = Path(base) / name
            d.mkdir(parents=True, exist_ok=True)
            key = f"SG.chaos-{name}"
            _, port = stack.enter_context(running("sendgrid_api", "--record-file", d / "sendgrid.jsonl",
                                                  "--api-key", key, log_path=d / "sendgrid.log"))
            found[name] = SendGridApi(name, port, d / "sendgrid.jsonl", key)
        yield found


class Beat:
    """`celery -A mailer_project beat` with django-celery-beat's scheduler (the sweep's clock)."""

    def __init__(self, log_dir, env):
        self.log_path = Path(log_dir) / "beat.log"
        self.env = env
        self.proc = None

    def start(self):
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "mailer_project", "beat", "--loglevel", "INFO",
                 "--pidfile="], cwd=REPO_ROOT, env=self.env, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=stop_when_parent_dies)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)

    def log_tail(self, lines=20):
        return log_tail(self.log_path, lines)


def cpu_seconds(pids):
    """User + system CPU seconds used so far by PIDS (those still alive)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def dump(value):
    return json.dumps(value, indent=1, default=str)


def wait_until(predicate, timeout, every=0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    return predicate()
