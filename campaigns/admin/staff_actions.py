"""The campaign page's staff actions: buttons, bulk actions and their confirmation pages.

Every action calls one function of `campaigns.sending.control` (or `Campaign.duplicate`) and reports
its message, or the IllegalTransition / CampaignError text as an error. Buttons POST with CSRF;
irreversible actions first show a confirmation page.
"""

from dataclasses import dataclass
from typing import Callable

from django.contrib import messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from campaigns import states
from campaigns.forms import ScheduleForm, TestEmailForm, zone_name
from campaigns.models import Campaign
from campaigns.sending import control

S = Campaign.Status
REFUSALS = (states.IllegalTransition, control.CampaignError)


def _duplicate(campaign_id):
    copy = Campaign.objects.get(pk=campaign_id).duplicate()
    return f"Duplicated as draft “{copy.name}” with {copy.total_recipients} recipients.", copy


@dataclass(frozen=True)
class StaffAction:
    name: str
    label: str
    run: Callable  # campaign id -> message
    shown_when: Callable  # campaign -> bool
    confirm: str = ""  # the question asked before an irreversible action; empty for none
    permission: str = "change"  # checked by the admin's has_<permission>_permission(request, campaign)
    style: str = ""


ACTIONS = {a.name: a for a in (
    StaffAction("send_now", "Send now", control.send_now, lambda c: c.status in (S.DRAFT, S.SCHEDULED),
                confirm="Start sending this campaign to all its recipients now? Sent mail cannot be recalled.",
                permission="send", style="primary"),
    StaffAction("unschedule", "Unschedule", control.unschedule, lambda c: c.status == S.SCHEDULED),
    StaffAction("pause", "Pause", control.pause, lambda c: c.status == S.IN_PROGRESS),
    StaffAction("resume", "Resume", control.resume, lambda c: c.status == S.PAUSED, permission="send",
                style="primary"),
    StaffAction("retry_failed", "Retry failed", control.retry_failed,
                lambda c: c.failed_count > 0 and c.status in (S.IN_PROGRESS, S.PAUSED, S.COMPLETED, S.FAILED),
                confirm="Send again to every recipient whose delivery failed?", permission="send"),
    StaffAction("resend_unknown", "Resend unknown", control.resend_unknown,
                lambda c: c.unknown_count > 0 and c.status in (S.IN_PROGRESS, S.PAUSED, S.COMPLETED, S.FAILED),
                confirm="Send again to recipients whose delivery is unknown? The provider may have accepted some "
                        "of them already, so a few people may get the email twice.", permission="send"),
    StaffAction("cancel", "Cancel", control.cancel,
                lambda c: c.status in (S.DRAFT, S.SCHEDULED, S.IN_PROGRESS, S.PAUSED),
                confirm="Cancel this campaign? Recipients not yet sent are skipped and it cannot be restarted.",
                style="danger"),
    StaffAction("duplicate", "Duplicate", lambda pk: _duplicate(pk)[0], lambda c: True, permission="duplicate"),
)}
BULK_ACTIONS = ("send_now", "pause", "resume", "cancel", "duplicate", "retry_failed", "resend_unknown")


def visible_actions(campaign):
    return [action for action in ACTIONS.values() if action.shown_when(campaign)]


def _allowed(model_admin, request, action, campaign=None):
    return getattr(model_admin, f"has_{action.permission}_permission")(request, campaign)


class CampaignActionsMixin:
    """Mixed into CampaignAdmin: the action URL and the bulk actions of the change list."""

    def has_send_permission(self, request, obj=None):
        """Starting mail to recipients (schedule, send now, resume, retry, resend) is its own permission."""
        return request.user.has_perm("campaigns.send_campaign")

    def has_export_recipients_permission(self, request, obj=None):
        """Recipients' personal data leaves the admin (CSV export, preview and tests with real data)."""
        return request.user.has_perm("campaigns.export_recipients") and self.has_view_or_change_permission(
            request, obj)

    def has_duplicate_permission(self, request, obj=None):
        """A copy is a new campaign made from one the user may see."""
        return self.has_add_permission(request) and self.has_view_or_change_permission(request, obj)

    def campaign_action_view(self, request, campaign_id, name):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        campaign = get_object_or_404(Campaign, pk=campaign_id)
        change_url = reverse("admin:campaigns_campaign_change", args=[campaign.pk])
        if name == "schedule":
            return self._schedule(request, campaign, change_url)
        if name == "send_test_email":
            return self._send_test(request, campaign, change_url)
        action = ACTIONS.get(name)
        if action is None:
            raise PermissionDenied("No such action.")
        if not _allowed(self, request, action, campaign):
            raise PermissionDenied
        if action.confirm and request.POST.get("confirm") != "yes":
            return TemplateResponse(request, "admin/campaigns/campaign/confirm_action.html", {
                **self.admin_site.each_context(request), "opts": self.model._meta, "title": f"{action.label}?",
                "campaign": campaign, "action": action, "campaigns": [campaign],
                "action_url": request.path, "cancel_url": change_url,
            })
        target = change_url
        try:
            if name == "duplicate":
                message, copy = _duplicate(campaign.pk)
                target = reverse("admin:campaigns_campaign_change", args=[copy.pk])
            else:
                message = action.run(campaign.pk)
        except REFUSALS as refusal:
            self.message_user(request, str(refusal), messages.ERROR)
        else:
            self.message_user(request, f"{action.label}: {message}", messages.SUCCESS)
        return HttpResponseRedirect(target)

    def _schedule(self, request, campaign, change_url):
        if not self.has_send_permission(request, campaign):
            raise PermissionDenied
        form = ScheduleForm(request.POST)
        if not form.is_valid():
            self.message_user(request, "Schedule: " + " ".join(form.errors["when"]), messages.ERROR)
            return HttpResponseRedirect(change_url)
        try:
            message = control.schedule(campaign.pk, form.cleaned_data["when"])
        except REFUSALS as refusal:
            self.message_user(request, str(refusal), messages.ERROR)
        else:
            self.message_user(request, message, messages.SUCCESS)
        return HttpResponseRedirect(change_url)

    def _send_test(self, request, campaign, change_url):
        if not self.has_change_permission(request, campaign):
            raise PermissionDenied
        form = TestEmailForm(request.POST)
        if not form.is_valid():
            self.message_user(request, "Test email: " + " ".join(form.errors["addresses"]), messages.ERROR)
            return HttpResponseRedirect(change_url)
        try:
            message = control.send_test_email(
                campaign.pk, form.cleaned_data["addresses"], user_id=request.user.pk,
                with_recipient_data=self.has_export_recipients_permission(request, campaign))
        except REFUSALS as refusal:
            self.message_user(request, str(refusal), messages.ERROR)
        except Exception as error:  # a provider outage is shown to staff, not a server error page
            self.message_user(request, f"Test email not sent: {error}", messages.ERROR)
        else:
            self.message_user(request, message, messages.SUCCESS)
        return HttpResponseRedirect(change_url)

    def action_context(self, request, campaign):
        can_change = self.has_change_permission(request, campaign)
        return {
            "staff_actions": [a for a in visible_actions(campaign) if _allowed(self, request, a, campaign)],
            "can_change": can_change,
            "can_schedule": self.has_send_permission(request, campaign) and campaign.status in (S.DRAFT, S.SCHEDULED),
            "schedule_form": ScheduleForm(initial={"when": timezone.localtime(campaign.scheduled_at)
                                                   if campaign.scheduled_at else None}),
            "test_form": TestEmailForm(),
            "zone_name": zone_name(),
        }


def _bulk(action):
    def run(model_admin, request, queryset):
        if action.confirm and request.POST.get("confirm") != "yes":
            return TemplateResponse(request, "admin/campaigns/campaign/confirm_action.html", {
                **model_admin.admin_site.each_context(request), "opts": model_admin.model._meta,
                "title": f"{action.label}?", "action": action, "campaigns": list(queryset),
                "bulk": True, "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            })
        done, refusals = 0, []
        for campaign_id in queryset.values_list("pk", flat=True):
            try:
                action.run(campaign_id)
                done += 1
            except REFUSALS as refusal:
                refusals.append(str(refusal))
        if done:
            model_admin.message_user(request, f"{action.label}: done for {done} campaign{'s' * (done != 1)}.",
                                     messages.SUCCESS)
        for refusal in refusals:
            model_admin.message_user(request, refusal, messages.ERROR)
        return None

    run.__name__ = f"bulk_{action.name}"
    run.short_description = f"{action.label} (selected campaigns)"
    run.allowed_permissions = (action.permission,)
    return run


bulk_actions = [_bulk(ACTIONS[name]) for name in BULK_ACTIONS]
