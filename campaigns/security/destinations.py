"""Where a secret may be sent: a sending account's password or API key goes only over TLS, except to a
relay on this machine (loopback), and only to the server it was typed in for (issue 22, item 2).

The model's validation, the admin's account form and the providers all ask here, so a secret cannot
reach a new host, an http API or a plaintext AUTH by any path.
"""

import ipaddress
from urllib.parse import urlsplit

# Changing any of these changes where the stored secret would be sent: the secret must be typed again.
DESTINATION_FIELDS = ("kind", "host", "port", "security", "api_host")


def is_loopback(host) -> bool:
    """Whether HOST (a name or an address, IPv6 with or without brackets) is this machine."""
    host = (host or "").strip().strip("[]").lower().rstrip(".")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def api_host_refusal(url) -> str:
    """Why the API base URL may not carry a key ("" when it may): https, or http to loopback only."""
    try:
        parts = urlsplit(url or "")
        parts.port  # noqa: B018 (a malformed port raises here)
    except ValueError:
        return "The API host is not a valid URL, e.g. https://api.sendgrid.com."
    if parts.scheme == "https" and parts.hostname:
        return ""
    if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
        return ""  # a local stand-in (tests, a local proxy): the key never leaves the machine
    return "The API host must be an https:// URL, e.g. https://api.sendgrid.com (http only to 127.0.0.1)."


def plaintext_auth_refusal(host, security, username) -> str:
    """Why logging in to HOST without TLS is refused ("" when it is allowed): only loopback relays may."""
    if username and security == "none" and not is_loopback(host):
        return ("Logging in without TLS would send the password readable to anyone on the way: choose STARTTLS "
                "or implicit TLS (without TLS only to a relay on 127.0.0.1).")
    return ""
