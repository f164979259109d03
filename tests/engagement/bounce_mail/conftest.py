"""Fixtures of the bounce mail tests: the SMTP sink (to send through an account with a bounce domain) and a
throwaway Dovecot (localservers/dovecot.py), started once per session."""

import shutil
import tempfile
from pathlib import Path

import pytest

from localservers.dovecot import Dovecot, available


@pytest.fixture
def sink(smtp_sink_server):
    return smtp_sink_server


@pytest.fixture(scope="session")
def dovecot():
    why_not = available()
    if why_not:
        pytest.skip(why_not)
    # Not under pytest's own temporary directory: Dovecot's unprivileged processes must reach it (0700 there).
    base = Path(tempfile.mkdtemp(prefix="mailer-dovecot-"))
    base.chmod(0o755)
    server = Dovecot(base)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
