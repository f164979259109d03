"""Play one chaos scenario against the real stack, then check the invariants (invariants.py).

The run has two phases. In the fault phase (Scenario.fault_seconds) campaigns start, servers change
behaviour, staff act and processes crash at the drawn moments. Then the faults stop (dead addresses
stay dead), killed processes are replaced, staff resume what they paused, and the run measures how
long every campaign takes to reach an end (liveness). Provider events are posted (late, twice, out
of order), staff resend what is still unknown, and the invariants are checked.
"""

import collections
import hashlib
import json
import os
import random
import signal
import time
from dataclasses import dataclass, field
from datetime import timedelta

import redis as redis_lib
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import connection
from django.test import Client

from campaigns import services
from campaigns.audience import follow_ups
from campaigns.audience.importing import uploads
from campaigns.engagement import provider_events, sendgrid_webhook, ses_webhook
from campaigns.exceptions import CampaignError, IllegalTransition
from campaigns.message import signed_links
from campaigns.models import (Campaign, CampaignVariant, DeliveryLog, Recipient, RecipientImport, SendingAccount,
                              SendingPool)
from tests.chaos import scenario as sc
from tests.chaos.stack import Beat, cpu_seconds, wait_until
from tests.support.redis_restart import restart_redis
from tests.support.workers import service_env, worker_for_tests

D = DeliveryLog.Status
S = Campaign.Status
LEASE_SECONDS = 4
TIMEOUT_SECONDS = 3  # SMTP and SendGrid: a "hang" of 5 s times out
EVIDENCE_EVENTS = {"processed", "delivered", "open", "click", "bounce", "spamreport", "unsubscribe",
                   "Send", "Delivery", "Bounce", "Complaint"}
IDLE_CPU_WINDOW_SECONDS = 3
DEAD = "^dead-"  # addresses every server refuses as dead (scenario.address), faults or not
UNSUBSCRIBE = '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>'
IMPORT_WAIT_SECONDS = 60
WEB_VERSION_SAMPLE = 4  # sent rows of each A/B campaign whose web version is read


@dataclass
class Run:
    """What happened, as the invariants need it (besides the servers' records and the database)."""
    scenario: sc.Scenario
    servers: dict
    account_server: dict = field(default_factory=dict)  # account id -> server name
    campaign_ids: list = field(default_factory=list)  # every campaign, follow-ups included
    routes: dict = field(default_factory=dict)  # campaign id -> the servers its mail may go through
    dead: set = field(default_factory=set)  # addresses refused as dead (550 5.1.1 / SendGrid 400)
    evidence_posted: set = field(default_factory=set)  # (campaign id, delivery id) with an evidence event
    suppressing_events: dict = field(default_factory=dict)  # address -> {reasons its events justify}
    allowed_resends: dict = field(default_factory=dict)  # (campaign id, address) -> explicit re-sends
    trace: list = field(default_factory=list)  # what was done when, for the report
    began: float = 0.0  # when the run's clock started (epoch seconds), the trace's 0
    max_senders_queue: int = 0
    batches_made: int = 0
    settle_seconds: float | None = None
    idle_cpu_seconds: float | None = None
    sender_killed: bool = False
    redis_restarted: bool = False  # the limiter's windows were lost with it
    started_at: dict = field(default_factory=dict)  # campaign id -> when staff started it (epoch seconds)
    crash_times: list = field(default_factory=list)  # when each crash happened (epoch seconds)
    fair_campaign: int | None = None  # the fairness campaign's id, if drawn
    fair_start_seconds: float | None = None  # its first arrival at a server after its start
    fair_judged: bool = False  # False: a crash fell in its window, so it was not held to the bound
    harness_violations: dict = field(default_factory=dict)  # invariant name -> [what the run saw while playing]
    requeued_from: collections.Counter = field(default_factory=collections.Counter)  # account name -> rows staff
    # sent again (retry failed, resend unknown) after an attempt through it: places that attempt may have used

    def violate(self, invariant, what):
        self.harness_violations.setdefault(invariant, []).append(what)

    def note(self, started, what):
        self.trace.append(f"{time.monotonic() - started:6.2f}s {what}")


def worker_settings(scenario, servers, media_root):
    sg, sink = servers[sc.ENV_SENDGRID_SERVER], servers[sc.ENV_SMTP_SERVER]
    return {
        "MEDIA_ROOT": str(media_root),
        "SITE_URL": "https://mail.chaos.test", "MACHINE_OPEN_SECONDS": 0,
        "SEND_LEASE_SECONDS": LEASE_SECONDS, "SWEEP_STALL_SECONDS": LEASE_SECONDS, "SWEEP_INTERVAL_SECONDS": 2,
        "SEND_SMTP_CHUNK": scenario.smtp_chunk, "SEND_SMTP_CONNECTIONS": scenario.smtp_connections,
        "SENDING_ACCOUNT_TIMEOUT_SECONDS": TIMEOUT_SECONDS, "SEND_BACKOFF_SECONDS": 0.2,
        "SENDGRID_API_KEY": sg.api_key, "SENDGRID_API_HOST": sg.url, "SENDGRID_TIMEOUT_SECONDS": TIMEOUT_SECONDS,
        "EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": sink.port, "EMAIL_HOST_USER": "", "EMAIL_HOST_PASSWORD": "",
        "EMAIL_USE_TLS": False, "EMAIL_TIMEOUT": TIMEOUT_SECONDS,
        **({"START_CHUNK_SIZE": scenario.start_chunk} if scenario.start_chunk else {}),
    }


def build(run):
    """The accounts, the pool and the campaigns of the scenario, in the database."""
    scenario = run.scenario
    accounts = []
    for i, plan in enumerate(scenario.accounts):
        server = run.servers[plan.server]
        fields = dict(name=f"{plan.server}-account", kind=plan.kind, per_second=plan.per_second,
                      per_minute=plan.per_minute, per_day=plan.per_day, weight=plan.weight)
        if plan.kind == "sendgrid":
            account = SendingAccount.objects.create(api_host=server.url, secret=server.api_key, **fields)
        else:
            # A user name, so the client authenticates (and a 535 is possible).
            account = SendingAccount.objects.create(host="127.0.0.1", port=server.port, username="chaos",
                                                    secret="chaos-password",
                                                    security=SendingAccount.Security.NONE, **fields)
        run.account_server[account.pk] = plan.server
        accounts.append(account)
    pool = SendingPool.objects.create(name="chaos-pool")
    pool.accounts.set(accounts)
    html = ('<p>Hello {{ first_name|default:"there" }} of {{ city }}</p>'
            '<p><a href="https://shop.chaos.test/sale">Sale</a></p><p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>')
    for plan in scenario.campaigns:
        campaign = Campaign.objects.create(
            name=f"chaos {scenario.seed}/{plan.index}", subject="News for {{ first_name }}",
            from_email="Acme <news@example.com>", html_body=html, batch_size=plan.batch_size,
            track_engagement=plan.track, pool=pool if plan.pooled else None, ab_test_percent=plan.ab_percent,
            ab_wait=timedelta(seconds=plan.ab_wait_seconds or 1))
        dead = set(plan.dead)
        people = [(sc.address(plan.index, i, i in dead), f"First{i}", ("Lisbon", "Porto", "Faro")[i % 3])
                  for i in range(plan.recipients)]
        if plan.imported:  # as staff do in the admin: a CSV, imported by the imports worker
            csv = "email,first_name,city\n" + "".join(f"{e},{f},{c}\n" for e, f, c in people)
            uploads.queue_import(None, campaign, ContentFile(csv.encode(), name=f"chaos-{plan.index}.csv"),
                                 f"chaos-{plan.index}.csv")
        else:
            Recipient.objects.bulk_create(Recipient(campaign=campaign, email=e, first_name=f, data={"city": c})
                                          for e, f, c in people)
            Campaign.objects.filter(pk=campaign.pk).update(total_recipients=plan.recipients)
        run.dead |= {sc.address(plan.index, i, True) for i in dead}
        if plan.segment_city:
            Campaign.objects.filter(pk=campaign.pk).update(
                segment={"match": "all", "conditions": [{"column": "city", "operator": "equals",
                                                         "value": plan.segment_city}]})
        for variant in plan.variants:
            made = CampaignVariant(campaign=campaign, letter=variant.letter, subject=variant.subject,
                                   html_body=variant.html + UNSUBSCRIBE)
            if plan.no_unsubscribe_first and variant is plan.variants[-1]:
                made.html_body = variant.html  # no unsubscribe link: the admin's form must refuse it ...
                try:
                    made.full_clean()
                    run.violate("variant_without_unsubscribe_refused",
                                f"campaign {campaign.pk}: variant {variant.letter} without an unsubscribe link saved")
                except ValidationError:
                    pass
            made.save()  # ... and, saved anyway (an older row, a raw write), scheduling must refuse it
        run.campaign_ids.append(campaign.pk)
        if plan.fair:
            run.fair_campaign = campaign.pk
        run.routes[campaign.pk] = ({a.server for a in scenario.accounts} if plan.pooled
                                   else {sc.ENV_SENDGRID_SERVER, sc.ENV_SMTP_SERVER})


def wait_for_imports(run):
    """Staff wait for their imports to finish before they start the campaigns."""
    def finished():
        return not RecipientImport.objects.filter(campaign_id__in=run.campaign_ids).exclude(
            status__in=(RecipientImport.Status.SUCCEEDED, RecipientImport.Status.FAILED)).exists()
    if not wait_until(finished, IMPORT_WAIT_SECONDS):
        run.violate("imports_finish", f"imports still running after {IMPORT_WAIT_SECONDS} s")
    for plan in run.scenario.campaigns:
        if not plan.imported:
            continue
        campaign_id = run.campaign_ids[plan.index]
        record = RecipientImport.objects.filter(campaign_id=campaign_id).values("status", "error").first()
        count = Recipient.objects.filter(campaign_id=campaign_id).count()
        total = Campaign.objects.get(pk=campaign_id).total_recipients
        if record["status"] != RecipientImport.Status.SUCCEEDED or count != plan.recipients or total != count:
            run.violate("imports_finish", f"campaign {campaign_id}: import {record}, {count} recipients "
                                          f"(total_recipients {total}) of {plan.recipients} in the file")


def start_campaign(run, started, plan):
    """Staff press "Send now"; an A/B test whose variant has no unsubscribe link must be refused, then is
    fixed and started again."""
    campaign_id = run.campaign_ids[plan.index]
    if plan.no_unsubscribe_first:
        try:
            result = services.send_now(campaign_id)
            run.violate("variant_without_unsubscribe_refused",
                        f"campaign {campaign_id}: started with a variant without an unsubscribe link: {result}")
        except (CampaignError, IllegalTransition) as error:
            run.note(started, f"start campaign {campaign_id}: refused as it should be: {error}")
        letter = plan.variants[-1].letter
        CampaignVariant.objects.filter(campaign_id=campaign_id, letter=letter).update(
            html_body=plan.variants[-1].html + UNSUBSCRIBE)
    try:
        run.started_at[campaign_id] = time.time()
        run.note(started, f"start campaign {campaign_id}: {services.send_now(campaign_id)}")
    except (CampaignError, IllegalTransition) as error:
        run.started_at.pop(campaign_id, None)
        run.note(started, f"start campaign {campaign_id}: refused: {error}")


def check_web_versions(run):
    """The web version of a sample of each A/B campaign's sent rows shows the variant the recipient got:
    the subject the server received says which ("Variant X for ..."), the page says "Variant X body"."""
    subjects = {}
    for server in run.servers.values():
        subjects.update(server.subjects())
    client = Client()
    checked = 0
    for campaign_id in run.campaign_ids:
        if not CampaignVariant.objects.filter(campaign_id=campaign_id).exists():
            continue
        sent = list(DeliveryLog.objects.filter(campaign_id=campaign_id, status=D.SENT).order_by("pk")
                    .values_list("pk", flat=True))
        for delivery_id in sent[::max(1, len(sent) // WEB_VERSION_SAMPLE)][:WEB_VERSION_SAMPLE]:
            subject = subjects.get((campaign_id, delivery_id), "")
            if not subject.startswith("Variant "):
                continue  # a follow-up's own subject, or not received (a re-send)
            letter = subject.split()[1]
            url = signed_links.web_url(delivery_id)
            page = client.get(url[url.index("/w/"):])
            checked += 1
            shown = page.content.decode(errors="replace")
            if page.status_code != 200 or f"Variant {letter} body" not in shown:
                found = [x for x in "ABCD" if f"Variant {x} body" in shown]
                run.violate("web_version_shows_the_variant",
                            f"campaign {campaign_id}: delivery {delivery_id} received variant {letter}, its web "
                            f"version ({page.status_code}) shows {found or 'no variant'}")
    return checked


def measure_fairness(run):
    """The fairness campaign's first message arrives within the bound of its start."""
    campaign_id = run.fair_campaign
    if campaign_id is None or campaign_id not in run.started_at:
        return
    began = run.started_at[campaign_id]
    arrivals = [at for server in run.servers.values() for campaign, _, at, _ in server.receipts()
                if campaign == campaign_id]
    run.fair_start_seconds = min(arrivals) - began if arrivals else None
    # A crash between its start and its first message (or the bound) may have delayed it: not judged then.
    window_end = began + (sc.FAIRNESS_BOUND_SECONDS if run.fair_start_seconds is None else run.fair_start_seconds)
    run.fair_judged = not any(began - 1 <= at <= window_end for at in run.crash_times)
    if run.fair_judged and (run.fair_start_seconds is None or run.fair_start_seconds > sc.FAIRNESS_BOUND_SECONDS):
        others = list(Campaign.objects.filter(pk__in=run.campaign_ids).values_list("pk", "status", "sent_count"))
        run.violate("fairness", f"campaign {campaign_id} (its providers had room) started sending "
                    f"{'never' if run.fair_start_seconds is None else f'{run.fair_start_seconds:.1f} s'} after it was "
                    f"started, over the bound of {sc.FAIRNESS_BOUND_SECONDS} s; campaigns: {others}")


def apply_fault(run, fault):
    run.servers[fault.server].set_faults(DEAD, fault.settings)


def clear_faults(run):
    for server in run.servers.values():
        server.set_faults(DEAD, {})


class Processes:
    """The worker processes and beat of one seed; crashes replace what they kill."""

    def __init__(self, env, log_dir):
        self.env = env  # every worker setting (the test's worker_env)
        self.log_dir = log_dir
        self.senders = []
        self.stopping = []  # SIGTERMed senders finishing their batch
        self.scheduler = None
        self.beat = None
        self.started = []  # every worker, to stop at the end

    def start_worker(self, queues, concurrency=1):
        worker = worker_for_tests(queues, self.log_dir, concurrency, **self.env).start()
        self.started.append(worker)
        return worker

    def start(self):
        """The scheduler, imports and two sender workers, launched together (each takes seconds to
        start), then beat."""
        workers = [worker_for_tests(queues, self.log_dir, 1, **self.env).launch()
                   for queues in (["scheduler"], ["imports"], ["senders"], ["senders"])]
        self.started += workers
        for worker in workers:
            worker.wait_ready()
        self.scheduler, _, *self.senders = workers
        self.beat = Beat(self.log_dir, service_env(**self.env)).start()

    def stop(self):
        """Every process at once, with SIGKILL: the run is over (everything settled, or the seed failed),
        and the next seed starts on an empty database and broker."""
        if self.beat:
            self.beat.stop()
        for worker in self.started:
            worker.kill()

    def sender_pids(self):
        return [pid for worker in self.senders + self.stopping if worker.proc.poll() is None
                for pid in worker.process_ids()]

    def crash(self, what, rng):
        if what == "sigkill_sender":
            victim = rng.randrange(len(self.senders))
            self.senders[victim].kill()
            self.senders[victim] = self.start_worker(["senders"], concurrency=1)
        elif what == "sigterm_sender":
            # As `docker stop` does: SIGTERM to the main process only, whose warm shutdown lets the batch in
            # hand finish; it is replaced at once, and the old one is reaped when it has exited.
            victim = rng.randrange(len(self.senders))
            self.stopping.append(self.senders[victim])
            os.kill(self.senders[victim].proc.pid, signal.SIGTERM)
            self.senders[victim] = self.start_worker(["senders"], concurrency=1)
        elif what == "sigkill_scheduler":
            self.scheduler.kill()
            self.scheduler = self.start_worker(["scheduler"], concurrency=1)
        elif what == "redis_restart":
            restart_redis(settings.REDIS_URL)
        elif what == "pg_terminate":
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                               "WHERE datname = current_database() AND pid <> pg_backend_pid()")
                return cursor.fetchone()[0]


def set_sweep_interval(seconds):
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    from campaigns.operations.periodic import register_periodic_tasks

    register_periodic_tasks()  # the rows were flushed with the previous seed's database
    interval, _ = IntervalSchedule.objects.get_or_create(every=seconds, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.filter(task="campaigns.tasks.scheduler.sweep").update(interval=interval)


def staff(run, started, event, rng):
    """One staff action, through campaigns.services (what the admin calls)."""
    campaign_id = run.campaign_ids[event.campaign]
    action = event.what
    try:
        if action == "pause_resume":
            services.pause(campaign_id)
            return ("resume", campaign_id)
        if action == "cancel":
            result = services.cancel(campaign_id)
        elif action == "retry_failed":
            note_requeued(run, campaign_id, D.FAILED)
            result = services.retry_failed(campaign_id)
        elif action == "resend_unknown":
            result = resend_unknown(run, campaign_id)
        elif action == "pick_winner":
            variants = list(CampaignVariant.objects.filter(campaign_id=campaign_id).values_list("pk", flat=True))
            if not variants:
                return None
            result = services.pick_ab_winner(campaign_id, rng.choice(variants))
        elif action == "follow_up":
            made = follow_ups.create_follow_up(campaign_id, "non_openers")
            run.campaign_ids.append(made.campaign.pk)
            run.routes[made.campaign.pk] = run.routes[campaign_id]  # a follow-up keeps its campaign's pool
            result = f"follow-up {made.campaign.pk}: " + services.send_now(made.campaign.pk)
        run.note(started, f"staff {action} campaign {campaign_id}: {result}")
    except (CampaignError, IllegalTransition) as error:  # the action did not apply then
        run.note(started, f"staff {action} campaign {campaign_id}: refused: {error}")
    return None


def note_requeued(run, campaign_id, status):
    """The accounts the rows of STATUS went through before staff send them again (an over-count if the
    action is then refused: the usage invariant only allows for more places with it)."""
    run.requeued_from.update(DeliveryLog.objects.filter(campaign_id=campaign_id, status=status)
                             .values_list("provider", flat=True))


def resend_unknown(run, campaign_id):
    """Staff's explicit "Resend unknown": the rows unknown now may be mailed again, unless the provider
    gave evidence for them (then the invariants count a second message as a violation)."""
    note_requeued(run, campaign_id, D.UNKNOWN)
    unknown = list(DeliveryLog.objects.filter(campaign_id=campaign_id, status=D.UNKNOWN).values_list("pk", "email"))
    run.trace.append(f"        unknown rows before the re-send of campaign {campaign_id} (id, address, evidence "
                     f"posted): {[(pk, email, (campaign_id, pk) in run.evidence_posted) for pk, email in unknown]}")
    result = services.resend_unknown(campaign_id)
    for delivery_id, email in unknown:
        if (campaign_id, delivery_id) not in run.evidence_posted:
            key = (campaign_id, email.lower())
            run.allowed_resends[key] = run.allowed_resends.get(key, 0) + 1
    return result


def senders_queue_length(client):
    try:
        return client.llen("senders")
    except redis_lib.RedisError:  # restarting
        return 0


def settled(campaign_ids):
    """Every campaign at an end, paused with a reason, or waiting for its accounts' quota."""
    now = time.time()
    for status, reason, quota_wait in Campaign.objects.filter(pk__in=campaign_ids).values_list(
            "status", "pause_reason", "quota_wait_until"):
        if status in (S.COMPLETED, S.CANCELLED, S.FAILED, S.DRAFT):  # a draft: its start was refused
            continue
        if status == S.PAUSED and reason:
            continue
        if status == S.IN_PROGRESS and quota_wait and quota_wait.timestamp() > now + 30:
            continue
        return False
    return True


# --- provider events ---------------------------------------------------------------------------------

def _draw(seed, *key):
    digest = hashlib.sha256(json.dumps([seed, *key]).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64


def post_events(run, rng, only_final):
    """Events for what the servers received: SendGrid's for its APIs, SES's for the SMTP servers; some
    twice, in shuffled order. ONLY_FINAL: only for rows that have their result (no early evidence)."""
    final = None
    if only_final:
        final = set(DeliveryLog.objects.filter(campaign_id__in=run.campaign_ids).exclude(status=D.PENDING)
                    .values_list("pk", flat=True))
    sendgrid_events, ses_events = [], []
    for name, server in run.servers.items():
        for campaign_id, email, at, delivery_id in server.receipts():
            if not campaign_id or not delivery_id or (final is not None and delivery_id not in final):
                continue
            roll = _draw(run.scenario.seed, campaign_id, email)
            if name.startswith("sg"):
                kinds = ["processed", "delivered"]
                kinds += ["bounce"] if roll < 0.05 else ["spamreport"] if roll < 0.08 else \
                         ["unsubscribe"] if roll < 0.11 else ["open", "click"] if roll < 0.5 else []
                for kind in kinds:
                    event = {"email": email, "timestamp": int(at) + 1, "event": kind,
                             "sg_event_id": f"{kind}-{campaign_id}-{delivery_id}", "sg_message_id": "x.y",
                             "campaign_id": str(campaign_id), "delivery_id": str(delivery_id)}
                    if kind == "bounce":
                        event.update(type="bounce", reason="550 5.1.1 no such user")
                    if kind == "click":
                        event["url"] = "https://shop.chaos.test/sale"
                    sendgrid_events.append((campaign_id, delivery_id, email, kind, event))
            else:
                kinds = ["Send", "Delivery"]
                kinds += ["Bounce"] if roll < 0.05 else ["Complaint"] if roll < 0.08 else []
                for kind in kinds:
                    # An SNS MessageId is unique (a redelivery repeats it): the seed's clock in it, since
                    # campaigns_webhook_event (the ids seen) is a table the database flush between seeds keeps.
                    sns_id = f"sns-{run.began}-{campaign_id}-{delivery_id}-{kind}"
                    event = {"sns_id": sns_id, "eventType": kind, "mail": {
                        "timestamp": "2026-01-01T00:00:00.000Z", "destination": [email],
                        "headers": [{"name": "X-Delivery-ID", "value": str(delivery_id)},
                                    {"name": "X-Campaign-ID", "value": str(campaign_id)}]}}
                    if kind == "Delivery":
                        event["delivery"] = {"recipients": [email]}
                    elif kind == "Bounce":
                        event["bounce"] = {"bounceType": "Permanent", "bounceSubType": "General",
                                           "bouncedRecipients": [{"emailAddress": email}]}
                    elif kind == "Complaint":
                        event["complaint"] = {"complainedRecipients": [{"emailAddress": email}]}
                    ses_events.append((campaign_id, delivery_id, email, kind, event))
    for events in (sendgrid_events, ses_events):
        if run.scenario.duplicate_events:
            events += rng.sample(events, len(events) // 3)
        rng.shuffle(events)
    for campaign_id, delivery_id, email, kind, _ in sendgrid_events + ses_events:
        if kind in EVIDENCE_EVENTS:
            run.evidence_posted.add((campaign_id, delivery_id))
        reason = {"bounce": "bounced", "Bounce": "bounced", "spamreport": "complained", "Complaint": "complained",
                  "unsubscribe": "unsubscribed"}.get(kind)
        if reason:
            run.suppressing_events.setdefault(email, set()).add(reason)
    for start in range(0, len(sendgrid_events), 50):  # as the webhook receives them: in batches
        body = json.dumps([event for *_, event in sendgrid_events[start:start + 50]]).encode()
        sendgrid_webhook.apply_events(sendgrid_webhook.parse(body))
    for *_, event in ses_events:
        provider_events.apply_events(ses_webhook.to_provider_events(event["sns_id"], event, time.time()))
    return len(sendgrid_events) + len(ses_events)


# --- the run -----------------------------------------------------------------------------------------

def play(scenario, servers, worker_env, test_settings, log_dir):
    """Play SCENARIO on SERVERS with worker processes (WORKER_ENV: the test's settings for them, to which
    the run adds its own); return the Run. TEST_SETTINGS is pytest-django's `settings` fixture, which
    restores what the run changes once the test ends. The caller provides a transactional database and
    an empty broker (the `start_worker` fixture does)."""
    run = Run(scenario, servers)
    media = log_dir / "media"
    media.mkdir(exist_ok=True)
    env = worker_settings(scenario, servers, media)
    worker_env.update(env)
    for name, value in env.items():
        setattr(test_settings, name, value)
    rng = random.Random(f"{scenario.seed}-run")  # choices made while playing (which worker dies ...)
    for server in servers.values():
        server.clear()
    clear_faults(run)
    build(run)
    set_sweep_interval(2)
    processes = Processes(dict(worker_env), log_dir)
    client = redis_lib.Redis.from_url(settings.REDIS_URL)
    try:
        processes.start()
        wait_for_imports(run)
        _play(run, processes, client, rng)
    finally:
        processes.stop()
        client.close()
    return run


def _play(run, processes, client, rng):
    scenario = run.scenario
    started = time.monotonic()
    run.began = time.time()
    todo = ([(p.start_at, "start", p) for p in scenario.campaigns] + [(f.at, "fault", f) for f in scenario.faults]
            + [(e.at, "event", e) for e in scenario.events])
    todo.sort(key=lambda item: (item[0], item[1]))
    resumes = []
    next_events = 2.0
    while time.monotonic() - started < scenario.fault_seconds or todo:
        elapsed = time.monotonic() - started
        while todo and todo[0][0] <= elapsed:
            _, kind, item = todo.pop(0)
            if kind == "start":
                start_campaign(run, started, item)
            elif kind == "fault":
                apply_fault(run, item)
                run.note(started, f"server {item.server}: {item.settings}")
            elif item.what in sc.CRASHES + ("redis_restart",):
                run.crash_times.append(time.time())
                starting = dict(Campaign.objects.filter(pk__in=run.campaign_ids, start_cursor__isnull=False)
                                .values_list("pk", "start_cursor"))
                result = processes.crash(item.what, rng)
                run.sender_killed |= item.what in ("sigkill_sender", "pg_terminate", "redis_restart")
                run.redis_restarted |= item.what == "redis_restart"
                run.note(started, f"crash {item.what}" + (f": {result} connections" if result is not None else "")
                         + (f" (starts under way, campaign: cursor: {starting})" if starting else ""))
            else:
                resume = staff(run, started, item, rng)
                if resume:
                    resumes.append((time.monotonic() - started + 2, resume[1]))
        for at, campaign_id in [r for r in resumes if r[0] <= elapsed]:
            resumes.remove((at, campaign_id))
            _resume(run, started, campaign_id)
        if scenario.provider_events == "early" and elapsed >= next_events:
            next_events = elapsed + 2
            post_events(run, rng, only_final=False)
        run.max_senders_queue = max(run.max_senders_queue, senders_queue_length(client))
        time.sleep(0.25)

    # The faults stop: dead addresses stay dead; staff resume what they paused.
    clear_faults(run)
    for _, campaign_id in resumes:
        _resume(run, started, campaign_id)
    quiet = time.monotonic()
    run.note(started, "faults stop")
    done = wait_until(lambda: _tick(run, client) and settled(run.campaign_ids), sc.LIVENESS_BOUND_SECONDS)
    run.settle_seconds = time.monotonic() - quiet if done else None
    run.note(started, f"settled after {run.settle_seconds}" if done else "NOT settled within the bound")
    measure_fairness(run)
    if not done:
        return
    run.note(started, f"{check_web_versions(run)} web versions of A/B rows read")
    # Late events (twice, out of order), then staff resend what is still unknown, explicitly.
    posted = post_events(run, rng, only_final=True)
    run.note(started, f"{posted} provider events posted")
    for campaign_id in list(run.campaign_ids):
        if DeliveryLog.objects.filter(campaign_id=campaign_id, status=D.UNKNOWN).exists():
            try:
                run.note(started, f"staff resend_unknown campaign {campaign_id}: {resend_unknown(run, campaign_id)}")
            except (CampaignError, IllegalTransition) as error:
                run.note(started, f"staff resend_unknown campaign {campaign_id}: refused: {error}")
    again = time.monotonic()
    done = wait_until(lambda: _tick(run, client) and settled(run.campaign_ids), sc.LIVENESS_BOUND_SECONDS)
    run.note(started, f"settled again after {time.monotonic() - again:.1f}s" if done else "NOT settled after resend")
    if not done:
        run.settle_seconds = None
        return
    # No worker spins once everything has settled.
    pids = processes.sender_pids()
    before = cpu_seconds(pids)
    time.sleep(IDLE_CPU_WINDOW_SECONDS)
    run.idle_cpu_seconds = cpu_seconds(pids) - before


def _tick(run, client):
    run.max_senders_queue = max(run.max_senders_queue, senders_queue_length(client))
    return True


def _resume(run, started, campaign_id):
    try:
        run.note(started, f"staff resume campaign {campaign_id}: {services.resume(campaign_id)}")
    except (CampaignError, IllegalTransition) as error:
        run.note(started, f"staff resume campaign {campaign_id}: refused: {error}")
