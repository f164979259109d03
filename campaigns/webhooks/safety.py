"""Webhook URLs are safe to point anywhere: the host is resolved and every address it resolves to must be
public (not private, loopback, link-local, multicast or reserved) unless WEBHOOK_ALLOW_PRIVATE_URLS is set
(tests and local development). The request then goes to the address that was checked (no second lookup
that could answer differently), follows no redirect, has a short timeout and reads only the first bytes of
the answer."""

import http.client
import ipaddress
import socket
import ssl
from urllib.parse import urlsplit

from django.conf import settings


class UnsafeUrl(ValueError):
    """The URL may not be called; the message says why."""


def _is_public(address):
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_url(url):
    """(scheme, host, port, path, address to connect to) of URL, or UnsafeUrl."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeUrl("A webhook URL must be http:// or https:// with a host.")
    if parts.username or parts.password:
        raise UnsafeUrl("A webhook URL must not hold a user name or password.")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        found = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise UnsafeUrl(f"The host {parts.hostname} cannot be resolved: {error}.")
    addresses = [info[4][0] for info in found]
    if not settings.WEBHOOK_ALLOW_PRIVATE_URLS:
        private = [a for a in addresses if not _is_public(a)]
        if private:
            raise UnsafeUrl(f"The host {parts.hostname} resolves to a private, loopback or link-local address "
                            f"({private[0]}); set WEBHOOK_ALLOW_PRIVATE_URLS to allow it.")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port, path, addresses[0]


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host, port, address, **kwargs):
        super().__init__(host, port, **kwargs)
        self.address = address

    def connect(self):
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host, port, address, **kwargs):
        super().__init__(host, port, context=ssl.create_default_context(), **kwargs)
        self.address = address

    def connect(self):
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def post(url, body: bytes, headers, timeout, max_answer_bytes):
    """POST BODY to URL (checked first); returns (status, the answer's first bytes). Redirects are
    answers like any other (not followed). Raises UnsafeUrl or OSError."""
    scheme, host, port, path, address = check_url(url)
    kind = _PinnedHTTPSConnection if scheme == "https" else _PinnedHTTPConnection
    connection = kind(host, port, address, timeout=timeout)
    try:
        connection.request("POST", path, body=body, headers={
            **headers, "Content-Type": "application/json", "User-Agent": "bulk-mailer-webhooks/1"})
        response = connection.getresponse()
        return response.status, response.read(max_answer_bytes)
    finally:
        connection.close()
