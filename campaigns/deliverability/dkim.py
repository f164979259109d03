"""DKIM (RFC 6376) for the SMTP path: an RSA 2048 key made for a sending account, the TXT record to
publish for it, and the signature of each message's final bytes (dkimpy, relaxed/relaxed)."""

import base64
import logging

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

logger = logging.getLogger(__name__)
KEY_BITS = 2048
# What every message is signed over: the headers a reader sees or a filter trusts, the one-click
# unsubscribe pair (RFC 8058 requires both to be signed) and the MIME headers. dkimpy signs an absent
# one as absent, so that nobody can add it on the way.
SIGNED_HEADERS = (b"From", b"To", b"Subject", b"Date", b"Message-ID", b"Reply-To", b"List-Unsubscribe",
                  b"List-Unsubscribe-Post", b"MIME-Version", b"Content-Type", b"Content-Transfer-Encoding")


def generate_private_key():
    """A new RSA 2048 private key, PEM (PKCS#8) text."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode("ascii")


def public_key_base64(private_key_pem):
    """The p= value: the public key's DER SubjectPublicKeyInfo in base64."""
    key = serialization.load_pem_private_key(private_key_pem.encode("ascii"), password=None)
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode("ascii")


def record_name(selector, domain):
    return f"{selector}._domainkey.{domain}"


def record_value(private_key_pem):
    return f"v=DKIM1; k=rsa; p={public_key_base64(private_key_pem)}"


def dns_record(selector, domain, private_key_pem):
    """The record to publish, as a zone file line."""
    return f'{record_name(selector, domain)}. TXT "{record_value(private_key_pem)}"'


class Signer:
    """Signs messages for one domain and selector with one key."""

    def __init__(self, domain, selector, private_key_pem):
        self.domain = domain.encode("ascii")
        self.selector = selector.encode("ascii")
        # dkimpy's own parser reads PKCS#1 PEM ("BEGIN RSA PRIVATE KEY"); the key is stored as PKCS#8.
        key = serialization.load_pem_private_key(private_key_pem.encode("ascii"), password=None)
        self.key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                     serialization.NoEncryption())

    def header(self, message):
        """The DKIM-Signature header line (bytes, CRLF-terminated) for MESSAGE, a complete message with
        CRLF line endings, not dot-stuffed."""
        return dkim.sign(message, self.selector, self.domain, self.key, include_headers=list(SIGNED_HEADERS),
                         canonicalize=(b"relaxed", b"relaxed"), linesep=b"\r\n")

    def sign(self, message):
        return self.header(message) + message


def signer_for(account):
    """The account's Signer, or None when it does not sign."""
    if not account.signs_with_dkim():
        return None
    return Signer(account.dkim_domain, account.dkim_selector, account.dkim_private_key)


def generate_key(account):
    """Make and store (encrypted) a new private key for ACCOUNT; returns the DNS record to publish.
    Raises ValueError when the account has no DKIM domain or selector yet, ImproperlyConfigured when
    FIELD_ENCRYPTION_KEY is not set."""
    if not (account.dkim_domain and account.dkim_selector):
        raise ValueError(f"Set the DKIM domain and selector of {account.name} first, and save.")
    account.dkim_private_key = generate_private_key()
    type(account).objects.filter(pk=account.pk).update(dkim_private_key=account.dkim_private_key)
    logger.info("Sending account %s: a new DKIM key was stored (selector %s, domain %s)", account.pk,
                account.dkim_selector, account.dkim_domain)
    return dns_record(account.dkim_selector, account.dkim_domain, account.dkim_private_key)
