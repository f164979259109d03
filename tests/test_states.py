import threading

import pytest
from django.db import connection
from django.utils import timezone

from campaigns import states
from campaigns.exceptions import IllegalTransition
from campaigns.models import Campaign
from tests.support.factories import CampaignFactory

S = Campaign.Status
ALL = list(S)

# (action, call) for every transition function in campaigns.states.
ACTIONS = {
    "schedule": lambda pk: states.schedule(pk, timezone.now()),
    "unschedule": states.unschedule,
    "start": states.start,
    "pause": states.pause,
    "resume": states.resume,
    "cancel": states.cancel,
    "complete": states.complete,
    "fail": lambda pk: states.fail(pk, "nothing could be sent"),
    "reopen": states.reopen,
}
LEGAL = {
    "schedule": {S.DRAFT: S.SCHEDULED, S.SCHEDULED: S.SCHEDULED},
    "unschedule": {S.SCHEDULED: S.DRAFT},
    "start": {S.SCHEDULED: S.IN_PROGRESS},
    "pause": {S.IN_PROGRESS: S.PAUSED},
    "resume": {S.PAUSED: S.IN_PROGRESS},
    "cancel": {S.DRAFT: S.CANCELLED, S.SCHEDULED: S.CANCELLED, S.IN_PROGRESS: S.CANCELLED,
               S.PAUSED: S.CANCELLED},
    "complete": {S.IN_PROGRESS: S.COMPLETED},
    "fail": {S.IN_PROGRESS: S.FAILED},
    "reopen": {S.COMPLETED: S.IN_PROGRESS, S.FAILED: S.IN_PROGRESS},
}
CASES = [(action, source) for action in ACTIONS for source in ALL]


@pytest.mark.django_db
@pytest.mark.parametrize("action,source", CASES, ids=[f"{a}-from-{s}" for a, s in CASES])
def test_every_transition_is_legal_or_refused_with_a_clear_error(action, source):
    campaign = CampaignFactory(status=source)
    expected = LEGAL[action].get(source)
    if expected:
        assert ACTIONS[action](campaign.pk) == expected
        campaign.refresh_from_db()
        assert campaign.status == expected
    else:
        with pytest.raises(IllegalTransition) as excinfo:
            ACTIONS[action](campaign.pk)
        message = str(excinfo.value)
        assert f"Cannot {action} campaign #{campaign.pk}" in message
        assert f"it is {S(source).label.lower()}" in message
        campaign.refresh_from_db()
        assert campaign.status == source  # nothing changed


@pytest.mark.django_db
def test_transitions_record_their_timestamps_and_reason():
    campaign = CampaignFactory(status=S.SCHEDULED)
    states.start(campaign.pk)
    states.pause(campaign.pk)
    campaign.refresh_from_db()
    assert campaign.started_at and campaign.paused_at
    states.resume(campaign.pk)
    states.fail(campaign.pk, "SendGrid and SMTP both refused")
    campaign.refresh_from_db()
    assert campaign.paused_at is None
    assert campaign.completed_at is not None
    assert campaign.last_error == "SendGrid and SMTP both refused"


@pytest.mark.django_db
def test_transition_on_a_deleted_campaign_says_so():
    campaign = CampaignFactory()
    pk = campaign.pk
    campaign.delete()
    with pytest.raises(IllegalTransition, match="it does not exist"):
        states.cancel(pk)


@pytest.mark.django_db(transaction=True)
def test_two_connections_racing_to_start_a_campaign_exactly_one_wins():
    for _ in range(20):
        campaign = CampaignFactory(status=S.SCHEDULED, scheduled_at=timezone.now())
        barrier = threading.Barrier(2)
        outcomes = []

        def try_start():
            try:
                barrier.wait()
                outcomes.append(states.start(campaign.pk))
            except IllegalTransition as error:
                outcomes.append(error)
            finally:
                connection.close()  # each thread has its own database connection

        threads = [threading.Thread(target=try_start) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        winners = [o for o in outcomes if o == S.IN_PROGRESS]
        losers = [o for o in outcomes if isinstance(o, IllegalTransition)]
        assert len(winners) == 1 and len(losers) == 1
        assert losers[0].actual_status == S.IN_PROGRESS
