"""SMTP capture sink for development, tests and benchmarks.

    python -m localservers.smtp_sink --host 127.0.0.1 --port 1025 --maildir var/mail

Accepts any sender and recipient, offers AUTH without TLS and accepts any
credentials (so Django's SMTP backend with EMAIL_HOST_USER set works), or
with --password PW only that password (535 for any other), and never offers
STARTTLS.  Every accepted message becomes one file in --maildir,
named ``<time_ns>-<pid>-<seq>.eml`` (unique and sortable), written to a
dot-prefixed temporary name and then renamed into place, with the envelope
prepended as ``X-Sink-Mail-From:`` and ``X-Sink-Rcpt-To:`` (comma-separated)
headers.  Files are not fsynced: this is a sink, not a mail store.

Failure modes for tests, from flags or at runtime from a JSON control file:

    --reject-rcpt REGEX   RCPT TO matching REGEX gets 550 (permanent)
    --defer-rcpt REGEX    RCPT TO matching REGEX gets 451 (temporary)
    --drop-after N        on each connection, once N messages have been
                          stored, the next MAIL FROM closes the connection
                          without a reply (0 = never)
    --rcpt-log PATH       append every accepted RCPT TO address to PATH, one
                          a line, as it is accepted (what the sink saw or had
                          in flight, for crash tests)

More faults, from the control file only (the chaos run, tests/chaos/, draws them):

    slow_seconds          wait this long before answering each MAIL FROM (a
                          slow server)
    refuse                refuse us, whatever the recipient: "relay" (554
                          5.7.1 at RCPT), "sender" (550 5.1.0 Sender address
                          rejected, at RCPT) or "auth" (535 to AUTH)
    fault_rcpt, fault_at, fault_reply, hang_seconds
                          for a transaction with a recipient matching
                          fault_rcpt (a regex), at fault_at ("rcpt": its RCPT
                          TO; "data": after its content) answer fault_reply:
                          "421" (then close; after the content the message is
                          not stored), "drop" (close without a reply; after
                          the content the message is stored first) or "hang"
                          (wait hang_seconds, then 250; after the content the
                          message is stored first)
    mail_421_every        every Nth MAIL FROM since the control file was
                          loaded gets 421 and the connection closes
    throttle_rcpt, throttle_times
                          a mailbox provider throttling us (Yahoo's TSS04): the
                          first throttle_times RCPT TO matching throttle_rcpt (a
                          regex) since the control file was written get "421
                          4.7.0 [TSS04] ..." and the connection closes; then
                          they are accepted (throttle_times 0: always)

Regexes are matched with ``re.search``, case-insensitively, against the bare
address.  The control file (``--control-file``, default
``<parent of maildir>/sink-control.json``) holds the same settings as
``{"reject_rcpt": "bounce.*@", "defer_rcpt": null, "drop_after": 3}``.  It is
re-read whenever it changes (checked at every MAIL FROM); keys it holds
override the flags, keys it lacks fall back to them, and deleting the file
returns to the flags.  ``write_control()`` writes it atomically, with all
three keys, so it replaces the flags entirely.

Tests read what was captured with ``read_messages(maildir)`` and
``count_messages(maildir)``.
"""

import argparse
import asyncio
import email
import email.policy
import json
import os
import re
import signal
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from aiosmtpd.smtp import SMTP, AuthResult

MESSAGE_SUFFIX = ".eml"
COUNT_LOG_INTERVAL_SECONDS = 5


@dataclass(frozen=True)
class FaultSettings:
    reject_rcpt: "re.Pattern | None" = None
    defer_rcpt: "re.Pattern | None" = None
    drop_after: int = 0
    slow_seconds: float = 0.0
    refuse: "str | None" = None
    fault_rcpt: "re.Pattern | None" = None
    fault_at: str = "rcpt"
    fault_reply: str = "421"
    hang_seconds: float = 30.0
    mail_421_every: int = 0
    throttle_rcpt: "re.Pattern | None" = None
    throttle_times: int = 0


REFUSALS = {
    "relay": "554 5.7.1 <{address}>: Relay access denied",
    "sender": "550 5.1.0 <{sender}>: Sender address rejected: User unknown in local recipient table",
}

def _compile(pattern):
    return re.compile(pattern, re.IGNORECASE) if pattern else None


def default_control_file(maildir):
    return Path(maildir).resolve().parent / "sink-control.json"


def write_control(control_file, reject_rcpt=None, defer_rcpt=None, drop_after=0, **more_faults):
    """Atomically replace the sink's control file (used by tests and ops); MORE_FAULTS are the control
    file's other keys (see the module docstring)."""
    control_file = Path(control_file)
    tmp = control_file.with_name(f".{control_file.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(
        {"reject_rcpt": reject_rcpt, "defer_rcpt": defer_rcpt, "drop_after": drop_after, **more_faults}
    ))
    os.replace(tmp, control_file)


class ControlFile:
    """Fault settings from the command line, overridden by the control file."""

    def __init__(self, path, flag_values):
        self.path = Path(path)
        self.flag_values = flag_values
        self._stamp = None
        self.settings = self._build({})

    def _build(self, overrides):
        values = {**self.flag_values, **overrides}
        return FaultSettings(
            reject_rcpt=_compile(values.get("reject_rcpt")),
            defer_rcpt=_compile(values.get("defer_rcpt")),
            drop_after=int(values.get("drop_after") or 0),
            slow_seconds=float(values.get("slow_seconds") or 0),
            refuse=values.get("refuse") or None,
            fault_rcpt=_compile(values.get("fault_rcpt")),
            fault_at=values.get("fault_at") or "rcpt",
            fault_reply=values.get("fault_reply") or "421",
            hang_seconds=float(values.get("hang_seconds") or 30),
            mail_421_every=int(values.get("mail_421_every") or 0),
            throttle_rcpt=_compile(values.get("throttle_rcpt")),
            throttle_times=int(values.get("throttle_times") or 0),
        )

    def current(self):
        try:
            st = os.stat(self.path)
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp:
            self._stamp = stamp
            self.settings = self._load() if stamp else self._build({})
        return self.settings

    def _load(self):
        try:
            overrides = json.loads(self.path.read_text())
            settings = self._build(overrides)
        except (OSError, ValueError, TypeError, re.error) as exc:
            # A half-edited control file must not kill the sink; keep the flags.
            print(f"SMTP sink: ignoring bad control file {self.path}: {exc}", flush=True)
            return self._build({})
        print(f"SMTP sink: control file loaded: {overrides}", flush=True)
        return settings


class MaildirWriter:
    def __init__(self, maildir):
        self.maildir = os.fspath(maildir)
        os.makedirs(self.maildir, exist_ok=True)
        self.prefix = f"-{os.getpid()}-"
        self.seq = 0

    def write(self, mail_from, rcpt_tos, content):
        self.seq += 1
        name = f"{time.time_ns()}{self.prefix}{self.seq:09d}{MESSAGE_SUFFIX}"
        envelope = (
            f"X-Sink-Mail-From: {mail_from or '<>'}\r\n"
            f"X-Sink-Rcpt-To: {', '.join(rcpt_tos)}\r\n"
        ).encode("utf-8")
        tmp_path = os.path.join(self.maildir, "." + name)
        with open(tmp_path, "wb") as f:
            f.write(envelope + content)  # one syscall; copying is cheaper here
        os.replace(tmp_path, os.path.join(self.maildir, name))


def counted_under(counter, settings):
    """The count of COUNTER, a (settings, count) pair, if it counts under SETTINGS; 0 once they were loaded again."""
    owner, count = counter
    return count if owner is settings else 0


class SinkHandler:
    def __init__(self, writer, control, rcpt_log=None):
        self.writer = writer
        self.control = control
        self.stored = 0
        self.mails = (None, 0)  # (the settings it counts for, MAIL FROMs under them)
        self.throttled = (None, 0)  # (the settings it counts for, RCPTs throttled under them)
        self.rcpt_log = open(rcpt_log, "a", buffering=1, encoding="utf-8") if rcpt_log else None

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        settings = self.control.current()
        drop_after = settings.drop_after
        if drop_after and getattr(session, "sink_stored", 0) >= drop_after:
            server.transport.close()
            return "421 4.3.0 closing connection"  # never reaches the client
        if settings.slow_seconds:
            await asyncio.sleep(settings.slow_seconds)
        # Counted from the control file's loading, so a test's Nth MAIL does not depend on the tests before.
        mails = counted_under(self.mails, settings) + 1
        self.mails = (settings, mails)
        if settings.mail_421_every and mails % settings.mail_421_every == 0:
            return self._closing(server, "421 4.7.0 Try again later, closing connection")
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        settings = self.control.settings
        if settings.refuse in REFUSALS:
            return REFUSALS[settings.refuse].format(address=address, sender=envelope.mail_from)
        if settings.reject_rcpt and settings.reject_rcpt.search(address):
            return f"550 5.1.1 <{address}>: recipient rejected by sink"
        if settings.defer_rcpt and settings.defer_rcpt.search(address):
            return f"451 4.3.0 <{address}>: recipient deferred by sink"
        if settings.throttle_rcpt and settings.throttle_rcpt.search(address):
            count = counted_under(self.throttled, settings)
            if not settings.throttle_times or count < settings.throttle_times:
                self.throttled = (settings, count + 1)
                return self._closing(server, "421 4.7.0 [TSS04] Messages from 127.0.0.1 temporarily deferred due "
                                             "to unexpected volume or user complaints")
        if settings.fault_at == "rcpt" and settings.fault_rcpt and settings.fault_rcpt.search(address):
            if settings.fault_reply == "421":
                return self._closing(server, "421 4.4.2 Connection timed out, closing")
            if settings.fault_reply == "drop":
                server.transport.close()
                return "421 4.4.2 closing connection"  # never reaches the client
            await asyncio.sleep(settings.hang_seconds)
        envelope.rcpt_tos.append(address)
        if self.rcpt_log:
            self.rcpt_log.write(address + "\n")
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        settings = self.control.settings
        fault = settings.fault_at == "data" and settings.fault_rcpt and any(
            settings.fault_rcpt.search(address) for address in envelope.rcpt_tos)
        if fault and settings.fault_reply == "421":
            return self._closing(server, "421 4.4.2 Lost connection to the next hop, closing")
        self.writer.write(envelope.mail_from, envelope.rcpt_tos, envelope.original_content)
        session.sink_stored = getattr(session, "sink_stored", 0) + 1
        self.stored += 1
        if fault and settings.fault_reply == "drop":
            server.transport.close()  # stored, but the client never hears so
            return "250 2.0.0 Message stored"
        if fault:
            await asyncio.sleep(settings.hang_seconds)
        return "250 2.0.0 Message stored"

    @staticmethod
    def _closing(server, reply):
        """Answer REPLY, then close the connection (as a server shutting a session down does)."""
        asyncio.get_running_loop().call_soon(server.transport.close)
        return reply


def accept_password(password, control):
    """An authenticator that accepts any user name with PASSWORD only, or any password when PASSWORD is
    None (535 otherwise, and always while the control file says refuse "auth")."""
    expected = password.encode("utf-8") if password else None

    def authenticate(server, session, envelope, mechanism, auth_data):
        if control.current().refuse == "auth":
            return AuthResult(success=False, handled=False)
        return AuthResult(success=expected is None or getattr(auth_data, "password", None) == expected, handled=False)

    return authenticate


async def serve(host, port, maildir, control_file, flag_values, rcpt_log=None, password=None):
    control = ControlFile(control_file, flag_values)
    handler = SinkHandler(MaildirWriter(maildir), control, rcpt_log)
    loop = asyncio.get_running_loop()

    def make_protocol():
        return SMTP(
            handler,
            hostname="smtp-sink.local",  # avoids a DNS lookup per connection
            enable_SMTPUTF8=True,
            auth_require_tls=False,
            authenticator=accept_password(password, control),
            loop=loop,
        )

    server = await loop.create_server(make_protocol, host, port)
    port = server.sockets[0].getsockname()[1]
    print(f"SMTP sink listening on {host}:{port}, writing to {maildir}", flush=True)

    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    logged = 0
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), COUNT_LOG_INTERVAL_SECONDS)
        except asyncio.TimeoutError:
            pass
        if handler.stored != logged:
            logged = handler.stored
            print(f"SMTP sink: {logged} messages stored", flush=True)

    server.close()
    await server.wait_closed()
    print(f"SMTP sink stopped after storing {handler.stored} messages", flush=True)


def message_files(maildir):
    try:
        names = os.listdir(maildir)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.endswith(MESSAGE_SUFFIX) and not n.startswith("."))


def count_messages(maildir):
    return len(message_files(maildir))


def read_messages(maildir):
    """Every stored message, oldest first, parsed with the default policy."""
    messages = []
    for name in message_files(maildir):
        with open(os.path.join(maildir, name), "rb") as f:
            messages.append(email.message_from_binary_file(f, policy=email.policy.default))
    return messages


def main(argv=None):
    # aiosmtpd warns on every AUTH about its own legacy attribute; nothing to act on.
    warnings.filterwarnings("ignore", message="Session.login_data is deprecated")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--maildir", default="var/mail")
    parser.add_argument("--control-file", help="default: <parent of maildir>/sink-control.json")
    parser.add_argument("--reject-rcpt", metavar="REGEX", help="550 for matching RCPT TO")
    parser.add_argument("--defer-rcpt", metavar="REGEX", help="451 for matching RCPT TO")
    parser.add_argument("--drop-after", type=int, default=0, metavar="N",
                        help="drop each connection after N stored messages")
    parser.add_argument("--rcpt-log", metavar="PATH", help="append each accepted RCPT TO address to PATH")
    parser.add_argument("--password", help="accept AUTH with this password only (any user name); default: any")
    args = parser.parse_args(argv)
    flag_values = {
        "reject_rcpt": args.reject_rcpt,
        "defer_rcpt": args.defer_rcpt,
        "drop_after": args.drop_after,
    }
    control_file = args.control_file or default_control_file(args.maildir)
    asyncio.run(serve(args.host, args.port, args.maildir, control_file, flag_values, args.rcpt_log, args.password))


if __name__ == "__main__":
    sys.exit(main())
