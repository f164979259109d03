"""An SMTP server (aiosmtpd) whose replies a test scripts: relays that refuse us, mailboxes that do
not exist, servers without SMTPUTF8. It runs in a thread of the test process, so worker processes
reach it over TCP like any relay, and it records what it accepted.

    def test_x(scripted_smtp):
        scripted_smtp.refuse_rcpt(".", "554 5.7.1 Relay access denied")

Import the fixture into a test module with ``from tests.support.scripted_smtp import scripted_smtp``.
"""

import re
import threading

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from localservers.ports import free_port
from tests.conftest import point_smtp_at


class ScriptedHandler:
    def __init__(self, pipelining=False):
        self.pipelining = pipelining  # offer PIPELINING (RFC 2920) in the EHLO reply
        self.lock = threading.Lock()
        self.mail_refusal = None  # (messages accepted before it starts, reply)
        self.rcpt_refusals = []  # (regex on the address, reply)
        self.content_refusals = []  # (regex on the address, reply after the content)
        self.data_command_refusal = None  # the reply to every DATA command (a 421 closes the connection)
        self.received = []  # (envelope sender, [recipients], mail options) of each accepted message
        self.envelopes = []  # (client's address and port, whether RCPT TO had arrived behind MAIL FROM)
        self.peers = []  # the client's (address, port) of each accepted message: which connection

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        # RESPONSES ends with its "250 HELP" line.
        return responses[:-1] + ["250-PIPELINING"] + responses[-1:] if self.pipelining else responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        # What the client wrote after MAIL FROM without waiting for its reply is in the reader's buffer.
        with self.lock:
            self.envelopes.append((session.peer, bytes(server._reader._buffer).startswith(b"RCPT TO")))
        if self.mail_refusal and len(self.received) >= self.mail_refusal[0]:
            return self.mail_refusal[1]
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        for pattern, reply in self.rcpt_refusals:
            if pattern.search(address):
                return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        for pattern, reply in self.content_refusals:
            if any(pattern.search(address) for address in envelope.rcpt_tos):
                return reply
        with self.lock:
            self.received.append((envelope.mail_from, list(envelope.rcpt_tos), list(envelope.mail_options)))
            self.peers.append(session.peer)
        return "250 2.0.0 OK"


class ScriptedServer(SMTP):
    """aiosmtpd's SMTP with the DATA command's own reply scriptable (its handlers only see the content)."""

    async def smtp_DATA(self, arg):
        reply = self.event_handler.data_command_refusal
        if reply is None or not (self.envelope and self.envelope.rcpt_tos):
            return await super().smtp_DATA(arg)
        await self.push(reply)
        if reply.startswith("421"):
            self.transport.close()


class ScriptedController(Controller):
    def factory(self):
        return ScriptedServer(self.handler, **self.SMTP_kwargs)


class ScriptedSmtp:
    def __init__(self, smtputf8=True, pipelining=False):
        self.handler = ScriptedHandler(pipelining)
        self.port = free_port()
        self.controller = ScriptedController(self.handler, hostname="127.0.0.1", port=self.port,
                                             server_hostname="scripted.local", enable_SMTPUTF8=smtputf8)

    def refuse_mail(self, reply, after=0):
        """MAIL FROM gets REPLY once AFTER messages have been accepted."""
        self.handler.mail_refusal = (after, reply)

    def refuse_rcpt(self, pattern, reply):
        self.handler.rcpt_refusals.append((re.compile(pattern, re.IGNORECASE), reply))

    def refuse_content(self, pattern, reply):
        self.handler.content_refusals.append((re.compile(pattern, re.IGNORECASE), reply))

    def refuse_data_command(self, reply):
        """Every DATA command gets REPLY instead of 354 (e.g. "421 4.3.2 shutting down")."""
        self.handler.data_command_refusal = reply

    def recipients(self):
        with self.handler.lock:
            return [address for _sender, addresses, _options in self.handler.received for address in addresses]

    def connections_used(self):
        """How many connections the accepted messages came over."""
        with self.handler.lock:
            return len(set(self.handler.peers))

    def pipelined_envelopes(self):
        """For each MAIL FROM, whether its RCPT TO was already sent behind it (PIPELINING)."""
        with self.handler.lock:
            return [pipelined for _peer, pipelined in self.handler.envelopes]

    def mail_options(self):
        with self.handler.lock:
            return [options for _sender, _addresses, options in self.handler.received]


def _serve(settings, worker_env, smtputf8, pipelining=False):
    server = ScriptedSmtp(smtputf8=smtputf8, pipelining=pipelining)
    server.controller.start()
    point_smtp_at(server.port, settings, worker_env)
    return server


@pytest.fixture
def scripted_smtp(settings, worker_env):
    """A scripted SMTP server that offers SMTPUTF8; settings and worker_env point SMTP at it."""
    server = _serve(settings, worker_env, smtputf8=True)
    yield server
    server.controller.stop()


@pytest.fixture
def scripted_smtp_without_smtputf8(settings, worker_env):
    server = _serve(settings, worker_env, smtputf8=False)
    yield server
    server.controller.stop()


@pytest.fixture
def scripted_smtp_with_pipelining(settings, worker_env):
    """The same, offering PIPELINING (RFC 2920) too."""
    server = _serve(settings, worker_env, smtputf8=True, pipelining=True)
    yield server
    server.controller.stop()
