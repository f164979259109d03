"""The DKIM signer (campaigns/deliverability/dkim.py) signs with OpenSSL what dkimpy canonicalised: its
header is byte for byte the one dkimpy's own dkim.sign makes (RSASSA-PKCS1-v1_5 is deterministic), and
the message it signs verifies with dkimpy's verifier; a changed body or header does not. Its relaxed
body canonicalisation is dkimpy's, for any bytes. No servers:
the messages are built as the SMTP path builds them, and the key is handed to the verifier directly
(tests/deliverability/test_dkim.py checks what a real worker delivered, against the local DNS)."""

import dkim as dkimpy
import pytest
from dkim.canonicalization import Relaxed
from hypothesis import given, settings, strategies as st

from campaigns.deliverability import dkim
from campaigns.sending.providers.smtp import MessageBuilder
from tests.sending.conftest import make_batch

KEY = dkim.generate_private_key()
RECIPIENTS = [(1, "ann@example.com", "Ann", "Smith", {"code": "C1"}),
              (2, "jurgen@example.org", "Jürgen", "Müller", {"code": "Grüße\r\n.dot"}),
              (3, "eve@example.net", "", "", {"code": "x" * 2000})]


@pytest.fixture(scope="module")
def signer():
    return dkim.Signer("example.com", "mailer1", KEY)


def unsigned_messages():
    batch = make_batch(RECIPIENTS, from_email="Acme News <news@example.com>", reply_to="help@example.com",
                       subject='Café news for {{ first_name|default:"you" }} — ünïcode')
    builder = MessageBuilder(batch)
    # The DATA bytes without their dot-stuffing and final dot: what the signer is given.
    return [builder.build(message, eight_bit_ok=True).data[:-3].replace(b"\n..", b"\n.") for message in batch.messages]


def verifies(message):
    return dkimpy.verify(message, dnsfunc=lambda name, timeout=5: dkim.record_value(KEY).encode("ascii"))


def test_the_header_is_byte_for_byte_what_dkimpy_signs(signer, monkeypatch):
    monkeypatch.setattr("time.time", lambda: 1_765_000_000.25)  # the same t= for both

    for message in unsigned_messages():
        assert signer.header(message) == signer.header_by_dkimpy(message)


def test_signed_messages_verify_with_dkimpy_and_a_change_does_not(signer):
    signed = [signer.sign(message) for message in unsigned_messages()]

    assert all(verifies(message) for message in signed)
    assert not verifies(signed[0].replace(b"Subject: ", b"Subject: Re: ", 1))
    assert not verifies(signed[0][:-40] + signed[0][-40:].replace(b"--", b"-=", 1))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from([b" ", b"\t", b"\r", b"\n", b"\r\n", b"a", b".", b"\xc3\xa9"]), max_size=16).map(b"".join))
def test_the_relaxed_body_is_dkimpys(body):
    assert dkim.relaxed_body(body) == Relaxed.canonicalize_body(body)
