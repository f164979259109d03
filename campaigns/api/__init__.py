"""The REST API under /api/v1/ (Django REST framework, OpenAPI schema by drf-spectacular): tokens
(tokens.py, authentication.py), who may call what (permissions.py, over campaigns.security.permissions),
the rate limit (throttling.py), Idempotency-Key (idempotency.py), one error shape (errors.py),
serializers, views and urls. Each view calls one plain function of the app.

May import: models, exceptions, states, services, stats, security, audience, message, experiments and
webhooks. Nothing of the app imports it but the URLconf, the admin, the management commands and the
scheduler's tasks (the hourly clean-up of Idempotency-Keys).
"""
