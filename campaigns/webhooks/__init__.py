"""Signed outbound webhooks (docs/api.md, "Webhooks"): the event types and their recording in the outbox
in the same transaction as the change (events.py), endpoints and their secrets (endpoints.py), the
Standard Webhooks signature (signing.py), the address check against private networks (safety.py), and
delivery with retries on the `webhooks` queue (dispatch.py).

May import: models, Django and notifications.mail (dispatch.py tells staff of a disabled endpoint). events.py imports nothing of the app but the models, so that states,
the ledger, imports and engagement can record events without an import circle.
"""
