"""Issue 23, items 2 and 5: every API operation against every staff group, a superuser, no token, and an
expired or revoked token. The API allows exactly what the admin does (campaigns.security.permissions)."""

import pytest
from django.core.files.base import ContentFile

from campaigns.models import Campaign, RecipientImport
from tests.admin.conftest import add_logs, add_recipients
from tests.api.conftest import ROLES, client_for
from tests.support.factories import CampaignFactory, SendingAccountFactory, SuppressionFactory, pool_of

VIEW = {"Viewer", "Campaign editor", "Campaign sender", "superuser"}
EDIT = {"Campaign editor", "Campaign sender", "superuser"}
SEND = {"Campaign sender", "superuser"}
OPERATOR = {"superuser"}
TEMPLATE = '<p>Hi</p><a href="{{ unsubscribe_url }}">Unsubscribe</a>'


def objects():
    draft = CampaignFactory(status="draft")
    add_recipients(draft, 2)
    finished = CampaignFactory(status="completed")
    add_logs(finished, ["failed", "unknown", "sent"])
    Campaign.objects.filter(pk=finished.pk).update(failed_count=1, unknown_count=1, sent_count=1,
                                                   started_at=finished.created_at)
    record = RecipientImport.objects.create(campaign=draft, file=ContentFile(b"email\n", name="x.csv"),
                                            original_name="x.csv")
    account = SendingAccountFactory()
    return {"draft": draft.pk, "finished": finished.pk, "import": record.pk,
            "suppression": SuppressionFactory().pk, "account": account.pk, "pool": pool_of(account).pk}


# (method, path, body, who may, extra headers)
OPERATIONS = [
    ("get", "/api/v1/campaigns/", None, VIEW, {}),
    ("post", "/api/v1/campaigns/", {"name": "N", "subject": "S", "html_body": TEMPLATE}, EDIT, {}),
    ("get", "/api/v1/campaigns/{draft}/", None, VIEW, {}),
    ("patch", "/api/v1/campaigns/{draft}/", {"name": "Renamed"}, EDIT, {}),
    ("delete", "/api/v1/campaigns/{draft}/", None, EDIT, {}),
    ("post", "/api/v1/campaigns/{draft}/schedule/", {"at": "2030-01-01T09:00:00+00:00"}, SEND, {}),
    ("post", "/api/v1/campaigns/{draft}/send-now/", None, SEND, {}),
    ("post", "/api/v1/campaigns/{draft}/pause/", None, EDIT, {}),
    ("post", "/api/v1/campaigns/{draft}/resume/", None, SEND, {}),
    ("post", "/api/v1/campaigns/{draft}/cancel/", None, EDIT, {}),
    ("post", "/api/v1/campaigns/{finished}/retry-failed/", None, SEND, {}),
    ("post", "/api/v1/campaigns/{finished}/resend-unknown/", None, SEND, {}),
    ("post", "/api/v1/campaigns/{draft}/test-send/", {"addresses": ["not-an-address"]}, EDIT, {}),
    ("get", "/api/v1/campaigns/{draft}/preflight/", None, VIEW, {}),
    ("post", "/api/v1/campaigns/{draft}/preflight/", None, EDIT, {}),
    ("post", "/api/v1/campaigns/{finished}/follow-up/", {"group": "failed"}, EDIT, {}),
    ("get", "/api/v1/campaigns/{finished}/stats/", None, VIEW, {}),
    ("get", "/api/v1/campaigns/{finished}/delivery-logs/", None, VIEW, {}),
    ("get", "/api/v1/campaigns/{finished}/delivery-logs/", None, SEND, {"HTTP_ACCEPT": "text/csv"}),
    ("get", "/api/v1/campaigns/{draft}/recipients/", None, VIEW, {}),
    ("post", "/api/v1/campaigns/{draft}/recipients/", {"rows": [{"email": "a@example.com"}]}, EDIT, {}),
    ("get", "/api/v1/imports/{import}/", None, VIEW, {}),
    ("get", "/api/v1/campaigns/{draft}/variants/", None, VIEW, {}),
    ("post", "/api/v1/campaigns/{draft}/variants/", {"letter": "A", "subject": "A"}, EDIT, {}),
    ("get", "/api/v1/suppressions/", None, VIEW, {}),
    ("post", "/api/v1/suppressions/", {"email": "gone@example.com"}, SEND, {}),
    ("delete", "/api/v1/suppressions/{suppression}/", None, SEND, {}),
    ("get", "/api/v1/sending-accounts/", None, VIEW, {}),
    ("get", "/api/v1/sending-accounts/{account}/", None, VIEW, {}),
    ("post", "/api/v1/sending-accounts/", {"name": "x", "kind": "smtp", "host": "smtp.example.com"}, OPERATOR, {}),
    ("patch", "/api/v1/sending-accounts/{account}/", {"per_minute": 5}, OPERATOR, {}),
    ("delete", "/api/v1/sending-accounts/{account}/", None, OPERATOR, {}),
    ("get", "/api/v1/sending-pools/", None, VIEW, {}),
    ("post", "/api/v1/sending-pools/", {"name": "p2", "accounts": []}, OPERATOR, {}),
    ("delete", "/api/v1/sending-pools/{pool}/", None, OPERATOR, {}),
    ("patch", "/api/v1/sending-pools/{pool}/", {"name": "renamed"}, OPERATOR, {}),
    ("get", "/api/v1/webhook-endpoints/", None, OPERATOR, {}),
    ("post", "/api/v1/webhook-endpoints/", {"url": "https://hooks.example.invalid/x", "events": ["campaign.paused"]},
     OPERATOR, {}),
    ("get", "/api/v1/webhook-messages/", None, OPERATOR, {}),
    ("post", "/api/v1/webhook-messages/1/replay/", None, OPERATOR, {}),
    ("get", "/api/schema/", None, VIEW, {}),
]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("method,path,body,allowed,headers", OPERATIONS,
                         ids=[f"{m} {p}{' csv' if h else ''}" for m, p, _, _, h in OPERATIONS])
def test_every_operation_allows_exactly_the_admins_permissions(db, role, method, path, body, allowed, headers):
    ids = objects()
    client = client_for(role)
    url = path.format(**ids)
    args = (body,) if body is not None else ()
    response = getattr(client, method)(url, *args, **headers)
    if role in ("anonymous", "expired", "revoked"):
        assert response.status_code == 401, response.content
        assert response.json()["code"] == "not_authenticated" or response.json()["code"] == "authentication_failed"
        assert response["WWW-Authenticate"] == "Bearer"
    elif role in allowed:
        assert response.status_code not in (401, 403), (response.status_code, response.content)
    else:
        assert response.status_code == 403, (response.status_code, response.content)
        assert response.json()["code"] == "permission_denied"


@pytest.mark.parametrize("role", ["Viewer", "Campaign editor"])
def test_a_refused_send_changes_nothing(db, role):
    ids = objects()
    client = client_for(role)
    assert client.post(f"/api/v1/campaigns/{ids['draft']}/send-now/").status_code == 403
    assert Campaign.objects.get(pk=ids["draft"]).status == "draft"


def test_a_non_staff_users_token_is_refused(db):
    client = client_for("Campaign sender")
    client.user.is_staff = False
    client.user.save()
    assert client.get("/api/v1/campaigns/").status_code == 403


def test_the_admins_session_works_with_csrf_only(db):
    from django.test import Client

    from tests.api.conftest import staff_user

    user = staff_user("Campaign editor", "session-editor")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    assert browser.get("/api/v1/campaigns/").status_code == 200
    refused = browser.post("/api/v1/campaigns/", {"name": "N", "subject": "S", "html_body": TEMPLATE},
                           content_type="application/json")
    assert refused.status_code == 403 and "CSRF" in refused.json()["message"]
    assert not Campaign.objects.filter(name="N").exists()
