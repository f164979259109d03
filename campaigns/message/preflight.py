"""Preflight: what would go wrong if this campaign were sent now (issue 16, item 6).

Errors block sending (the same refusals schedule and send now would give, found up front); warnings
are for staff to judge. The content checks read the campaign only; then every recipient of its audience
(campaigns.audience.segments) is rendered with the compiled plan the senders use (campaigns.message.rendering), from a
server-side cursor, CHUNK rows at a time, so memory stays bounded whatever the campaign's size, and
progress is written after each chunk. `run_preflight` is what the Celery task runs.

Findings:
- merge tags: malformed or unknown (error); a tag without a default that some recipients have no value
  for (warning: how many, and a few of their addresses);
- the HTML: missing unsubscribe link (error), size against Gmail's clipping at 102 KB (warning, on the
  largest rendered message, with the tracking links when tracking is on);
- the plain-text part: written or generated from the HTML, and its unsubscribe link;
- the links in the content, listed;
- an A/B test: two to four variants (error), each rendered for every recipient and with its unsubscribe
  link, and the plan: how many test each variant, the wait, the rest (a variant tested on nobody: warning);
- the sender: From domain against ALLOWED_FROM_DOMAINS (error), with the SPF, DKIM and DMARC steps for the
  kinds of provider it sends through (no SendGrid steps over SMTP); when the campaign sends through a pool, each of its
  accounts that may send the From domain has its DNS checked (campaigns.deliverability.dns_checks):
  what makes authentication fail is an error, the rest warnings, each with the record to publish. A
  campaign of the built-in default pool (the environment's SendGrid key or SMTP server, the local sink
  in development) is not looked up: a note says so;
- the audience: no recipient (error), suppressed addresses (counted, skipped when sending);
- the estimated duration and finish time: from the limits of the pool's accounts that may send the From
  domain (the server's provider's rate for the default pool) and the audience's size, with an A/B test's
  wait.

Everything staff read here is in their words: no environment variable names, no repository paths.
"""

import html
import json
import logging
import math
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from campaigns.audience import segments
from campaigns.audience.validators import validate_from_email
from campaigns.deliverability import dns_checks
from campaigns.exceptions import MergeTagError
from campaigns.experiments import ab_tests
from campaigns.message import click_tracking
from campaigns.message.rendering import LINK_TAGS, compile_campaign, find_tags, recipient_context, validate_merge_tags
from campaigns.models import Campaign, PreflightRun, campaign_label
from campaigns.sending import chain, ratelimit, routing

logger = logging.getLogger(__name__)

GMAIL_CLIP_BYTES = 102 * 1024
CHUNK = 2000
EXAMPLES = 5
PREFLIGHT_TASK = "campaigns.tasks.imports.run_preflight"
# What a recipient's signed links look like (the tokens are 38 and 32 characters): the rendered size
# counts them without signing a million tokens.
_TOKEN = "x" * 38


PROVIDER_LABELS = {"sendgrid": "SendGrid", "smtp": "SMTP", "ses_smtp": "Amazon SES"}


def authentication_steps(domain, kinds=("sendgrid", "smtp")):
    """The SPF, DKIM and DMARC steps for DOMAIN, for the kinds of provider the campaign sends through
    ("sendgrid", "smtp", "ses_smtp"): no SendGrid steps for a campaign that sends over SMTP."""
    steps = []
    if "sendgrid" in kinds:
        steps.append(f"SPF and DKIM through SendGrid: in SendGrid, Settings → Sender Authentication → Authenticate "
                     f"Your Domain for {domain}; add the three CNAME records it gives at your DNS host and click "
                     "Verify.")
    if "ses_smtp" in kinds:
        steps.append(f"SPF and DKIM through Amazon SES: in the SES console, verify the domain {domain} with Easy DKIM "
                     "and add the three CNAME records it gives at your DNS host; set a custom MAIL FROM domain so "
                     "that SPF aligns.")
    if "smtp" in kinds:
        steps.append(f"SPF and DKIM through your SMTP server: add the server that sends for {domain} to {domain}'s "
                     "SPF record (your mail host says which include: or ip4: to add), and have it sign with DKIM "
                     "for the domain (or set DKIM on the sending account, whose page shows the record to publish).")
    steps += [
        f"DMARC: publish a TXT record at _dmarc.{domain}: v=DMARC1; p=none; rua=mailto:dmarc-reports@{domain}; "
        "adkim=r; aspf=r — then move to p=quarantine and p=reject once every source passes.",
        "Check: send a test email to a Gmail address, Show original, and look for SPF, DKIM and DMARC: PASS.",
    ]
    return steps


class Findings:
    def __init__(self):
        self.errors, self.warnings, self.notes = [], [], []

    def error(self, code, message, **details):
        self.errors.append({"code": code, "message": message, **details})

    def warning(self, code, message, **details):
        self.warnings.append({"code": code, "message": message, **details})

    def note(self, code, message, **details):
        self.notes.append({"code": code, "message": message, **details})


# --- content and settings (no recipient rows) --------------------------------------------------

def check_content(campaign, findings):
    """Merge tags, unsubscribe link, plain-text part; returns the compiled plan, or None if it cannot compile."""
    available = campaign.available_merge_tags()
    try:
        validate_merge_tags(campaign.subject, campaign.html_body, campaign.text_body or "", available=available)
    except MergeTagError as error:
        findings.error("merge_tags", str(error))
        return None
    if "unsubscribe_url" not in find_tags(campaign.html_body or ""):
        findings.error("unsubscribe", "The HTML has no unsubscribe link: add "
                                      '<a href="{{ unsubscribe_url }}">Unsubscribe</a>.')
    compiled = compile_campaign(campaign.subject, campaign.html_body, campaign.text_body)
    if not (campaign.text_body or "").strip():
        if compiled.text_template.strip():
            findings.note("text_generated", "No plain-text part was written: one is generated from the HTML.")
        else:
            findings.error("text_empty", "There is no plain-text part and the HTML has no text to make one from.")
    elif "unsubscribe_url" not in find_tags(campaign.text_body):
        findings.warning("text_unsubscribe", "The plain-text part has no {{ unsubscribe_url }}: readers of the "
                                             "text version cannot unsubscribe from it.")
    return compiled


def check_variants(campaign, findings):
    """An A/B test's variants, checked as the campaign's own content is (scheduling refuses the same):
    two to four of them, each one's own subject, HTML and text."""
    if campaign.ab_test_percent <= 0:
        return
    count = campaign.variants.count()
    if not ab_tests.MIN_VARIANTS <= count <= ab_tests.MAX_VARIANTS:
        findings.error("variant_count", f"The A/B test share is {campaign.ab_test_percent} % but the campaign has "
                                        f"{count} variant{'' if count == 1 else 's'}: add two to four, or set the "
                                        "share to 0.")
    for variant in campaign.variants.order_by("letter"):
        for field, problem in variant.content_problems().items():
            findings.error("variant_content", f"Variant {variant.letter}: {problem}", variant=variant.letter,
                           field=field)


def variant_contents(campaign):
    """[(variant, subject, html, text, own content)] of an A/B test, in letter order, as the senders resolve
    them (campaigns.experiments.ab_tests.with_variant); [] for a campaign without one."""
    if campaign.ab_test_percent <= 0:
        return []
    contents = []
    for variant in campaign.variants.order_by("letter")[:ab_tests.MAX_VARIANTS]:
        html_body, text_body = campaign.html_body, campaign.text_body
        if variant.html_body:
            html_body, text_body = variant.html_body, variant.text_body
        elif variant.text_body:
            text_body = variant.text_body
        contents.append((variant, variant.subject, html_body, text_body or "",
                         bool(variant.html_body or variant.text_body)))
    return contents


def content_links(campaign):
    """Every href of the HTML, in order, without repeats; trackable ones (click tracking) marked."""
    trackable = set(click_tracking.campaign_links(campaign.html_body or ""))
    seen = dict.fromkeys(html.unescape(href).strip() for href in click_tracking.hrefs(campaign.html_body or ""))
    return [{"href": href, "tracked": bool(campaign.track_engagement) and href in trackable} for href in seen]


# --- how it sends: the pool's accounts, or the server's own providers ------------------------------

WINDOW_NAMES = {"second": "a second", "minute": "a minute", "hour": "an hour", "day": "a day"}
LISTED_ACCOUNTS = 5


def describe_limits(limits):
    """'20 a second, 1,000 an hour' for {window name: limit}; 'no limit' for none."""
    return ", ".join(f"{limit:,g} {WINDOW_NAMES[window]}" for window, limit in limits.items()) or "no limit"


def sending_route(campaign, domain):
    """How CAMPAIGN's mail would leave: {"label": for staff, "pool": its name or None, "kinds": the kinds of
    provider ("sendgrid", "smtp", "ses_smtp"), "accounts": [{name, kind, limits}], "capacities": per
    account {window seconds: limit} ({} for no limit)}.

    A pool sends through its enabled accounts that may send DOMAIN, each within its own limits
    (campaigns.sending.routing); the built-in default pool through the server's own providers, the
    first configured one at a time, at its per-second rate (campaigns.sending.ratelimit)."""
    if campaign.pool_id is None:
        names = [provider.name for provider in chain.default_providers()] or ["smtp"]
        rate = ratelimit.rate_for(names[0])
        described = {"sendgrid": "SendGrid (set up on this server)", "smtp": "this server's SMTP relay"}
        label = described.get(names[0], names[0])
        if len(names) > 1:
            label += f", then {described.get(names[1], names[1])} if it fails"
        limits = {"second": rate} if rate else {}
        return {"label": label, "pool": None, "kinds": names,
                "accounts": [{"name": names[0], "kind": names[0], "limits": describe_limits(limits)}],
                "capacities": [{1: rate} if rate else {}]}
    accounts = [account for account in campaign.pool.accounts.filter(enabled=True).order_by("name")
                if account.may_send_from(domain)]
    listed = "; ".join(f"{account.name}: {describe_limits(account.limits())}" for account in accounts[:LISTED_ACCOUNTS])
    if len(accounts) > LISTED_ACCOUNTS:
        listed += f"; and {len(accounts) - LISTED_ACCOUNTS} more"
    return {"label": f"the pool “{campaign.pool.name}” ({listed or 'no account'})", "pool": campaign.pool.name,
            "kinds": sorted({account.kind for account in accounts}) or ["smtp"],
            "accounts": [{"name": account.name, "kind": account.kind, "limits": describe_limits(account.limits())}
                         for account in accounts],
            "capacities": [{routing.window_seconds(account, window): limit
                            for window, limit in account.limits().items()} for account in accounts]}


def seconds_to_send(count, capacities):
    """The fewest whole seconds in which accounts of CAPACITIES ({window seconds: limit} each) may send
    COUNT messages together, each within every one of its limits, starting with nothing used; None when
    an account has no limit (nothing tells how fast it goes) or there is no account."""
    if count <= 0:
        return 0
    if not capacities or any(not capacity for capacity in capacities):
        return None

    def sendable(seconds):
        return sum(min(limit * math.ceil(seconds / window) for window, limit in capacity.items())
                   for capacity in capacities)

    low, high = 0, 1
    while sendable(high) < count:
        low, high = high, high * 2
    while low + 1 < high:
        middle = (low + high) // 2
        low, high = (low, middle) if sendable(middle) >= count else (middle, high)
    return high


def check_route(campaign, route, domain, findings):
    if route["pool"] is not None and not route["accounts"]:
        findings.warning("pool_no_account", f"No enabled account of the pool “{route['pool']}” may send from "
                                            f"{domain}: nothing would be sent until one is enabled or allowed to.")


def check_sender(campaign, findings):
    from_email = campaign.from_email or settings.DEFAULT_FROM_EMAIL
    domain = from_email.rsplit("@", 1)[-1].strip().rstrip(">").lower()
    route = sending_route(campaign, domain)
    sender = {"from_email": from_email, "domain": domain, "allowed_domains": list(settings.ALLOWED_FROM_DOMAINS),
              "route": route["label"], "steps": authentication_steps(domain, route["kinds"])}
    try:
        validate_from_email(from_email)
    except ValidationError as error:
        findings.error("sender", f"Mail cannot be sent from {from_email}: {' '.join(error.messages)}")
        return sender, route
    if not settings.ALLOWED_FROM_DOMAINS:
        findings.warning("sender_unchecked", f"This server accepts any From domain, so nothing here stops mail "
                                             f"from {domain} that its owner has not authenticated: make sure "
                                             f"{domain} is (steps below).")
    check_route(campaign, route, domain, findings)
    sender["dns"] = check_sender_dns(campaign, route, domain, findings)
    return sender, route


def check_sender_dns(campaign, route, domain, findings):
    """The DNS checks of DOMAIN for each enabled account of the campaign's pool that may send it, as
    findings; [{account, check, status, message, record}] for the page."""
    if campaign.pool_id is None:
        findings.note("dns_unchecked", f"The campaign sends through {route['label']}: {domain}'s DNS records are "
                                       "not looked up for it here. Follow the steps below, or choose a sending pool "
                                       "to have them checked.")
        return []
    lookups = dns_checks.Lookups()
    results = []
    for account in campaign.pool.accounts.filter(enabled=True):
        if not account.may_send_from(domain):
            continue
        for check in dns_checks.check_domain(account, domain, lookups):
            results.append({"account": account.name, "check": check.name, "status": check.status,
                            "message": check.message, "record": check.record})
            if check.status == dns_checks.PASS:
                continue
            report = findings.error if check.status == dns_checks.ERROR else findings.warning
            report(f"dns_{check.name.lower()}", f"{account.name}: {check.message}", record=check.record,
                   account=account.name)
    return results


def ab_plan(campaign, contents, to_send):
    """The A/B test's plan for TO_SEND messages, as the start deals it (campaigns.sending.pipeline): the
    test share of them, round-robin to the variants; the rest get the winner after the wait. None without
    an A/B test."""
    if campaign.ab_test_percent <= 0 or not contents:
        return None
    test = to_send * campaign.ab_test_percent // 100
    count = len(contents)
    variants = [{"letter": variant.letter, "subject": subject, "from_name": variant.from_name,
                 "own_content": own, "recipients": (test - i + count - 1) // count,
                 "unsubscribe": "unsubscribe_url" in find_tags(html_body or "")}
                for i, (variant, subject, html_body, _text, own) in enumerate(contents)]
    wait = int(campaign.ab_wait.total_seconds())
    metric = campaign.get_ab_metric_display().lower()
    sizes = ", ".join(f"{v['letter']}: {v['recipients']:,}" for v in variants)
    text = (f"A/B test: {campaign.ab_test_percent} % of the audience ({test:,} of {to_send:,} recipients) get one of "
            f"{count} variants ({sizes}); after {_duration(wait)} the variant with the most "
            f"{metric} goes to the other {to_send - test:,}.")
    return {"percent": campaign.ab_test_percent, "test": test, "rest": to_send - test, "wait_seconds": wait,
            "metric": metric, "variants": variants, "text": text}


def estimate(campaign, to_send, route, ab=None):
    """The time to send TO_SEND messages through ROUTE (and, for an A/B test AB, the test, the wait, then
    the rest), from the scheduled time or now."""
    start = campaign.scheduled_at if campaign.scheduled_at and campaign.scheduled_at > timezone.now() else None
    parts = [ab["test"], ab["rest"]] if ab else [to_send]
    times = [seconds_to_send(count, route["capacities"]) for count in parts]
    wait = ab["wait_seconds"] if ab else 0
    answer = {"provider": route["label"], "seconds": None, "finish": None}
    if None in times:
        if route["pool"] is not None and not route["accounts"]:
            return {**answer, "text": f"No account of {route['label']} can send it: no estimate."}
        limitless = ("no sending limit is set for " + route["label"] if route["pool"] is None else
                     f"an account of {route['label']} has no sending limit")
        extra = f", and the A/B wait of {_duration(wait)} comes on top" if ab else ""
        return {**answer, "text": f"No estimate: {limitless}, so the time depends on the servers and the "
                                  f"sending workers{extra}."}
    seconds = sum(times) + wait
    finish = (start or timezone.now()) + timedelta(seconds=seconds)
    when = f"{'' if start else ' if sent now'}: done around {timezone.localtime(finish):%Y-%m-%d %H:%M %Z}"
    if ab:
        text = (f"About {_duration(times[0])} to send the test to {ab['test']:,}, the A/B wait of {_duration(wait)}, "
                f"then about {_duration(times[1])} to send the winner to the other {ab['rest']:,}, through "
                f"{route['label']}{when}.")
    else:
        text = f"About {_duration(seconds)} through {route['label']}{when}."
    return {**answer, "seconds": seconds, "finish": finish.isoformat(), "text": text}


def _people(count, one, many):
    return one if count == 1 else many


def _duration(seconds):
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h".replace(".0 h", " h")
    return f"{seconds / 86400:.1f} days"


# --- every recipient ------------------------------------------------------------------------------

class RecipientScan:
    """Totals over every rendered recipient: sizes, missing values with a few examples, suppressed ones.
    PLANS are the compiled messages rendered for each recipient (the campaign's, and each A/B variant's),
    with the tracking links' stand-ins."""

    def __init__(self, plans, missing_tags):
        self.plans = plans  # [(label, compiled, tracking values)]
        self.missing = {tag: {"count": 0, "examples": []} for tag in sorted(missing_tags)}
        self.rendered = self.suppressed = self.over_clip = 0
        self.renders = {label: 0 for label, _, _ in plans}
        self.largest_html = 0
        self.largest_example = ""

    def add(self, rows):
        links = {"unsubscribe_url": f"{settings.SITE_URL}/u/{_TOKEN}/",
                 "web_url": f"{settings.SITE_URL}/w/{_TOKEN[:32]}/"}
        for email, first_name, last_name, data, suppressed in rows:
            if suppressed:
                self.suppressed += 1
                continue
            if isinstance(data, str):  # Django reads jsonb as text and decodes it itself
                data = json.loads(data)
            context = recipient_context(email, first_name, last_name, data or {}, "")
            context.update(links)
            for tag, found in self.missing.items():
                value = context.get(tag)
                if value is None or not str(value).strip():
                    found["count"] += 1
                    if len(found["examples"]) < EXAMPLES:
                        found["examples"].append(email)
            largest = 0
            for label, compiled, tracking_values in self.plans:
                size = len(compiled.render({**context, **tracking_values}).html.encode("utf-8"))
                self.renders[label] += 1
                largest = max(largest, size)
            self.rendered += 1
            if largest > GMAIL_CLIP_BYTES:
                self.over_clip += 1
            if largest > self.largest_html:
                self.largest_html, self.largest_example = largest, email


AUDIENCE_SQL = """
SELECT r.email, r.first_name, r.last_name, r.data, s.id IS NOT NULL
FROM campaigns_recipient r LEFT JOIN campaigns_suppression s ON s.email = lower(r.email)
WHERE r.campaign_id = %(campaign_id)s AND {segment}
ORDER BY r.id
"""


def scan_recipients(campaign, scan, on_chunk=lambda done: None):
    """Feed every recipient of the campaign's audience to SCAN, CHUNK rows at a time from a server-side
    cursor (WITH HOLD, so the progress written between chunks commits as it goes)."""
    where, params = segments.compile_segment(campaign.segment)
    connection.ensure_connection()
    done = 0
    with connection.connection.cursor(name=f"preflight_{campaign.pk}", withhold=True) as cursor:
        cursor.execute(AUDIENCE_SQL.format(segment=where), {**params, "campaign_id": campaign.pk})
        while rows := cursor.fetchmany(CHUNK):
            scan.add(rows)
            done += len(rows)
            on_chunk(done)
    return done


# --- the run --------------------------------------------------------------------------------------

def preflight(campaign, on_chunk=lambda done: None, on_total=lambda total: None):
    """The findings for CAMPAIGN as a JSON-ready dict (see the module docstring); ON_TOTAL gets the
    audience's size before the rows are read, ON_CHUNK the rows read so far after each chunk."""
    findings = Findings()
    compiled = check_content(campaign, findings)
    check_variants(campaign, findings)
    sender, route = check_sender(campaign, findings)
    contents = variant_contents(campaign)
    links = content_links(campaign)
    matching, total = segments.count_matching(campaign.pk, campaign.segment)
    on_total(matching)
    if not total:
        findings.error("no_recipients", "The campaign has no recipients: import some first.")
    elif not matching:
        findings.error("empty_segment", f"No recipient matches the audience ({segments.describe(campaign.segment)}).")
    figures = {"recipients": total, "audience": matching, "segment": segments.describe(campaign.segment)}
    if compiled is not None and matching:
        plans = [("campaign", *measured_plan(campaign, compiled, campaign.subject, campaign.html_body,
                                             campaign.text_body))]
        missing_tags = set(compiled.tags_without_default)
        for variant, subject, html_body, text_body, own in contents:
            try:
                # Only the subject is its own when the content is the campaign's, measured above.
                own_compiled = compile_campaign(subject, *((html_body, text_body) if own else ("", "")))
            except MergeTagError:
                continue  # an error of check_variants already
            missing_tags |= own_compiled.tags_without_default
            plan = (measured_plan(campaign, own_compiled, subject, html_body, text_body, variant=variant) if own
                    else (own_compiled, {}))
            plans.append((f"variant {variant.letter}", *plan))
        missing_tags -= set(LINK_TAGS)
        scan = RecipientScan(plans, missing_tags)
        scan_recipients(campaign, scan, on_chunk)
        for tag, found in scan.missing.items():
            if found["count"]:
                who = _people(found["count"], "recipient has", "recipients have")
                findings.warning("missing_value", f"{found['count']} {who} no value for "
                                 f"{{{{ {tag} }}}}, which has no default: they get nothing in its place. "
                                 f'Add one, e.g. {{{{ {tag}|default:"…" }}}}.', tag=tag, **found)
        if scan.over_clip:
            findings.warning("gmail_clip", f"{scan.over_clip} messages are over Gmail's {GMAIL_CLIP_BYTES // 1024} "
                                           "KB limit: Gmail clips them, hiding the rest (and the unsubscribe link) "
                                           "behind \"View entire message\".", count=scan.over_clip)
        figures.update(rendered=scan.rendered, suppressed=scan.suppressed, largest_html_bytes=scan.largest_html,
                       largest_html_example=scan.largest_example, clip_bytes=GMAIL_CLIP_BYTES)
        if scan.suppressed:
            findings.note("suppressed", f"{scan.suppressed} {_people(scan.suppressed, 'address', 'addresses')} of "
                                        f"the audience {_people(scan.suppressed, 'is', 'are')} suppressed "
                                        "(unsubscribed, bounced, complained or added by staff): they are skipped.",
                          count=scan.suppressed)
        ab = ab_plan(campaign, contents, scan.rendered)
        if ab:
            for variant in ab["variants"]:
                variant["rendered"] = scan.renders.get(f"variant {variant['letter']}", 0)
            untested = [variant["letter"] for variant in ab["variants"] if not variant["recipients"]]
            if untested:
                findings.warning("ab_untested", f"The A/B test share ({ab['percent']} % of {scan.rendered:,}) is "
                                 f"too small to test every variant: {', '.join(untested)} would be sent to nobody "
                                 "in the test. Raise the share, or send to more recipients.", variants=untested)
            figures["ab_test"] = ab
        figures["estimate"] = estimate(campaign, scan.rendered, route, ab)
    return {"errors": findings.errors, "warnings": findings.warnings, "notes": findings.notes, "links": links,
            "sender": sender, "figures": figures}


def measured_plan(campaign, compiled, subject, html_body, text_body, variant=None):
    """(the compiled message whose size counts, the tracking links' stand-ins): with the tracking links
    when tracking is on, as the senders send it."""
    if not campaign.track_engagement:
        return compiled, {}
    row = {"id": campaign.pk, "updated_at": campaign.updated_at, "subject": subject, "html_body": html_body,
           "text_body": text_body}
    if variant is not None:
        row["variant"] = (variant.pk, variant.updated_at)
    tracking = click_tracking.tracking_for(row)
    values = {click_tracking.OPEN_TAG: f"{settings.SITE_URL}/t/o/{_TOKEN}/",
              **{click_tracking.click_tag(i): f"{settings.SITE_URL}/t/c/{_TOKEN}/{i}/"
                 for i in range(tracking.link_count)}}
    return tracking.compiled, values


# A queued or running preflight older than this is taken as lost (its worker died): a new one may start.
PREFLIGHT_STALE_AFTER = timedelta(hours=2)


def start_preflight(campaign, user=None):
    """A queued PreflightRun for CAMPAIGN, its task enqueued once the row is committed; or the run already
    queued or running for it, so that repeated clicks cannot queue one full scan each."""
    from celery import current_app

    # The audience is counted by the task; until then the progress bar goes by every recipient.
    with transaction.atomic():
        # The campaign's row lock makes two simultaneous requests agree on one run.
        list(Campaign.objects.select_for_update().filter(pk=campaign.pk).values_list("pk"))
        pending = PreflightRun.objects.filter(
            campaign=campaign, status__in=(PreflightRun.Status.QUEUED, PreflightRun.Status.RUNNING),
            created_at__gte=timezone.now() - PREFLIGHT_STALE_AFTER).order_by("-created_at").first()
        if pending is not None:
            return pending
        run = PreflightRun.objects.create(campaign=campaign, created_by=user, rows_total=campaign.total_recipients,
                                          campaign_updated_at=campaign.updated_at)
        label = f"preflight {run.pk} of {campaign_label(campaign.pk, campaign.name)}"
        transaction.on_commit(lambda: current_app.send_task(PREFLIGHT_TASK, kwargs={"preflight_run_id": run.pk},
                                                            argsrepr=label))
    return run


def run_preflight(run_id):
    """Run a queued preflight once (a redelivery of a finished or running one does nothing)."""
    S = PreflightRun.Status
    if not PreflightRun.objects.filter(pk=run_id, status=S.QUEUED).update(status=S.RUNNING,
                                                                          started_at=timezone.now()):
        return None
    run = PreflightRun.objects.select_related("campaign").get(pk=run_id)
    campaign = run.campaign

    def progress(done):
        PreflightRun.objects.filter(pk=run_id).update(rows_done=done)

    def audience(total):
        PreflightRun.objects.filter(pk=run_id).update(rows_total=total)

    try:
        report = preflight(campaign, progress, audience)
    except Exception as error:
        logger.exception("Preflight %s of campaign %s failed", run_id, campaign.pk)
        PreflightRun.objects.filter(pk=run_id).update(status=S.FAILED, error=f"The preflight stopped: {error}"[:2000],
                                                      finished_at=timezone.now())
        return None
    PreflightRun.objects.filter(pk=run_id).update(
        status=S.SUCCEEDED, report=report, finished_at=timezone.now(), campaign_updated_at=campaign.updated_at,
        rows_done=report["figures"].get("rendered", 0) + report["figures"].get("suppressed", 0))
    logger.info("Preflight %s of campaign %s: %s errors, %s warnings", run_id, campaign.pk, len(report["errors"]),
                len(report["warnings"]))
    return {"errors": len(report["errors"]), "warnings": len(report["warnings"])}


def latest_run(campaign):
    return PreflightRun.objects.filter(campaign=campaign).order_by("-created_at", "-pk").first()


def is_current(run, campaign):
    """The run checked the campaign as it is now (no edit since)."""
    return run is not None and run.campaign_updated_at == campaign.updated_at

