"""Campaign state transitions: each one is a single conditional UPDATE.

`UPDATE campaign SET status = <to> WHERE id = <id> AND status IN (<from>)` either changes the row or
changes nothing, so two beats, two workers or a task delivered twice can never both win the same
transition. A caller that loses gets `IllegalTransition` with the campaign's actual state.
"""

from dataclasses import dataclass

from celery import current_app
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from campaigns.exceptions import IllegalTransition
from campaigns.models import Campaign, campaign_label
from campaigns.webhooks import events as webhook_events

S = Campaign.Status
# A campaign ending in one of these gets its completion report (campaigns.reports), sent by this task.
REPORTED = (S.COMPLETED, S.FAILED, S.CANCELLED)
REPORT_TASK = "campaigns.tasks.scheduler.send_completion_report"


@dataclass(frozen=True)
class Transition:
    name: str
    sources: tuple
    target: str

    def refusal(self, campaign_id, actual_status):
        """Why this transition does not apply to a campaign in ACTUAL_STATUS (None: no such campaign)."""
        if actual_status is None:
            return f"Cannot {self.name} campaign #{campaign_id}: it does not exist."
        allowed = ", ".join(str(S(s).label).lower() for s in self.sources)
        return (f"Cannot {self.name} campaign #{campaign_id}: it is {S(actual_status).label.lower()}; "
                f"only a campaign that is {allowed} can be {_past_participle(self.name)}.")


TRANSITIONS = {
    t.name: t
    for t in (
        Transition("schedule", (S.DRAFT, S.SCHEDULED), S.SCHEDULED),  # scheduling again reschedules
        Transition("unschedule", (S.SCHEDULED,), S.DRAFT),
        Transition("start", (S.SCHEDULED,), S.IN_PROGRESS),
        Transition("pause", (S.IN_PROGRESS,), S.PAUSED),
        Transition("resume", (S.PAUSED,), S.IN_PROGRESS),
        Transition("cancel", (S.DRAFT, S.SCHEDULED, S.IN_PROGRESS, S.PAUSED), S.CANCELLED),
        Transition("complete", (S.IN_PROGRESS,), S.COMPLETED),
        Transition("fail", (S.IN_PROGRESS,), S.FAILED),
        # Retrying failed recipients or re-sending unknown ones reopens a finished campaign.
        Transition("reopen", (S.COMPLETED, S.FAILED), S.IN_PROGRESS),
    )
}


def _past_participle(verb):
    return {"start": "started", "reopen": "reopened", "cancel": "cancelled"}.get(verb, verb.rstrip("e") + "ed")


def transition(campaign_id, name, where=None, **fields):
    """Apply transition NAME to the campaign if its current status allows it; return the new status.

    WHERE (a Q) narrows the condition further; extra FIELDS are written in the same UPDATE.
    """
    spec = TRANSITIONS[name]
    candidates = Campaign.objects.filter(pk=campaign_id, status__in=spec.sources)
    if where is not None:
        candidates = candidates.filter(where)
    changed = candidates.update(
        status=spec.target, updated_at=timezone.now(), **fields
    )
    if not changed:
        actual = Campaign.objects.filter(pk=campaign_id).values_list("status", flat=True).first()
        raise IllegalTransition(campaign_id, spec, actual)
    # Its outbound webhook event (in the caller's transaction), and the completion report once it commits.
    webhook_events.record_transition(campaign_id, name)
    if spec.target in REPORTED:
        label = campaign_label(campaign_id)
        transaction.on_commit(lambda: current_app.send_task(
            REPORT_TASK, kwargs={"campaign_id": campaign_id}, argsrepr=label))
    return spec.target


def schedule(campaign_id, when, **fields):
    return transition(campaign_id, "schedule", scheduled_at=when, **fields)


def unschedule(campaign_id):
    return transition(campaign_id, "unschedule", scheduled_at=None)


def start(campaign_id, due_by=None):
    """Start a scheduled campaign; with DUE_BY, only if it was scheduled for then or earlier."""
    where = Q(scheduled_at__lte=due_by) if due_by else None
    return transition(campaign_id, "start", where=where, started_at=timezone.now())


def pause(campaign_id, reason=""):
    """Pause; REASON says why when sending paused by itself (a provider problem), shown to staff."""
    return transition(campaign_id, "pause", paused_at=timezone.now(), pause_reason=reason)


def resume(campaign_id):
    return transition(campaign_id, "resume", paused_at=None, pause_reason="")


def cancel(campaign_id):
    return transition(campaign_id, "cancel", completed_at=timezone.now())


def complete(campaign_id, where=None):
    return transition(campaign_id, "complete", where=where, completed_at=timezone.now())


def fail(campaign_id, reason, where=None):
    return transition(campaign_id, "fail", where=where, completed_at=timezone.now(), last_error=reason)


def reopen(campaign_id):
    return transition(campaign_id, "reopen", completed_at=None, last_error="")


__all__ = ["TRANSITIONS", "transition", "schedule", "unschedule", "start", "pause", "resume", "cancel", "complete",
           "fail", "reopen"]
