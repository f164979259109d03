"""Standard Webhooks signatures (https://www.standardwebhooks.com/): `webhook-signature: v1,<base64 of
HMAC-SHA256 over "id.timestamp.body">` with the secret `whsec_<base64 key>`, so receivers verify with the
specification's reference libraries (`standardwebhooks` for Python, Node, Go …)."""

import base64
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"


def new_secret():
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def signature(secret, webhook_id, timestamp, body: bytes):
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def headers(secret, webhook_id, timestamp, body: bytes):
    return {"webhook-id": webhook_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(secret, webhook_id, timestamp, body)}
