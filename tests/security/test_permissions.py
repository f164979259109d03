"""Who may do what (campaigns/security/permissions.py), as each staff group meets it in the admin.

A refused action is a 403 and nothing happened: no connection at a recording server, no file served,
no state changed."""

import socket

import pytest
from django.urls import reverse

from campaigns.models import CampaignVariant
from campaigns.security import permissions
from tests.admin.conftest import add_logs
from tests.support.factories import CampaignFactory, SendingAccountFactory, UserFactory

pytestmark = pytest.mark.django_db
GROUPS = ("Viewer", "Campaign editor", "Campaign sender")
SECRET = "Zq9-very-secret-app-password"


@pytest.fixture
def recording_server():
    """A TCP port that records whether anyone connected (a pending connection is there to accept)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    yield listener
    listener.close()


def connected(listener):
    try:
        listener.accept()[0].close()
        return True
    except BlockingIOError:
        return False


# --- sending accounts: only staff who may change accounts test or change them ---------------------------

@pytest.mark.parametrize("group", GROUPS)
def test_no_staff_group_may_test_an_accounts_connection(member, group, recording_server,
                                                        django_capture_on_commit_callbacks):
    staff = member(group)
    account = SendingAccountFactory(name="relay", port=recording_server.getsockname()[1], username="ann",
                                    secret=SECRET)
    with django_capture_on_commit_callbacks() as queued:
        button = staff.post(reverse("admin:campaigns_sendingaccount_test_connection", args=[account.pk]))
        staff.post(reverse("admin:campaigns_sendingaccount_changelist"),
                   {"action": "test_connection", "_selected_action": [account.pk]})
    assert button.status_code == 403
    assert queued == [] and not connected(recording_server)
    account.refresh_from_db()
    assert account.check_requested_at is None and account.last_check_at is None
    listing = staff.get(reverse("admin:campaigns_sendingaccount_changelist")).content.decode()
    assert 'value="test_connection"' not in listing  # the bulk action is not offered either
    assert "test-connection-form" not in staff.get(
        reverse("admin:campaigns_sendingaccount_change", args=[account.pk])).content.decode()
    assert not permissions.can_test_connection(staff.user)


@pytest.mark.parametrize("group", GROUPS)
def test_no_staff_group_may_change_an_account(member, group):
    staff = member(group)
    account = SendingAccountFactory(name="relay", host="127.0.0.1", secret=SECRET)
    response = staff.post(reverse("admin:campaigns_sendingaccount_change", args=[account.pk]),
                          {"name": "relay", "kind": "smtp", "host": "evil.example", "security": "none"})
    assert response.status_code == 403
    account.refresh_from_db()
    assert (account.host, account.secret) == ("127.0.0.1", SECRET)
    assert not permissions.can_manage_accounts(staff.user)


# --- exports: only with export_recipients ---------------------------------------------------------------

@pytest.fixture
def rejected_import(tmp_path, settings):
    from campaigns.audience.importing.service import import_recipients

    settings.MEDIA_ROOT = str(tmp_path / "media")
    path = tmp_path / "list.csv"
    path.write_text("email,city\nana@example.com,Lisbon\nANA@example.com,Porto\n")
    return import_recipients(CampaignFactory(), path).recipient_import


@pytest.mark.parametrize("group, allowed", [("Viewer", False), ("Campaign editor", False), ("Campaign sender", True)])
def test_an_imports_rejected_rows_need_export_recipients(member, group, allowed, rejected_import):
    staff = member(group)
    url = reverse("admin:campaigns_campaign_import_rejected", args=[rejected_import.pk])
    response = staff.get(url)
    status_page = staff.get(reverse("admin:campaigns_campaign_import_status", args=[rejected_import.pk]))
    status_json = staff.get(reverse("admin:campaigns_campaign_import_status_json", args=[rejected_import.pk])).json()
    if allowed:
        assert response.status_code == 200 and b"ANA@example.com" in b"".join(response.streaming_content)
        assert url in status_page.content.decode() and status_json["rejected_url"] == url
    else:
        assert response.status_code == 403 and not hasattr(response, "streaming_content")
        assert url not in status_page.content.decode() and status_json["rejected_url"] is None


@pytest.mark.parametrize("group, allowed", [("Viewer", False), ("Campaign editor", False), ("Campaign sender", True)])
def test_delivery_log_exports_need_export_recipients(member, group, allowed):
    staff = member(group)
    campaign = CampaignFactory(status="completed")
    add_logs(campaign, ["sent"])
    response = staff.get(reverse("admin:campaigns_campaign_export", args=[campaign.pk]))
    assert response.status_code == (200 if allowed else 403)
    assert permissions.can_export(staff.user, campaign) is allowed


# --- sending --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("group, allowed", [("Viewer", False), ("Campaign editor", False), ("Campaign sender", True)])
def test_only_senders_may_send_or_schedule(member, group, allowed):
    staff = member(group)
    assert permissions.can_send(staff.user) is allowed and permissions.can_schedule(staff.user) is allowed


def test_superusers_may_manage_accounts():
    assert permissions.can_manage_accounts(UserFactory(is_superuser=True))


# --- A/B variants: the rights a group has on campaigns -----------------------------------------------------

@pytest.mark.parametrize("group, may_change", [("Viewer", False), ("Campaign editor", True), ("Campaign sender", True)])
def test_each_group_has_the_variant_rights_its_campaign_rights_imply(member, group, may_change):
    from tests.admin.test_campaigns import form_data, variants_data

    staff = member(group)
    campaign = CampaignFactory(ab_test_percent=20)
    CampaignVariant.objects.create(campaign=campaign, letter="A", subject="Seen by every group")
    url = reverse("admin:campaigns_campaign_change", args=[campaign.pk])
    assert "Seen by every group" in staff.get(url).content.decode()

    data = {**form_data(ab_test_percent=20), **variants_data(("A", "Seen by every group", ""), ("B", "Added", ""))}
    data.update({"variants-INITIAL_FORMS": 1, "variants-0-id": campaign.variants.get().pk,
                 "variants-0-campaign": campaign.pk})
    response = staff.post(url, data)
    subjects = sorted(campaign.variants.values_list("subject", flat=True))
    if may_change:
        assert response.status_code == 302, response.context["adminform"].form.errors
        assert subjects == ["Added", "Seen by every group"]
    else:
        assert response.status_code == 403 and subjects == ["Seen by every group"]
    assert permissions.can_manage_variants(staff.user) is may_change
    assert permissions.can_view_variants(staff.user)
