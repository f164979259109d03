"""Staff actions: the one helper every action in the admin runs through, and the campaign's actions.

`perform` is the whole life of an action: permission check → form (a confirmation, or fields to fill
in) → one service call → message → redirect. The campaign's buttons and bulk actions, its schedule and
test-email forms, archiving, the recipient import and the suppression import all use it, so each reads
the same way and a refusal is shown the same way everywhere.

A refusal from the domain (an IllegalTransition or a CampaignError) is an error message, never a server
error page. Buttons POST with CSRF; irreversible actions first show a confirmation page.
"""

from dataclasses import dataclass
from functools import partial
from typing import Callable

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseRedirect
from django.urls import reverse

from campaigns import services
from campaigns.exceptions import CampaignError, IllegalTransition
from campaigns.models import Campaign
from campaigns.sending.ledger import BREAKER_PAUSE

S = Campaign.Status
REFUSALS = (IllegalTransition, CampaignError)


@dataclass(frozen=True)
class Outcome:
    """What a service call tells staff ((level, text) pairs), and where they land ("": the action's done_url)."""

    notes: tuple = ()
    url: str = ""


def done(message="", level=messages.SUCCESS, url=""):
    return Outcome(((level, message),) if message else (), url)


def perform(model_admin, request, *, allowed, call, done_url, form=None, page=None, label=""):
    """Run one staff action and answer the request.

    allowed: the permission check's answer; False is a 403.
    form: builds the form, once the check has passed; None when there is nothing to fill in or confirm.
    call: one service call, given the form's cleaned data as keyword arguments; returns an Outcome.
    page: form -> response, for an action with a page of its own: an unbound or invalid form is shown there,
        and so is a ValidationError raised by `call`. Without a page, form errors become the message
        "label: errors" on done_url.
    """
    if not allowed:
        raise PermissionDenied
    bound = form() if form else None
    if bound is not None and not bound.is_valid():
        if page:
            return page(bound)
        errors = " ".join(error for field_errors in bound.errors.values() for error in field_errors)
        model_admin.message_user(request, f"{label}: {errors}", messages.ERROR)
        return HttpResponseRedirect(done_url)
    try:
        outcome = call(**(bound.cleaned_data if bound else {}))
    except ValidationError as invalid:  # the input was read and found wrong: say so on its form
        bound.add_error(None, invalid)
        return page(bound)
    except REFUSALS as refusal:
        model_admin.message_user(request, str(refusal), messages.ERROR)
        return HttpResponseRedirect(done_url)
    for level, text in outcome.notes:
        model_admin.message_user(request, text, level)
    return HttpResponseRedirect(outcome.url or done_url)


class ConfirmForm(forms.Form):
    """The "Yes, …" button of a confirmation page: valid once staff have answered it."""

    confirm = forms.ChoiceField(choices=[("yes", "yes")], widget=forms.HiddenInput)

    def clean(self):
        return {}  # the answer is all there is: the service call is given nothing from it


# --- the campaign's actions ----------------------------------------------------------------------


def change_url(campaign_id):
    return reverse("admin:campaigns_campaign_change", args=[campaign_id])


@dataclass(frozen=True)
class CampaignAction:
    """A button on the campaign page, and (for most) a bulk action of the change list."""

    name: str
    label: str
    run: Callable  # campaign id -> message, or an Outcome for an action that lands elsewhere
    shown_when: Callable  # campaign -> bool
    confirm: str = ""  # the question asked before an irreversible action; empty for none
    permission: str = "change"  # checked by the admin's has_<permission>_permission(request, campaign)
    style: str = ""

    def allowed(self, model_admin, request, campaign=None):
        return getattr(model_admin, f"has_{self.permission}_permission")(request, campaign)

    def confirmation(self, request):
        """The confirmation form of an irreversible action (None for the others)."""
        return partial(ConfirmForm, request.POST) if self.confirm else None

    def on_campaign(self, campaign_id) -> Outcome:
        result = self.run(campaign_id)
        outcome = result if isinstance(result, Outcome) else done(result)
        return Outcome(tuple((level, f"{self.label}: {text}") for level, text in outcome.notes), outcome.url)

    def on_each(self, campaign_ids) -> Outcome:
        """Run on every selected campaign: one message with the count, one per refusal."""
        count, refusals = 0, []
        for campaign_id in campaign_ids:
            try:
                self.run(campaign_id)
                count += 1
            except REFUSALS as refusal:
                refusals.append((messages.ERROR, str(refusal)))
        counted = ((messages.SUCCESS, f"{self.label}: done for {count} campaign{'s' * (count != 1)}."),)
        return Outcome((*(counted if count else ()), *refusals))


def duplicate(campaign_id):
    copy = Campaign.objects.get(pk=campaign_id).duplicate()
    return done(f"Duplicated as draft “{copy.name}” with {copy.total_recipients} recipients.",
                url=change_url(copy.pk))


ACTIONS = {a.name: a for a in (
    CampaignAction("send_now", "Send now", services.send_now, lambda c: c.status in (S.DRAFT, S.SCHEDULED),
                   confirm="Start sending these campaigns now, each to its audience (its segment, suppressed addresses left "
                           "out)? Sent mail cannot be recalled.",
                   permission="send", style="primary"),
    CampaignAction("unschedule", "Unschedule", services.unschedule, lambda c: c.status == S.SCHEDULED),
    CampaignAction("pause", "Pause", services.pause, lambda c: c.status == S.IN_PROGRESS),
    CampaignAction("resume", "Resume", services.resume, lambda c: c.status == S.PAUSED, permission="send",
                   style="primary"),
    CampaignAction("retry_failed", "Retry failed", services.retry_failed,
                   lambda c: c.failed_count > 0 and c.status in (S.IN_PROGRESS, S.PAUSED, S.COMPLETED, S.FAILED),
                   confirm="Send again to every recipient whose delivery failed?", permission="send"),
    CampaignAction("resend_unknown", "Resend unknown", services.resend_unknown,
                   lambda c: c.unknown_count > 0 and c.status in (S.IN_PROGRESS, S.PAUSED, S.COMPLETED, S.FAILED),
                   confirm="Send again to recipients whose delivery is unknown? The provider may have accepted "
                           "some of them already, so a few people may get the email twice.", permission="send"),
    CampaignAction("confirm_dead_addresses", "These addresses really are dead: suppress them and go on",
                   services.confirm_dead_addresses, lambda c: c.status == S.PAUSED and c.pause_reason.startswith(BREAKER_PAUSE),
                   confirm="The mail server refused many recipients at once as addresses that do not exist, so none "
                           "was suppressed and sending paused. Suppress them now, as bounced (no campaign will mail "
                           "them again), and resume sending?", permission="send"),
    # Not on a draft's page: nothing is under way to cancel (a draft is deleted, or left as it is).
    CampaignAction("cancel", "Cancel", services.cancel,
                   lambda c: c.status in (S.SCHEDULED, S.IN_PROGRESS, S.PAUSED),
                   confirm="Cancel this campaign? Recipients not yet sent are skipped and it cannot be restarted.",
                   style="danger"),
    CampaignAction("duplicate", "Duplicate", duplicate, lambda c: True, permission="duplicate"),
)}


def visible_actions(campaign):
    return [action for action in ACTIONS.values() if action.shown_when(campaign)]
