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
- the sender: From domain against ALLOWED_FROM_DOMAINS (error), with the SPF, DKIM and DMARC steps of
  docs/sendgrid-and-sender-authentication.md; when the campaign sends through a pool, each of its
  accounts that may send the From domain has its DNS checked (campaigns.deliverability.dns_checks):
  what makes authentication fail is an error, the rest warnings, each with the record to publish. A
  campaign of the built-in default pool (the environment's SendGrid key or SMTP server, the local sink
  in development) is not looked up: a note says so;
- the audience: no recipient (error), suppressed addresses (counted, skipped when sending);
- the estimated duration and finish time, from the provider's rate limit and the audience's size.
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
from campaigns.message import click_tracking
from campaigns.message.rendering import LINK_TAGS, compile_campaign, find_tags, recipient_context, validate_merge_tags
from campaigns.models import Campaign, PreflightRun, campaign_label

logger = logging.getLogger(__name__)

GMAIL_CLIP_BYTES = 102 * 1024
CHUNK = 2000
EXAMPLES = 5
PREFLIGHT_TASK = "campaigns.tasks.imports.run_preflight"
AUTHENTICATION_DOC = "docs/sendgrid-and-sender-authentication.md"
# What a recipient's signed links look like (the tokens are 38 and 32 characters): the rendered size
# counts them without signing a million tokens.
_TOKEN = "x" * 38


def authentication_steps(domain):
    """The SPF, DKIM and DMARC steps of AUTHENTICATION_DOC section 4, for DOMAIN."""
    return [
        f"SPF and DKIM: in SendGrid, Settings → Sender Authentication → Authenticate Your Domain for {domain}; "
        "add the three CNAME records it gives at your DNS host and click Verify.",
        f"If mail can also leave through the SMTP relay (EMAIL_HOST), add that relay to {domain}'s SPF record "
        "and set up its DKIM too.",
        f"DMARC: publish a TXT record at _dmarc.{domain}: v=DMARC1; p=none; rua=mailto:dmarc-reports@{domain}; "
        "adkim=r; aspf=r — then move to p=quarantine and p=reject once every source passes.",
        "Check: send a test email to a Gmail address, Show original, and look for SPF, DKIM and DMARC: PASS.",
    ]


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
    """An A/B test's variants, checked as the campaign's own content is (scheduling refuses the same)."""
    if campaign.ab_test_percent <= 0:
        return
    for variant in campaign.variants.order_by("letter"):
        for field, problem in variant.content_problems().items():
            findings.error("variant_content", f"Variant {variant.letter}: {problem}", variant=variant.letter,
                           field=field)


def content_links(campaign):
    """Every href of the HTML, in order, without repeats; trackable ones (click tracking) marked."""
    trackable = set(click_tracking.campaign_links(campaign.html_body or ""))
    seen = dict.fromkeys(html.unescape(href).strip() for href in click_tracking.hrefs(campaign.html_body or ""))
    return [{"href": href, "tracked": bool(campaign.track_engagement) and href in trackable} for href in seen]


def check_sender(campaign, findings):
    from_email = campaign.from_email or settings.DEFAULT_FROM_EMAIL
    domain = from_email.rsplit("@", 1)[-1].strip().rstrip(">").lower()
    sender = {"from_email": from_email, "domain": domain, "allowed_domains": list(settings.ALLOWED_FROM_DOMAINS),
              "steps": authentication_steps(domain), "doc": AUTHENTICATION_DOC}
    try:
        validate_from_email(from_email)
    except ValidationError as error:
        findings.error("sender", f"Mail cannot be sent from {from_email}: {' '.join(error.messages)}")
        return sender
    if not settings.ALLOWED_FROM_DOMAINS:
        findings.warning("sender_unchecked", f"ALLOWED_FROM_DOMAINS is empty, so any From domain is accepted: "
                                             f"make sure {domain} is authenticated (steps below).")
    sender["dns"] = check_sender_dns(campaign, domain, findings)
    return sender


def check_sender_dns(campaign, domain, findings):
    """The DNS checks of DOMAIN for each enabled account of the campaign's pool that may send it, as
    findings; [{account, check, status, message, record}] for the page."""
    if campaign.pool_id is None:
        findings.note("dns_unchecked", f"The campaign sends through the default pool (the environment's SendGrid "
                                       f"key or SMTP server): {domain}'s DNS is not looked up here; follow the "
                                       "steps below, or send through a pool to have it checked.")
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


def sending_rate():
    """(provider, messages per second or None for no limit) of the first configured provider."""
    from campaigns.sending.chain import default_providers
    from campaigns.sending.ratelimit import rate_for

    providers = default_providers()
    name = providers[0].name if providers else "smtp"
    return name, (rate_for(name) or None)


def estimate(campaign, to_send):
    provider, rate = sending_rate()
    start = campaign.scheduled_at if campaign.scheduled_at and campaign.scheduled_at > timezone.now() else None
    if rate is None:
        return {"provider": provider, "rate": None, "seconds": None, "finish": None,
                "text": f"{provider} has no rate limit set: the time depends on the relay and the sender workers."}
    seconds = math.ceil(to_send / rate)
    finish = (start or timezone.now()) + timedelta(seconds=seconds)
    return {"provider": provider, "rate": rate, "seconds": seconds, "finish": finish.isoformat(),
            "text": f"About {_duration(seconds)} at {rate:g} messages a second through {provider}"
                    f"{'' if start else ' if sent now'}: done around "
                    f"{timezone.localtime(finish):%Y-%m-%d %H:%M %Z}."}


def _duration(seconds):
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


# --- every recipient ------------------------------------------------------------------------------

class RecipientScan:
    """Totals over every rendered recipient: sizes, missing values with a few examples, suppressed ones."""

    def __init__(self, compiled, tracking_values, missing_tags):
        self.compiled = compiled
        self.tracking_values = tracking_values
        self.missing = {tag: {"count": 0, "examples": []} for tag in sorted(missing_tags)}
        self.rendered = self.suppressed = self.over_clip = 0
        self.largest_html = 0
        self.largest_example = ""

    def add(self, rows):
        links = {"unsubscribe_url": f"{settings.SITE_URL}/u/{_TOKEN}/",
                 "web_url": f"{settings.SITE_URL}/w/{_TOKEN[:32]}/", **self.tracking_values}
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
            size = len(self.compiled.render(context).html.encode("utf-8"))
            self.rendered += 1
            if size > GMAIL_CLIP_BYTES:
                self.over_clip += 1
            if size > self.largest_html:
                self.largest_html, self.largest_example = size, email


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
    sender = check_sender(campaign, findings)
    links = content_links(campaign)
    matching, total = segments.count_matching(campaign.pk, campaign.segment)
    on_total(matching)
    if not total:
        findings.error("no_recipients", "The campaign has no recipients: import some first.")
    elif not matching:
        findings.error("empty_segment", f"No recipient matches the audience ({segments.describe(campaign.segment)}).")
    figures = {"recipients": total, "audience": matching, "segment": segments.describe(campaign.segment)}
    if compiled is not None and matching:
        if campaign.track_engagement:
            tracking = click_tracking.tracking_for({
                "id": campaign.pk, "updated_at": campaign.updated_at, "subject": campaign.subject,
                "html_body": campaign.html_body, "text_body": campaign.text_body})
            values = {click_tracking.OPEN_TAG: f"{settings.SITE_URL}/t/o/{_TOKEN}/",
                      **{click_tracking.click_tag(i): f"{settings.SITE_URL}/t/c/{_TOKEN}/{i}/"
                         for i in range(tracking.link_count)}}
            measured = tracking.compiled
        else:
            values, measured = {}, compiled
        scan = RecipientScan(measured, values, compiled.tags_without_default - set(LINK_TAGS))
        scan_recipients(campaign, scan, on_chunk)
        for tag, found in scan.missing.items():
            if found["count"]:
                findings.warning("missing_value", f"{found['count']} recipients have no value for "
                                 f"{{{{ {tag} }}}}, which has no default: they get nothing in its place. "
                                 f'Add one, e.g. {{{{ {tag}|default:"…" }}}}.', tag=tag, **found)
        if scan.over_clip:
            findings.warning("gmail_clip", f"{scan.over_clip} messages are over Gmail's {GMAIL_CLIP_BYTES // 1024} "
                                           "KB limit: Gmail clips them, hiding the rest (and the unsubscribe link) "
                                           "behind \"View entire message\".", count=scan.over_clip)
        figures.update(rendered=scan.rendered, suppressed=scan.suppressed, largest_html_bytes=scan.largest_html,
                       largest_html_example=scan.largest_example, clip_bytes=GMAIL_CLIP_BYTES)
        if scan.suppressed:
            findings.note("suppressed", f"{scan.suppressed} addresses of the audience are suppressed "
                                        "(unsubscribed, bounced, complained or added by staff): they are skipped.",
                          count=scan.suppressed)
        figures["estimate"] = estimate(campaign, scan.rendered)
    return {"errors": findings.errors, "warnings": findings.warnings, "notes": findings.notes, "links": links,
            "sender": sender, "figures": figures}


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

