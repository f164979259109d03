"""Fixtures of the bounce mail tests: the SMTP sink (to send through an account with a bounce domain) and a
throwaway Dovecot (tests/support/dovecot.py), started once per session."""

import pytest

from tests.support.dovecot import Dovecot, available


@pytest.fixture
def sink(smtp_sink_server):
    return smtp_sink_server


@pytest.fixture(scope="session")
def dovecot(tmp_path_factory):
    why_not = available()
    if why_not:
        pytest.skip(why_not)
    server = Dovecot(tmp_path_factory.mktemp("dovecot"))
    server.start()
    yield server
    server.stop()
