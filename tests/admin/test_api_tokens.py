"""Issue 23, item 2: staff make and revoke their own API tokens in the admin; the token is shown once."""

import re

from django.contrib.messages import get_messages
from django.test import Client

from campaigns.models import ApiToken
from tests.api.conftest import ApiClient, staff_user
from tests.support.factories import UserFactory


def test_a_viewer_makes_a_token_sees_it_once_and_revokes_it(db):
    viewer = staff_user("Viewer", "token-viewer")
    browser = Client()
    browser.force_login(viewer)
    response = browser.post("/admin/campaigns/apitoken/add/", {"name": "CRM", "expires_in_days": "30"}, follow=True)
    assert response.status_code == 200
    shown = " ".join(m.message for m in get_messages(response.wsgi_request))
    token = re.search(r"(mlr_\S+)", shown).group(1)
    row = ApiToken.objects.get()
    assert (row.user, row.name) == (viewer, "CRM") and row.expires_at is not None
    assert token not in str(ApiToken.objects.values_list().get())  # only its hash is stored
    assert token not in browser.get(f"/admin/campaigns/apitoken/{row.pk}/change/").content.decode()

    assert ApiClient(token).get("/api/v1/campaigns/").status_code == 200
    browser.post("/admin/campaigns/apitoken/", {"action": "revoke_selected", "_selected_action": [row.pk]})
    assert ApiClient(token).get("/api/v1/campaigns/").status_code == 401


def test_staff_see_and_revoke_only_their_own_tokens(db):
    from campaigns.api import tokens

    mine, theirs = staff_user("Campaign editor", "me"), UserFactory(username="them")
    tokens.create_token(mine, "mine")
    other, other_token = tokens.create_token(theirs, "theirs")
    browser = Client()
    browser.force_login(mine)
    listing = browser.get("/admin/campaigns/apitoken/").content.decode()
    assert "mine" in listing and "theirs" not in listing
    assert browser.get(f"/admin/campaigns/apitoken/{other.pk}/change/").status_code in (302, 403, 404)
    browser.post("/admin/campaigns/apitoken/", {"action": "revoke_selected", "_selected_action": [other.pk]})
    other.refresh_from_db()
    assert other.revoked_at is None
