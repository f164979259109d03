"""Issue 13, item 3: permissions that fit the job. At each boundary a staff user without the permission
gets 403 (or is not offered the action) and nothing changes."""

import datetime as dt
import io
import logging
from unittest import mock

import pytest
from django.contrib.auth.models import Group, Permission
from django.contrib.messages import get_messages
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign, DeliveryLog, Suppression
from campaigns.security.staff_groups import STAFF_GROUPS
from campaigns.sending.ledger import BREAKER_PAUSE
from campaigns.sending.providers.base import DeliveryResult, Outcome
from tests.admin.conftest import add_logs, add_recipients
from tests.support.factories import CampaignFactory, SuppressionFactory, UserFactory

EDITOR = ("view_campaign", "add_campaign", "change_campaign")


def client_with(client, *codenames, groups=()):
    user = UserFactory()
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="campaigns", codename__in=codenames))
    user.groups.set(Group.objects.filter(name__in=groups))
    client.force_login(user)
    client.user = user
    return client


def action_url(campaign, name):
    return reverse("admin:campaigns_campaign_action", args=[campaign.pk, name])


def messages_of(response):
    return [m.message for m in get_messages(response.wsgi_request)]


def status_after(staff, campaign, name, data=None):
    """STAFF post the send action NAME, which must be allowed (a redirect); the campaign's status after it."""
    assert staff.post(action_url(campaign, name), data or {}).status_code == 302
    campaign.refresh_from_db()
    return campaign.status


def in_the_future():
    return (timezone.localtime() + dt.timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")


def campaign_in(state):
    """A campaign where the named send action applies."""
    campaign = CampaignFactory(status={"send_now": "draft", "schedule": "draft", "resume": "paused",
                                       "retry_failed": "completed", "resend_unknown": "completed"}[state])
    if state in ("retry_failed", "resend_unknown"):
        status = "failed" if state == "retry_failed" else "unknown"
        add_logs(campaign, [status])
        Campaign.objects.filter(pk=campaign.pk).update(**{f"{status}_count": 1})
    else:
        add_recipients(campaign, 2)
    return campaign


def snapshot(campaign):
    row = Campaign.objects.values("status", "scheduled_at", "failed_count", "unknown_count").get(pk=campaign.pk)
    return row, sorted(DeliveryLog.objects.filter(campaign=campaign).values_list("status", flat=True))


# --- send_campaign ---------------------------------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("name", ["send_now", "schedule", "resume", "retry_failed", "resend_unknown"])
def test_sending_needs_the_send_permission(client, name):
    editor = client_with(client, *EDITOR)
    campaign = campaign_in(name)
    before = snapshot(campaign)
    response = editor.post(action_url(campaign, name), {"confirm": "yes", "when": in_the_future()})
    assert response.status_code == 403
    assert snapshot(campaign) == before


@pytest.mark.django_db
def test_a_sender_may_schedule(client):
    sender = client_with(client, *EDITOR, "send_campaign")
    campaign = campaign_in("schedule")
    assert status_after(sender, campaign, "schedule", {"when": in_the_future()}) == "scheduled"


@pytest.mark.django_db
def test_an_editor_sees_no_send_buttons_and_may_still_pause(client):
    editor = client_with(client, *EDITOR)
    draft = campaign_in("send_now")
    page = editor.get(reverse("admin:campaigns_campaign_change", args=[draft.pk])).content.decode()
    assert "action-send_now" not in page and 'id="schedule-form"' not in page and 'name="schedule_for_0"' not in page
    assert 'id="test-email-form"' in page  # test sends are an editor's job (with sample data)
    live = CampaignFactory(status="in_progress")
    assert status_after(editor, live, "pause") == "paused"


@pytest.mark.django_db
def test_an_editor_saving_the_form_with_a_schedule_saves_but_does_not_schedule(client):
    editor = client_with(client, *EDITOR)
    campaign = campaign_in("schedule")
    when = timezone.localtime() + dt.timedelta(days=2)
    response = editor.post(reverse("admin:campaigns_campaign_change", args=[campaign.pk]), {
        "name": "Renamed", "subject": campaign.subject, "from_email": "news@example.com", "reply_to": "",
        "html_body": campaign.html_body, "text_body": "", "batch_size": 200,
        "schedule_for_0": when.strftime("%Y-%m-%d"), "schedule_for_1": when.strftime("%H:%M")})
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.name == "Renamed" and campaign.status == "draft" and campaign.scheduled_at is None
    assert "Saved, but not scheduled: you do not have permission to send campaigns." in messages_of(response)


@pytest.mark.django_db
def test_bulk_send_actions_are_not_offered_without_the_send_permission(client):
    editor = client_with(client, *EDITOR)
    campaign = campaign_in("send_now")
    changelist = reverse("admin:campaigns_campaign_changelist")
    page = editor.get(changelist).content.decode()
    assert "bulk_send_now" not in page and "bulk_resume" not in page and "bulk_pause" in page
    editor.post(changelist, {"action": "bulk_send_now", "_selected_action": [campaign.pk], "confirm": "yes"})
    campaign.refresh_from_db()
    assert campaign.status == "draft"


# --- export_recipients ----------------------------------------------------------------------------------

@pytest.mark.django_db
def test_csv_export_needs_the_export_permission(client):
    viewer = client_with(client, "view_campaign", "view_deliverylog")
    campaign = CampaignFactory(status="completed")
    add_logs(campaign, ["sent"])
    url = reverse("admin:campaigns_campaign_export", args=[campaign.pk])
    assert viewer.get(url).status_code == 403
    assert url not in viewer.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()
    viewer.user.user_permissions.add(Permission.objects.get(codename="export_recipients"))
    response = viewer.get(url)
    assert response.status_code == 200 and "r0000@example.com" in b"".join(response.streaming_content).decode()


@pytest.mark.django_db
def test_preview_shows_real_recipient_data_only_with_the_export_permission(client):
    viewer = client_with(client, "view_campaign")
    campaign = CampaignFactory()
    add_recipients(campaign, 2)
    url = reverse("admin:campaigns_campaign_preview", args=[campaign.pk])
    page = viewer.get(url, {"recipient": "r0001@example.com"}).content.decode()
    assert "r0001@example.com" not in page and "r0000@example.com" not in page and "sample@example.com" in page
    viewer.user.user_permissions.add(Permission.objects.get(codename="export_recipients"))
    assert "r0001@example.com" in viewer.get(url, {"recipient": "r0001@example.com"}).content.decode()


# --- duplicate ------------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_duplicate_needs_view_permission_on_the_source(client):
    adder = client_with(client, "add_campaign")
    campaign = CampaignFactory()
    add_recipients(campaign, 2)
    assert adder.post(action_url(campaign, "duplicate")).status_code == 403
    assert Campaign.objects.count() == 1
    adder.user.user_permissions.add(Permission.objects.get(codename="view_campaign"))
    assert adder.post(action_url(campaign, "duplicate")).status_code == 302
    assert Campaign.objects.count() == 2


@pytest.mark.django_db
def test_a_viewer_cannot_duplicate(client):
    viewer = client_with(client, "view_campaign")
    campaign = CampaignFactory()
    assert viewer.post(action_url(campaign, "duplicate")).status_code == 403
    assert Campaign.objects.count() == 1


# --- manage_suppressions --------------------------------------------------------------------------------

@pytest.mark.django_db
def test_changing_suppressions_needs_manage_suppressions(client):
    staff = client_with(client, "view_suppression", "add_suppression", "change_suppression", "delete_suppression")
    entry = SuppressionFactory(email="gone@example.com")
    assert staff.post(reverse("admin:campaigns_suppression_add"),
                      {"email": "new@example.com", "reason": "manual"}).status_code == 403
    delete_url = reverse("admin:campaigns_suppression_delete", args=[entry.pk])
    assert staff.post(delete_url, {"post": "yes"}).status_code == 403
    assert staff.get(reverse("admin:campaigns_suppression_import")).status_code == 403
    assert list(Suppression.objects.values_list("email", flat=True)) == ["gone@example.com"]
    staff.user.user_permissions.add(Permission.objects.get(codename="manage_suppressions"))
    assert staff.post(reverse("admin:campaigns_suppression_add"),
                      {"email": "new@example.com", "reason": "manual"}).status_code == 302
    assert Suppression.objects.filter(email="new@example.com").exists()


@pytest.mark.django_db
def test_suppressing_recipients_from_their_list_needs_manage_suppressions(client):
    staff = client_with(client, "view_recipient")
    campaign = CampaignFactory()
    [recipient] = add_recipients(campaign, 1)
    url = reverse("admin:campaigns_recipient_changelist")
    staff.post(url, {"action": "suppress_selected", "_selected_action": [recipient.pk]})
    assert not Suppression.objects.exists()
    staff.user.user_permissions.add(Permission.objects.get(codename="manage_suppressions"))
    response = staff.post(url, {"action": "suppress_selected", "_selected_action": [recipient.pk]})
    assert "Suppressed 1 new address." in messages_of(response)
    assert Suppression.objects.get().email == recipient.email


# --- test sends -----------------------------------------------------------------------------------------

@pytest.fixture
def provider():
    """The provider call of a test send, answering SENT for every message."""
    def send(batch):
        return "smtp", [DeliveryResult(delivery_id=0, outcome=Outcome.SENT) for _ in batch.messages]

    with mock.patch("campaigns.services.send_with_fallback", side_effect=send) as patched:
        yield patched


def sent_to(provider):
    return [m.email for call in provider.call_args_list for m in call.args[0].messages]


@pytest.mark.django_db
def test_a_test_send_takes_at_most_five_addresses(client, provider):
    editor = client_with(client, *EDITOR)
    campaign = CampaignFactory()
    addresses = " ".join(f"qa{i}@example.com" for i in range(6))
    response = editor.post(action_url(campaign, "send_test_email"), {"addresses": addresses})
    assert "Test email: At most 5 addresses, please; you gave 6." in messages_of(response)
    assert provider.call_count == 0


@pytest.mark.django_db
def test_test_sends_are_rate_limited_per_user(client, provider, settings):
    settings.TEST_EMAILS_PER_USER_PER_HOUR = 6
    editor = client_with(client, *EDITOR)
    campaign = CampaignFactory()
    url = action_url(campaign, "send_test_email")
    editor.post(url, {"addresses": "a@example.com b@example.com c@example.com d@example.com"})
    response = editor.post(url, {"addresses": "e@example.com f@example.com g@example.com"})
    assert any("at most 6 addresses an hour" in m for m in messages_of(response))
    editor.post(url, {"addresses": "e@example.com f@example.com"})  # refused requests did not count
    assert sent_to(provider) == ["a@example.com", "b@example.com", "c@example.com", "d@example.com",
                                 "e@example.com", "f@example.com"]
    # The allowance is the user's: another user still has theirs.
    other = client_with(client, *EDITOR)
    other.post(url, {"addresses": "h@example.com"})
    assert sent_to(provider)[-1] == "h@example.com"


@pytest.mark.django_db
def test_a_test_send_skips_suppressed_addresses_and_logs_the_user_not_the_addresses(client, provider, caplog):
    SuppressionFactory(email="gone@example.com")
    editor = client_with(client, *EDITOR)
    campaign = CampaignFactory()
    with caplog.at_level(logging.INFO, logger="campaigns.services"):
        response = editor.post(action_url(campaign, "send_test_email"),
                               {"addresses": "Gone@example.com qa@example.com"})
    assert sent_to(provider) == ["qa@example.com"]
    assert any("1 suppressed address" in m for m in messages_of(response))
    [line] = [r.getMessage() for r in caplog.records if "test email" in r.getMessage()]
    assert f"by user {editor.user.pk}" in line and "@" not in line
    only_suppressed = editor.post(action_url(campaign, "send_test_email"), {"addresses": "gone@example.com"})
    assert "Test email not sent: every address given is on the suppression list." in messages_of(only_suppressed)
    assert provider.call_count == 1


@pytest.mark.django_db
def test_a_test_send_uses_real_recipient_data_only_with_the_export_permission(client, provider):
    editor = client_with(client, *EDITOR)
    campaign = CampaignFactory()
    add_recipients(campaign, 1)
    editor.post(action_url(campaign, "send_test_email"), {"addresses": "qa@example.com"})
    assert provider.call_args.args[0].messages[0].context["email"] == "sample@example.com"
    editor.user.user_permissions.add(Permission.objects.get(codename="export_recipients"))
    editor.post(action_url(campaign, "send_test_email"), {"addresses": "qa@example.com"})
    assert provider.call_args.args[0].messages[0].context["email"] == "r0000@example.com"


@pytest.mark.django_db
def test_a_viewer_cannot_send_a_test(client, provider):
    viewer = client_with(client, "view_campaign")
    campaign = CampaignFactory()
    assert viewer.post(action_url(campaign, "send_test_email"), {"addresses": "qa@example.com"}).status_code == 403
    assert provider.call_count == 0


# --- create_staff_groups --------------------------------------------------------------------------------

def group_permissions():
    return {group.name: sorted(f"campaigns.{p.codename}" for p in group.permissions.all())
            for group in Group.objects.prefetch_related("permissions")}


@pytest.mark.django_db
def test_create_staff_groups_is_idempotent_and_resets_edited_groups(capsys):
    call_command("create_staff_groups")
    first = group_permissions()
    assert first == {name: sorted(codenames) for name, codenames in STAFF_GROUPS.items()}
    Group.objects.get(name="Viewer").permissions.add(Permission.objects.get(codename="send_campaign"))
    call_command("create_staff_groups")
    assert group_permissions() == first and Group.objects.count() == 3
    assert "Updated group “Viewer”." in capsys.readouterr().out


@pytest.mark.django_db
@pytest.mark.parametrize("group, allowed", [("Viewer", False), ("Campaign editor", False), ("Campaign sender", True)])
def test_only_campaign_senders_may_send(client, group, allowed):
    call_command("create_staff_groups")
    member = client_with(client, groups=[group])
    campaign = campaign_in("schedule")
    response = member.post(action_url(campaign, "schedule"), {"when": in_the_future()})
    campaign.refresh_from_db()
    assert (response.status_code, campaign.status) == ((302, "scheduled") if allowed else (403, "draft"))


def campaign_paused_by_the_suppression_breaker():
    campaign = CampaignFactory(status="paused", pause_reason=f"{BREAKER_PAUSE} 2 of a batch of 3 recipients ...")
    logs = add_logs(campaign, ["failed", "failed", "sent"])
    DeliveryLog.objects.filter(pk__in=[log.pk for log in logs[:2]]).update(suppression_held=True)
    Campaign.objects.filter(pk=campaign.pk).update(failed_count=2, sent_count=1)
    return campaign


@pytest.mark.django_db
def test_confirming_dead_addresses_needs_the_send_permission(client):
    editor = client_with(client, *EDITOR)
    campaign = campaign_paused_by_the_suppression_breaker()
    page = editor.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()
    assert "action-confirm_dead_addresses" not in page

    response = editor.post(action_url(campaign, "confirm_dead_addresses"), {"confirm": "yes"})

    assert response.status_code == 403
    assert not Suppression.objects.exists()
    assert DeliveryLog.objects.filter(campaign=campaign, suppression_held=True).count() == 2


@pytest.mark.django_db
def test_a_sender_confirms_dead_addresses_from_the_page_and_with_the_command(client):
    sender = client_with(client, *EDITOR, "send_campaign")
    campaign = campaign_paused_by_the_suppression_breaker()
    page = sender.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()
    assert "action-confirm_dead_addresses" in page

    assert sender.post(action_url(campaign, "confirm_dead_addresses"), {}).status_code == 200  # the confirmation
    assert not Suppression.objects.exists()
    assert status_after(sender, campaign, "confirm_dead_addresses", {"confirm": "yes"}) in ("in_progress", "completed")
    assert Suppression.objects.count() == 2

    with pytest.raises(CommandError, match="no refused addresses waiting"):
        call_command("confirm_dead_addresses", str(campaign.pk))
    other = campaign_paused_by_the_suppression_breaker()
    out = io.StringIO()
    call_command("confirm_dead_addresses", str(other.pk), stdout=out)
    assert "addresses suppressed as bounced" in out.getvalue()  # the same addresses as the first's
    assert not DeliveryLog.objects.filter(suppression_held=True).exists()
