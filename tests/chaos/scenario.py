"""A chaos scenario drawn from a seed: accounts and a pool, campaigns, server faults over time, staff
actions, crashes and provider events. Plain data (dataclasses), so a failing seed prints exactly what
it played; the same seed and knobs always draw the same scenario.

KNOBS turn on draws that exercise the defects of issue 21 being fixed on other branches, so that CI
seeds can stay off them until those fixes are merged (docs/delivery-guarantees.md lists which knob
finds which defect):
  slow_rates      per-second limits of 1 or 2 and per-minute limits (defect 1: pacing below the
                  connection count)
  sender_refused  a relay that answers 550 5.1.0 "Sender address rejected" (defect 2)
  bad_variant     an A/B variant whose subject cannot render (defect 3)
  early_events    provider events posted while their rows are still pending (defect 4)
  many_dead       a quarter of a campaign's addresses dead (the suppression circuit breaker, defect 2)
  busy_loop       SEND_SMTP_CONNECTIONS >= SEND_SMTP_CHUNK with 421 after every DATA (defect 10)
  follow_ups      kept for old command lines: staff make and send follow-ups in every seed now (defect 8)
  redis_restart   Redis restarted empty mid-run (the queue and the limiter's windows are lost, so the
                  run does not hold the windows to account across it)

Besides, every seed draws from its own sub-streams (so that adding them left the older draws alone):
  fairness        a pool whose accounts are slow (1-2 a second, or a small day cap) with a campaign of
                  many small batches through it, and a later campaign on the environment's providers
                  (no faults on them) that must start within FAIRNESS_BOUND_SECONDS (issue 21, item 5)
  imports         a campaign's recipients added by a CSV import through the imports worker, before it starts
  no_unsubscribe  staff first write an A/B variant without an unsubscribe link, which must be refused at
                  save and at schedule; they fix it and start again
  big_start       a campaign of 300 to 600 recipients whose start creates its rows in chunks of 10 or 20
                  (START_CHUNK_SIZE, every campaign's), the scheduler SIGKILLed while it does (issue 26:
                  the start resumes from its cursor, every recipient gets exactly one delivery log)
"""

import random
from dataclasses import asdict, dataclass, field

KNOBS = ("slow_rates", "sender_refused", "bad_variant", "early_events", "many_dead", "busy_loop", "follow_ups",
         "redis_restart")

SMTP_SERVERS = ("sink1", "sink2")  # one pool account each
SENDGRID_ACCOUNT_SERVER = "sg1"  # the pool's SendGrid account
# The environment's providers (campaigns without a pool): SendGrid, then SMTP as its fallback.
ENV_SENDGRID_SERVER = "sg2"
ENV_SMTP_SERVER = "sink3"

STAFF_ACTIONS = ("pause_resume", "cancel", "retry_failed", "resend_unknown", "pick_winner", "follow_up")
CRASHES = ("sigkill_sender", "sigterm_sender", "sigkill_scheduler", "pg_terminate")
# Everything happens within the fault phase; then the faults stop and liveness is measured.
LIVENESS_BOUND_SECONDS = 150
# A campaign whose provider has room starts sending within this many seconds of staff pressing "Send now",
# however many batches of other campaigns are waiting for their limits (measured: see the docs).
FAIRNESS_BOUND_SECONDS = 10


@dataclass
class Account:
    server: str
    kind: str  # "smtp" | "sendgrid"
    per_second: int = 0
    per_minute: int = 0
    per_day: int = 0
    weight: int = 1


@dataclass
class Variant:
    letter: str
    subject: str
    html: str = ""  # its own HTML (a marker "Variant X body", so the web version can be told apart)


@dataclass
class CampaignPlan:
    index: int
    recipients: int
    dead: list  # indexes of dead addresses (550 5.1.1 / SendGrid 400 for them, always)
    pooled: bool
    track: bool
    batch_size: int
    segment_city: str | None = None  # only recipients of this city (a segment)
    ab_percent: int = 0
    ab_wait_seconds: int = 0
    variants: list = field(default_factory=list)
    start_at: float = 0.0  # seconds into the run
    imported: bool = False  # recipients added by a CSV import (the imports worker) instead of directly
    no_unsubscribe_first: bool = False  # staff first write its last variant without an unsubscribe link
    fair: bool = False  # the fairness campaign: its first message must arrive within FAIRNESS_BOUND_SECONDS


@dataclass
class ServerFault:
    at: float  # seconds into the run
    server: str
    settings: dict  # the sink's control-file keys, or the fake SendGrid's /_control body


@dataclass
class Event:
    at: float
    what: str  # a STAFF_ACTIONS or CRASHES name
    campaign: int = 0  # a CampaignPlan.index, for staff actions


@dataclass
class Scenario:
    seed: int
    knobs: list
    smtp_connections: int
    smtp_chunk: int
    fault_seconds: float
    accounts: list
    campaigns: list
    faults: list
    events: list
    provider_events: str  # "late": after the campaigns end; "early": also while they send
    duplicate_events: bool
    start_chunk: int = 0  # START_CHUNK_SIZE of the workers (0: the default)

    def describe(self):
        return asdict(self)


def address(campaign, i, dead):
    return f"{'dead-' if dead else ''}c{campaign}-r{i:03d}@example.com"


def draw(seed, knobs=()):
    """The scenario of SEED with KNOBS (a subset of KNOBS) enabled."""
    knobs = sorted(set(knobs))
    unknown = set(knobs) - set(KNOBS)
    if unknown:
        raise ValueError(f"unknown knobs {sorted(unknown)}; known: {', '.join(KNOBS)}")
    rng = random.Random(seed)
    chunk = 10
    connections = rng.choice([1, 2, 2, 3])
    if "busy_loop" in knobs and rng.random() < 0.5:
        connections = chunk
    fault_seconds = rng.uniform(8, 20)

    accounts = []
    for server in rng.sample(SMTP_SERVERS + (SENDGRID_ACCOUNT_SERVER,), rng.randint(1, 3)):
        kind = "sendgrid" if server == SENDGRID_ACCOUNT_SERVER else "smtp"
        # Per-second limits above the connection count (below it: knob slow_rates, defect 1).
        low = 1 if "slow_rates" in knobs else connections + 1
        per_second = rng.choice([0, rng.randint(low, low + 6)]) if kind == "smtp" else rng.choice([0, 50])
        per_minute = rng.choice([0, 0, rng.randint(30, 90)]) if "slow_rates" in knobs else 0
        per_day = rng.choice([0, 0, 0, rng.randint(20, 80)])
        accounts.append(Account(server, kind, per_second, per_minute, per_day, rng.randint(1, 3)))

    campaigns = []
    for index in range(rng.randint(1, 3)):
        n = rng.randint(12, 50)
        dead_share = 0.25 if "many_dead" in knobs and rng.random() < 0.5 else rng.choice([0, 0.05, 0.1])
        plan = CampaignPlan(index=index, recipients=n, dead=sorted(rng.sample(range(n), int(n * dead_share))),
                            pooled=rng.random() < 0.6, track=rng.random() < 0.5, batch_size=rng.choice([10, 15, 25]),
                            start_at=round(rng.uniform(0, fault_seconds / 3), 2))
        if rng.random() < 0.25:
            plan.segment_city = rng.choice(["Lisbon", "Porto"])
        if n >= 20 and rng.random() < 0.35:
            plan.ab_percent = rng.choice([30, 50])
            plan.ab_wait_seconds = rng.randint(4, 12)
            plan.variants = [Variant(letter, f"Variant {letter} for {{{{ first_name }}}}")
                             for letter in "AB" + ("C" if rng.random() < 0.3 else "")]
            if "bad_variant" in knobs and rng.random() < 0.5:
                plan.variants[-1].subject = "Broken {{ first_name|upper }}"
        campaigns.append(plan)

    faults = []
    servers = [a.server for a in accounts] + [ENV_SENDGRID_SERVER, ENV_SMTP_SERVER]
    for server in servers:
        for at in sorted(rng.uniform(0, fault_seconds * 0.8) for _ in range(rng.randint(0, 2))):
            sendgrid = server.startswith("sg")
            settings = draw_sendgrid_fault(rng) if sendgrid else draw_smtp_fault(rng, knobs)
            faults.append(ServerFault(round(at, 2), server, settings))
    if "busy_loop" in knobs and connections >= chunk:
        for server in SMTP_SERVERS + (ENV_SMTP_SERVER,):
            faults.append(ServerFault(0.0, server, {"fault_rcpt": ".", "fault_at": "data", "fault_reply": "421"}))
    faults.sort(key=lambda f: f.at)

    events = []
    for _ in range(rng.randint(0, 4)):
        what = rng.choice(STAFF_ACTIONS)
        events.append(Event(round(rng.uniform(1, fault_seconds), 2), what, rng.randrange(len(campaigns))))
    crashes = CRASHES + (("redis_restart",) if "redis_restart" in knobs else ())
    for _ in range(rng.randint(0, 2)):
        events.append(Event(round(rng.uniform(1, fault_seconds), 2), rng.choice(crashes)))
    events.sort(key=lambda e: e.at)

    drawn = Scenario(seed=seed, knobs=knobs, smtp_connections=connections, smtp_chunk=chunk,
                     fault_seconds=round(fault_seconds, 2), accounts=accounts, campaigns=campaigns, faults=faults,
                     events=events, provider_events="early" if "early_events" in knobs and rng.random() < 0.7 else "late",
                     duplicate_events=rng.random() < 0.5)
    draw_content(drawn, random.Random(f"{seed}-content"))
    draw_fairness(drawn, random.Random(f"{seed}-fairness"))
    draw_big_start(drawn, random.Random(f"{seed}-start-crash"))
    return drawn


def draw_big_start(drawn, rng):
    """Sometimes (0.3): a campaign big enough that its start takes many chunks (of 10 or 20 recipients),
    through the environment's providers, and the scheduler SIGKILLed a moment after it is started, while
    the start creates its rows (the run's trace shows the start cursors at the crash)."""
    if rng.random() >= 0.3:
        return
    drawn.start_chunk = rng.choice([10, 20])
    n = rng.randint(300, 600)
    big = CampaignPlan(index=len(drawn.campaigns), recipients=n, dead=sorted(rng.sample(range(n), n // 50)),
                       pooled=False, track=rng.random() < 0.5, batch_size=rng.choice([25, 50]),
                       start_at=round(rng.uniform(0, drawn.fault_seconds / 3), 2))
    if rng.random() < 0.3:
        big.segment_city = rng.choice(["Lisbon", "Porto"])
    if rng.random() < 0.3:
        big.ab_percent, big.ab_wait_seconds = 20, rng.randint(4, 8)
        big.variants = [Variant(letter, f"Variant {letter} for {{{{ first_name }}}}", f"<p>Variant {letter} body</p>")
                        for letter in "AB"]
    drawn.campaigns.append(big)
    drawn.events.append(Event(round(big.start_at + rng.uniform(0.1, 0.5), 2), "sigkill_scheduler"))
    drawn.events.sort(key=lambda e: e.at)


def draw_content(drawn, rng):
    """Imports and variants: each variant gets its own HTML; some campaigns are imported from a CSV; some
    A/B tests are first written with a variant that has no unsubscribe link."""
    for plan in drawn.campaigns:
        plan.imported = rng.random() < 0.3
        for variant in plan.variants:
            variant.html = f"<p>Variant {variant.letter} body</p>"
        if plan.variants and rng.random() < 0.3:
            plan.no_unsubscribe_first = True


def draw_fairness(drawn, rng):
    """Sometimes (0.35): the pool's accounts are slow and the first campaign goes through them in many
    small batches; a later campaign on the environment's providers (kept free of faults) must start
    within FAIRNESS_BOUND_SECONDS of being started, while the first waits for its limits."""
    if rng.random() >= 0.35 or not drawn.accounts:
        return
    for account in drawn.accounts:
        if account.kind == "smtp":
            account.per_second = rng.choice([1, 2])
            if rng.random() < 0.4:
                account.per_day = rng.randint(10, 25)
        else:  # a SendGrid request carries a whole batch: a small day cap makes it the slow one
            account.per_day = rng.randint(10, 25)
        account.per_minute = 0
    hog = drawn.campaigns[0]
    hog.pooled, hog.batch_size, hog.segment_city = True, 5, None
    hog.recipients = min(max(hog.recipients, 20), 30)  # 4 to 6 batches, with the other pooled campaigns'
    hog.dead = [i for i in hog.dead if i < hog.recipients]
    hog.start_at = round(rng.uniform(0, 1), 2)
    index = len(drawn.campaigns)
    fair = CampaignPlan(index=index, recipients=rng.randint(5, 15), dead=[], pooled=False, track=rng.random() < 0.5,
                        batch_size=rng.choice([10, 15, 25]), start_at=round(hog.start_at + rng.uniform(3, 6), 2),
                        fair=True)
    drawn.campaigns.append(fair)
    drawn.fault_seconds = max(drawn.fault_seconds, fair.start_at + 2)
    # Its providers have room: no faults on them (staff actions were drawn for the other campaigns only).
    drawn.faults = [f for f in drawn.faults if f.server not in (ENV_SENDGRID_SERVER, ENV_SMTP_SERVER)]


def draw_smtp_fault(rng, knobs):
    """One SMTP server behaviour (the sink's control-file keys; "dead" addresses are refused apart)."""
    kinds = ["ok", "slow", "defer", "phase", "phase", "mail_421", "relay", "auth"]
    if "sender_refused" in knobs:
        kinds.append("sender")
    kind = rng.choice(kinds)
    if kind == "slow":
        return {"slow_seconds": round(rng.uniform(0.1, 0.8), 2)}
    if kind == "defer":
        return {"defer_rcpt": rf"-r\d\d{rng.randrange(10)}@"}
    if kind == "phase":
        return {"fault_rcpt": rf"-r\d\d{rng.randrange(10)}@", "fault_at": rng.choice(["rcpt", "data"]),
                "fault_reply": rng.choice(["421", "drop", "hang"]), "hang_seconds": 5}
    if kind == "mail_421":
        return {"mail_421_every": rng.randint(3, 8)}
    if kind in ("relay", "auth", "sender"):
        return {"refuse": kind}
    return {}


def draw_sendgrid_fault(rng):
    """One SendGrid behaviour (the fake API's /_control body; "dead" addresses get a 400 apart)."""
    kind = rng.choice(["ok", "429", "5xx", "504_after", "hang", "400"])
    if kind == "429":
        return {"mode": "429", "count": rng.randint(1, 4), "reset_after": rng.choice([1, 2])}
    if kind == "5xx":
        return {"mode": rng.choice(["500", "503", "502"]), "count": rng.randint(1, 4)}
    if kind == "504_after":
        return {"mode": "504", "count": rng.randint(1, 2), "after_accepting": True}
    if kind == "hang":
        return {"mode": "hang", "count": 1, "hang_seconds": 5}
    if kind == "400":
        return {"mode": "400", "count": 1}
    return {"mode": "ok"}
