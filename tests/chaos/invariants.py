"""The invariants every chaos seed must keep, checked against the servers' own records (what each
SMTP sink stored and accepted a RCPT for, what each fake SendGrid recorded or held) and the database.

Each check returns a list of violations (strings naming campaigns, addresses and figures); empty
when it holds. docs/delivery-guarantees.md, "The chaos run", states them for readers.
"""

import bisect
import collections

import redis as redis_lib
from django.conf import settings
from django.db.models import Sum

from campaigns.models import (Campaign, DeliveryLog, Recipient, SendBatch, SendingAccount, SendingAccountUsage,
                              Suppression)
from campaigns.sending.ledger import check_counters
from campaigns.sending.routing import rate_key
from tests.chaos import scenario as sc

D = DeliveryLog.Status
# An idle sender's heartbeat and broker polling cost far less than this in the window measured.
IDLE_CPU_LIMIT_SECONDS = 0.6
# No task storms: the senders queue never holds much more than one task per batch made.
QUEUE_SLACK = 20


def most_in_window(times, seconds):
    """The most of TIMES (epoch seconds) in any sliding window [t, t + SECONDS)."""
    times = sorted(times)
    return max((bisect.bisect_left(times, start + seconds) - i for i, start in enumerate(times)), default=0)


def receipts(run):
    """[(server name, campaign id, address, arrival, delivery id)] of every message the servers stored."""
    return [(name, *receipt) for name, server in run.servers.items() for receipt in server.receipts()]


def rows(run):
    return list(DeliveryLog.objects.filter(campaign_id__in=run.campaign_ids).values(
        "pk", "campaign_id", "email", "status", "provider", "last_error", "attempts"))


def nobody_twice(run, got, logs):
    """Nobody receives a campaign twice, except through an explicit "Resend unknown" of a row that had
    no evidence."""
    counts = collections.Counter((campaign, address) for _, campaign, address, _, _ in got)
    found = []
    for (campaign, address), n in sorted(counts.items()):
        if n > 1 + run.allowed_resends.get((campaign, address), 0):
            copies = sorted((at, name, delivery) for name, c, a, at, delivery in got if (c, a) == (campaign, address))
            states = [(row["pk"], row["status"], row["last_error"][:80]) for row in logs
                      if row["campaign_id"] == campaign and row["email"].lower() == address]
            found.append(f"campaign {campaign}: {address} received {n} times (explicit re-sends allowed: "
                         f"{run.allowed_resends.get((campaign, address), 0)}): "
                         + ", ".join(f"at {at - run.began:.2f}s by {name} (delivery {delivery})"
                                     for at, name, delivery in copies) + f"; its rows now: {states}")
    return found


def ledger_matches_servers(run, got, logs):
    """A `sent` row was received by some server; a `failed` or `skipped` row by none; an `unknown`
    row is a message some server saw or had in flight."""
    received = {(campaign, address) for _, campaign, address, _, _ in got}
    seen = set().union(*(s.accepted_rcpts() for s in run.servers.values() if hasattr(s, "accepted_rcpts")))
    held = set().union(*(s.in_flight() for s in run.servers.values() if hasattr(s, "in_flight")))
    ended = set(Campaign.objects.filter(pk__in=run.campaign_ids, status__in=(
        Campaign.Status.COMPLETED, Campaign.Status.CANCELLED, Campaign.Status.FAILED)).values_list("pk", flat=True))
    found = []
    for row in logs:
        key = (row["campaign_id"], row["email"].lower())
        if row["status"] == D.SENT and key not in received:
            found.append(f"campaign {key[0]}: {key[1]} is sent but no server received it")
        elif row["status"] in (D.FAILED, D.SKIPPED) and key in received:
            found.append(f"campaign {key[0]}: {key[1]} is {row['status']} ({row['last_error'][:80]}) but a server "
                         "received it")
        elif row["status"] == D.UNKNOWN and key not in received and key[1] not in seen | held:
            found.append(f"campaign {key[0]}: {key[1]} is unknown but no server saw it or had it in flight")
        elif row["status"] == D.PENDING and key[0] in ended:
            found.append(f"campaign {key[0]}: {key[1]} is still pending, and its campaign has ended")
    return found


def routed_through_its_pool(run, got, logs):
    """A campaign's mail arrives only at its pool's accounts (or, without a pool, the environment's
    providers); a follow-up's goes where its campaign's went."""
    found = collections.Counter((campaign, name) for name, campaign, *_ in got
                                if campaign in run.routes and name not in run.routes[campaign])
    return [f"campaign {campaign}: {n} messages arrived at {name}, outside its pool ({sorted(run.routes[campaign])})"
            for (campaign, name), n in sorted(found.items())]


def suppressions_justified(run, got, logs):
    """Suppressions come only from address-level permanent refusals, bounces, complaints and
    unsubscribes."""
    found = []
    for email, reason in Suppression.objects.values_list("email", "reason"):
        justified = run.suppressing_events.get(email, set())
        if reason == Suppression.Reason.BOUNCED and email in run.dead:
            continue
        if reason not in justified:
            found.append(f"{email} suppressed as {reason} with no dead address, bounce, complaint or unsubscribe "
                         "behind it")
    return found


def limits_hold(run, got, logs):
    """Every per-second limit and every account window holds at the server."""
    found = []
    if run.redis_restarted:
        return found  # the limiter's memory is Redis: an empty Redis starts every window again
    for account in SendingAccount.objects.all():
        server = run.account_server.get(account.pk)
        times = [at for name, _, _, at, _ in got if name == server]
        for limit, seconds, what in ((account.per_second, 1.0, "second"), (account.per_minute, 60.0, "minute"),
                                     (account.per_day, settings.SENDING_ACCOUNT_DAY_SECONDS, "day")):
            if limit and most_in_window(times, seconds) > limit:
                found.append(f"account {account.name}: {most_in_window(times, seconds)} messages arrived within "
                             f"one {what}, over its limit of {limit}")
    return found


def counters_and_usage(run, got, logs):
    """Counters equal rows (check_ledger); the usage table counts exactly the rows sent through each
    account, and no more than its server received; no quota place is left reserved."""
    found = [f"counter drift: {drift}" for drift in check_counters(run.campaign_ids)]
    client = redis_lib.Redis.from_url(settings.REDIS_URL)
    try:
        for account in SendingAccount.objects.all():
            server = run.account_server.get(account.pk)
            received = sum(1 for name, *_ in got if name == server)
            usage = SendingAccountUsage.objects.filter(account=account).aggregate(n=Sum("sent"))["n"] or 0
            sent_rows = sum(1 for row in logs if row["status"] == D.SENT and row["provider"] == account.name
                            and not row["last_error"].startswith("sent:"))
            if usage > received:
                found.append(f"account {account.name}: usage {usage} > {received} its server received")
            if usage != sent_rows:  # usage is written with each chunk's results, in their transaction
                found.append(f"account {account.name}: usage {usage} != {sent_rows} rows sent through it")
            places = sum(int(member.rsplit(b":", 1)[1])
                         for member in client.zrange(f"quota:{rate_key(account)}:day", 0, -1))
            refused = sum(1 for row in logs if row["provider"] == account.name and row["status"] != D.SENT)
            in_flight = held_by(run.servers.get(server), {address for name, _, address, _, _ in got if name == server})
            # A row staff sent again (retry failed, resend unknown) used a place here on its earlier attempt,
            # whichever account its last attempt went through.
            earlier = run.requeued_from[account.name]
            if run.redis_restarted:
                continue  # the windows began again with the empty Redis
            if places < received:
                found.append(f"account {account.name}: {places} places in its day window < {received} its server "
                             "received (the windows undercount)")
            # A message in flight when its send ended (a hang, a lost connection) may have been taken: its
            # place stays, even once "Resend unknown" has sent it again elsewhere.
            if not run.sender_killed and places > received + refused + in_flight + earlier:
                found.append(f"account {account.name}: {places} places in its day window > {received} received + "
                             f"{refused} refused or unknown + {in_flight} in flight at its server + {earlier} "
                             "earlier attempts of rows staff sent again (places left reserved)")
    finally:
        client.close()
    return found


def held_by(server, stored):
    """How many messages SERVER had in flight without storing them: the addresses of the requests a fake
    SendGrid held, or those an SMTP sink accepted a RCPT for but stored no message to (STORED)."""
    if server is None:
        return 0
    if hasattr(server, "in_flight"):
        return len(server.in_flight())
    return len(server.accepted_rcpts() - stored)


def liveness(run, got, logs):
    """Once the faults stop, every campaign ends (or is paused with a reason, or waits for quota) within
    the bound; the senders queue stays bounded; no idle worker spins."""
    found = []
    if run.settle_seconds is None:
        states = list(Campaign.objects.filter(pk__in=run.campaign_ids).values_list(
            "pk", "status", "pause_reason", "quota_wait_until", "sent_count", "total_recipients"))
        found.append(f"not every campaign reached an end within {sc.LIVENESS_BOUND_SECONDS} s of the faults stopping: "
                     f"{states}")
    bound = run.batches_made + QUEUE_SLACK
    if run.max_senders_queue > bound:
        found.append(f"the senders queue reached {run.max_senders_queue} tasks (bound {bound}: a task storm)")
    if run.idle_cpu_seconds is not None and run.idle_cpu_seconds > IDLE_CPU_LIMIT_SECONDS:
        found.append(f"idle sender workers used {run.idle_cpu_seconds:.2f} s of CPU in 3 s (spinning)")
    return found


def one_log_per_recipient(run, got, logs):
    """Every recipient of a started campaign's audience (its segment's) has exactly one delivery log, and
    nobody else has one, however its start was cut into chunks or interrupted; no start is left under way."""
    found = []
    plans = dict(zip(run.campaign_ids, run.scenario.campaigns))
    for campaign_id, plan in plans.items():
        campaign = Campaign.objects.filter(pk=campaign_id).values("started_at", "start_cursor").get()
        if campaign["started_at"] is None:
            continue
        if campaign["start_cursor"] is not None:
            found.append(f"campaign {campaign_id}: its start is still under way (cursor {campaign['start_cursor']})")
        logged = collections.Counter(DeliveryLog.objects.filter(campaign_id=campaign_id)
                                     .values_list("recipient_id", flat=True))
        recipients = Recipient.objects.filter(campaign_id=campaign_id)
        if plan.segment_city:
            recipients = recipients.filter(data__city=plan.segment_city)
        audience = set(recipients.values_list("pk", flat=True))
        twice = [pk for pk, n in logged.items() if n > 1]
        if twice or set(logged) != audience:
            found.append(f"campaign {campaign_id}: {len(audience - set(logged))} of its {len(audience)} recipients "
                         f"have no delivery log, {len(set(logged) - audience)} outside its audience have one, "
                         f"{len(twice)} have more than one")
    return found


CHECKS = (liveness, one_log_per_recipient, nobody_twice, ledger_matches_servers, routed_through_its_pool, suppressions_justified, limits_hold,
          counters_and_usage)


def check(run):
    """{invariant name: [violations]} of every invariant broken by RUN, with those the run saw while playing
    (run.Run.violate: fairness, imports, the refusal of a variant without an unsubscribe link, the web
    version of A/B recipients)."""
    run.batches_made = SendBatch.objects.filter(campaign_id__in=run.campaign_ids).count()
    got = receipts(run)
    logs = rows(run)
    broken = {name: list(found) for name, found in run.harness_violations.items()}
    for invariant in CHECKS:
        violations = invariant(run, got, logs)
        if violations:
            broken[invariant.__name__] = violations
    return broken
