"""DKIM (RFC 6376) for the SMTP path: an RSA 2048 key made for a sending account, the TXT record to
publish for it, and the signature of each message's final bytes (relaxed/relaxed).

dkimpy parses, canonicalises, hashes and folds, as before; only the RSA private-key operation is
OpenSSL's (the `cryptography` library), not dkimpy's own big-integer arithmetic in Python: ~12.7 ms
per message with dkimpy's, well under 1 ms with OpenSSL's. RSASSA-PKCS1-v1_5 is deterministic, so
the signature is byte for byte dkimpy's (tests/deliverability/test_dkim_signer.py)."""

import base64
import functools
import hashlib
import logging
import re
import time

import dkim
from dkim.canonicalization import correct_empty_body, strip_trailing_lines
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

logger = logging.getLogger(__name__)
_DKIMPY_LOGGER = logging.getLogger("dkimpy")
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


# A run of spaces and tabs other than one space alone (which relaxed canonicalisation leaves as it is).
_WSP_RUNS = re.compile(rb"\t[\t ]*| [\t ]+")


def relaxed_body(body):
    """RFC 6376 3.4.4, exactly dkimpy's Relaxed.canonicalize_body (tested against it), in a third of its
    time on an HTML newsletter: its regular expressions replace every single space by itself."""
    lines = body.split(b"\r\n")
    last = lines.pop()  # no CRLF after it: its trailing whitespace is compressed, not removed
    body = _WSP_RUNS.sub(b" ", b"\r\n".join([line.rstrip(b" \t") for line in lines] + [last]))
    return correct_empty_body(strip_trailing_lines(body))


class _OpenSSLSigned(dkim.DKIM):
    """dkimpy's DKIM (its message parsing, canonicalisation and folding) with its private-key operation
    done by OpenSSL. `sign` and `gen_header` are dkimpy 1.1.8's (pinned) for the one case used here
    (rsa-sha256, relaxed/relaxed, SIGNED_HEADERS, no l= or i= of our own), without parsing the PEM key
    in Python for every message, and with the one line that signs the header hash changed."""

    rsa_key = None  # cryptography's RSAPrivateKey, set before sign()

    def sign(self, selector, domain):
        canon_policy = dkim.CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
        include_headers = self.include_headers = tuple(name.lower() for name in SIGNED_HEADERS)
        self.hasher = hashlib.sha256
        bodyhash = base64.b64encode(hashlib.sha256(relaxed_body(self.body)).digest())
        fields = [(b"v", b"1"), (b"a", b"rsa-sha256"), (b"c", canon_policy.to_c_value()), (b"d", domain),
                  (b"i", b"@" + domain), (b"q", b"dns/txt"), (b"s", selector),
                  (b"t", str(int(time.time())).encode("ascii")), (b"h", b" : ".join(include_headers)),
                  (b"bh", bodyhash), (b"b", b"0" * 60)]
        header = self.gen_header(fields, include_headers, canon_policy, b"DKIM-Signature", None)
        self.domain, self.selector, self.signature_fields = domain, selector, dict(fields)
        return b"DKIM-Signature: " + header

    def gen_header(self, fields, include_headers, canon_policy, header_name, pk, standardize=False):
        if self.signature_algorithm != b"rsa-sha256" or standardize:
            raise dkim.ParameterError("only rsa-sha256, unstandardised, is signed here")
        header_value = b"; ".join(b"=".join(x) for x in fields)
        header_value = dkim.fold(header_value, namelen=len(header_name), linesep=b"\r\n")
        header_value = dkim.RE_BTAG.sub(b"\\1", header_value)
        header = (header_name, b" " + header_value)
        h = self.hasher()
        headers = canon_policy.canonicalize_headers(self.headers)
        self.signed_headers = dkim.hash_headers(h, canon_policy, headers, include_headers, header, dict(fields))
        signature = self.rsa_key.sign(h.digest(), padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
        index = [i for i in range(len(fields)) if fields[i][0] == b"b"][0]
        fields[index] = (b"b", base64.b64encode(signature))
        header_value = b"; ".join(b"=".join(x) for x in fields) + self.linesep
        return dkim.fold(header_value, namelen=len(header_name), linesep=self.linesep)


@functools.lru_cache(maxsize=32)
def _load_key(private_key_pem):
    """The account's key, loaded (and its RSA consistency checked, tens of ms) once per process, not once
    per batch."""
    return serialization.load_pem_private_key(private_key_pem.encode("ascii"), password=None)


class Signer:
    """Signs messages for one domain and selector with one key."""

    def __init__(self, domain, selector, private_key_pem):
        self.domain = domain.encode("ascii")
        self.selector = selector.encode("ascii")
        self.rsa_key = _load_key(private_key_pem)

    def header(self, message):
        """The DKIM-Signature header line (bytes, CRLF-terminated) for MESSAGE, a complete message with
        CRLF line endings, not dot-stuffed: what dkimpy's dkim.sign gives, its RSA step by OpenSSL."""
        signer = _OpenSSLSigned(message, logger=_DKIMPY_LOGGER, linesep=b"\r\n")
        signer.rsa_key = self.rsa_key
        return signer.sign(self.selector, self.domain)

    def header_by_dkimpy(self, message):
        """The same header, signed by dkimpy alone (pure-Python RSA): the reference the tests compare to."""
        # dkimpy's own parser reads PKCS#1 PEM ("BEGIN RSA PRIVATE KEY"); the key is stored as PKCS#8.
        key = self.rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                         serialization.NoEncryption())
        return dkim.sign(message, self.selector, self.domain, key, include_headers=list(SIGNED_HEADERS),
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
