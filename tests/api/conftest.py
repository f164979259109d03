"""API test helpers: staff users of each group with a token, and a client that sends it."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from campaigns.api import tokens
from campaigns.models import ApiToken
from campaigns.security.staff_groups import ensure_staff_groups
from tests.support.factories import UserFactory

ROLES = ("anonymous", "expired", "revoked", "Viewer", "Campaign editor", "Campaign sender", "superuser")


class ApiClient(Client):
    """Django's test client, sending a bearer token and JSON by default."""

    def __init__(self, token=None, **kwargs):
        super().__init__(**kwargs)
        self.token = token
        if token:
            self.defaults["HTTP_AUTHORIZATION"] = f"Bearer {token}"

    def post(self, path, data=None, content_type="application/json", **extra):
        return super().post(path, data if data is not None else {}, content_type=content_type, **extra)

    def patch(self, path, data=None, content_type="application/json", **extra):
        return super().patch(path, data if data is not None else {}, content_type=content_type, **extra)


def staff_user(role, username=None):
    ensure_staff_groups()
    if role == "superuser":
        return UserFactory(username=username or "api-superuser", is_superuser=True)
    user = UserFactory(username=username or f"api-{role.lower().replace(' ', '-')}")
    if role in ("Viewer", "Campaign editor", "Campaign sender"):
        user.groups.set([Group.objects.get(name=role)])
    return user


def client_for(role):
    """A client for ROLE: a staff group, a superuser, no token, or a sender's expired or revoked token."""
    if role == "anonymous":
        return ApiClient()
    user = staff_user("Campaign sender" if role in ("expired", "revoked") else role, username=f"api-{role}")
    row, token = tokens.create_token(user, role)
    if role == "expired":
        ApiToken.objects.filter(pk=row.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    if role == "revoked":
        tokens.revoke(row.pk)
    client = ApiClient(token)
    client.user = user
    return client


@pytest.fixture
def api_client(db):
    """A superuser's client."""
    return client_for("superuser")
