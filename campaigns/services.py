"""The campaign services, what staff do to a campaign: create from a template, schedule, send now,
pause, resume, cancel, retry, resend, test send. (What staff read about one is campaigns.stats.)

Each function is the one place its action happens; admin actions, management commands and tests call
it. Each returns a short sentence for the user and raises IllegalTransition (or CampaignError, both in
campaigns.exceptions) with a clear message when the action does not apply.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from campaigns import states
from campaigns.audience import segments
from campaigns.audience.validators import validate_from_email
from campaigns.exceptions import CampaignError, IllegalTransition
from campaigns.experiments import ab_tests
from campaigns.security import allowances
from campaigns.message.rendering import compile_campaign, recipient_context
from campaigns.models import Campaign, DeliveryLog, SendBatch, Suppression
from campaigns.sending import routing
from campaigns.sending.chain import send_with_fallback
from campaigns.sending.dispatch import dispatch_batches, enqueue_start, queue_batches
from campaigns.sending.ledger import settle_unknown_with_evidence, suppress_held
from campaigns.sending.pipeline import batch_size, finalize_if_done, next_batch_number, requeue_in_batches
from campaigns.sending.providers.base import Batch, Outcome, OutgoingMessage

logger = logging.getLogger(__name__)
D = DeliveryLog.Status

# ETA tasks wait in Redis; one longer than the broker's visibility timeout would be redelivered, so
# far-off schedules are left to the beat sweep, which enqueues them when they come near.
ETA_WINDOW = timedelta(minutes=5)


def create_from_template(template, **fields):
    """A new draft campaign with the template's subject and bodies; FIELDS override or add to them."""
    values = {"subject": template.subject, "html_body": template.html_body, "text_body": template.text_body,
              "template": template, "name": template.name, **fields}
    return Campaign.objects.create(**values)


def check_sender(campaign_id, from_email):
    """The sender mail goes out with must be valid and allowed now (ALLOWED_FROM_DOMAINS may have been set
    after the campaign was written)."""
    try:
        validate_from_email(from_email or settings.DEFAULT_FROM_EMAIL)
    except ValidationError as error:
        raise CampaignError(f"Campaign #{campaign_id} cannot send from this address: {' '.join(error.messages)}")


def _eta_if_near(campaign_id, when):
    if when - timezone.now() <= ETA_WINDOW:
        enqueue_start(campaign_id, eta=when)


def schedule(campaign_id, when, user_id=None):
    """Schedule a draft (or reschedule a scheduled) campaign for WHEN, a timezone-aware datetime; USER_ID
    (who scheduled it) gets its completion report."""
    if timezone.is_naive(when):
        raise CampaignError("The schedule needs a time zone: give an aware datetime.")
    found = Campaign.objects.filter(pk=campaign_id).values_list("from_email", "segment").first()
    if found is None:
        raise CampaignError(f"Campaign #{campaign_id} does not exist.")
    from_email, segment = found
    check_sender(campaign_id, from_email)
    check_content(campaign_id)
    ab_tests.check_ready(campaign_id)
    if not Campaign.objects.filter(pk=campaign_id, recipients__isnull=False).exists():
        raise CampaignError(f"Campaign #{campaign_id} has no recipients: import some before scheduling it.")
    if segment and not segments.has_match(campaign_id, segment):
        raise CampaignError(f"Campaign #{campaign_id}'s audience matches no recipient ({segments.describe(segment)}): "
                            "change it before scheduling.")
    with transaction.atomic():
        states.schedule(campaign_id, when, **({"scheduled_by_id": user_id} if user_id else {}))
        _eta_if_near(campaign_id, when)
    local = timezone.localtime(when)
    logger.info("Campaign %s scheduled for %s", campaign_id, local.isoformat())
    return f"Scheduled for {local:%Y-%m-%d %H:%M %Z}."


def check_content(campaign_id):
    """A CampaignError naming what stops the campaign's content from being sent: a draft may be saved with
    merge tags no recipient has yet (an import still to come), scheduling it may not."""
    problems = Campaign.objects.get(pk=campaign_id).content_problems()
    if problems:
        raise CampaignError(f"Campaign #{campaign_id} cannot be sent yet: " + " ".join(
            f"{CONTENT_FIELD_NAMES[field]}: {problem}" for field, problem in problems.items()))


CONTENT_FIELD_NAMES = {"subject": "Subject", "html_body": "HTML body", "text_body": "Text body"}


def send_now(campaign_id, user_id=None):
    schedule(campaign_id, timezone.now(), user_id=user_id)
    return "Sending starts now."


def unschedule(campaign_id):
    states.unschedule(campaign_id)
    logger.info("Campaign %s unscheduled", campaign_id)
    return "Unscheduled: the campaign is a draft again."


def unschedule_after_change(campaign_id, user_id, what) -> str:
    """A change to what a scheduled campaign would send, or to whom, takes it back to draft, so that what
    goes out is what someone with the send permission scheduled (separation of duties). WHAT names the
    change ("the content", "the segment", ...). Returns the sentence for staff; "" if it was not scheduled."""
    try:
        states.unschedule(campaign_id)
    except IllegalTransition:
        return ""
    logger.warning("Campaign %s unscheduled: %s changed by user %s while it was scheduled", campaign_id, what,
                   user_id)
    return (f"Unscheduled: {what} changed after the campaign was scheduled, so it is a draft again. Someone who "
            "may send campaigns must review and schedule it again.")


def pause(campaign_id):
    states.pause(campaign_id)
    logger.info("Campaign %s paused", campaign_id)
    return "Paused: batches already sending finish, no new batch starts."


def resume(campaign_id):
    with transaction.atomic():
        states.resume(campaign_id)
        queue_batches(campaign_id)
        batches = SendBatch.objects.filter(campaign_id=campaign_id).exclude(status=SendBatch.Status.DONE).count()
    logger.info("Campaign %s resumed: %s batches to send", campaign_id, batches)
    return f"Resumed: {batches} batches to send."


def cancel(campaign_id):
    """Cancel; every recipient not yet sent becomes skipped with the reason 'cancelled'."""
    with transaction.atomic():
        states.cancel(campaign_id)
        # A batch sending now writes its own rows (what it defers ends skipped "cancelled"): its rows
        # are pending until their result, so they are left to it. No batch can claim any more (it
        # claims only while the campaign is in progress, holding the campaign's row).
        # The campaign (locked by the transition), then its batches, then its rows: the lock order of
        # every writer.
        SendBatch.objects.filter(campaign_id=campaign_id).exclude(status__in=(SendBatch.Status.SENDING,
                                                                              SendBatch.Status.DONE)).update(
            status=SendBatch.Status.DONE)
        sending = SendBatch.objects.filter(campaign_id=campaign_id, status=SendBatch.Status.SENDING)
        skipped = (DeliveryLog.objects.filter(campaign_id=campaign_id, status=D.PENDING)
                   .exclude(batch_number__in=sending.values("number"))
                   .update(status=D.SKIPPED, last_error="cancelled", updated_at=timezone.now()))
        Campaign.objects.filter(pk=campaign_id).update(skipped_count=F("skipped_count") + skipped)
    logger.info("Campaign %s cancelled: %s recipients skipped", campaign_id, skipped)
    return f"Cancelled: {skipped} recipients not yet sent were skipped."


def _requeue(campaign_id, from_status, counter, what):
    """Put every FROM_STATUS recipient back to pending in fresh batches and send them."""
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        if campaign.status in (Campaign.Status.COMPLETED, Campaign.Status.FAILED):
            states.reopen(campaign_id)
        elif campaign.status not in (Campaign.Status.IN_PROGRESS, Campaign.Status.PAUSED):
            raise CampaignError(f"Cannot {what} campaign #{campaign_id}: it is {campaign.get_status_display().lower()};"
                                f" only a started campaign has {from_status} recipients to {what}.")
        rows = DeliveryLog.objects.filter(campaign_id=campaign_id, status=from_status)
        count = rows.count()
        if not count:
            if campaign.status in (Campaign.Status.COMPLETED, Campaign.Status.FAILED):
                raise CampaignError(f"Campaign #{campaign_id} has no {from_status} recipients to {what}.")
            return 0
        _, queued = requeue_in_batches(campaign_id, from_status, next_batch_number(campaign_id), batch_size(campaign),
                                       queue=campaign.status != Campaign.Status.PAUSED)
        Campaign.objects.filter(pk=campaign_id).update(**{counter: F(counter) - count})
        dispatch_batches(campaign_id, queued)
    logger.info("Campaign %s: %s %s recipients", campaign_id, what, count)
    return count


def retry_failed(campaign_id):
    count = _requeue(campaign_id, D.FAILED, "failed_count", "retry")
    return f"Retrying {count} failed recipients."


def has_held_refusals(campaign_id):
    """Whether the suppression circuit breaker holds refusals of dead addresses of the campaign."""
    return DeliveryLog.objects.filter(campaign_id=campaign_id, status=D.FAILED, suppression_held=True).exists()


def confirm_dead_addresses(campaign_id):
    """Staff confirm that the addresses the suppression circuit breaker held are really dead: they are
    suppressed as bounced, and a campaign the breaker paused goes on."""
    if not has_held_refusals(campaign_id):
        raise CampaignError(f"Campaign #{campaign_id} has no refused addresses waiting for confirmation.")
    suppressed = suppress_held(campaign_id)
    message = f"{suppressed} addresses suppressed as bounced."
    if Campaign.objects.filter(pk=campaign_id, status=Campaign.Status.PAUSED).exists():
        message += " " + resume(campaign_id)
        finalize_if_done(campaign_id)  # every batch may have ended while it was paused
    logger.info("Campaign %s: staff confirmed the held refusals: %s addresses suppressed", campaign_id, suppressed)
    return message


def resend_unknown(campaign_id):
    """Re-send recipients whose fate is unknown. Explicit only: some of them may get the mail twice.

    Rows with evidence from the provider (delivered, opened, clicked ...) are settled as sent first,
    so only rows without any evidence are sent again."""
    with transaction.atomic():
        settled = settle_unknown_with_evidence(campaign_id)
    try:
        count = _requeue(campaign_id, D.UNKNOWN, "unknown_count", "re-send")
    except CampaignError:
        if not settled:
            raise
        count = 0
    message = f"Re-sending {count} recipients whose delivery was unknown."
    if settled:
        message += f" {settled} more were settled as sent by the provider's events and are not re-sent."
    return message


SAMPLE_RECIPIENT = {"email": "sample@example.com", "first_name": "Sam", "last_name": "Sample", "data": {}}


def reserve_test_emails(user_id, count):
    """Count COUNT test addresses against the user's hourly allowance; CampaignError when it is spent.

    The counter is shared by every web process (campaigns.security.allowances); its hour starts at the
    first test send, and refused requests do not count.
    """
    limit = settings.TEST_EMAILS_PER_USER_PER_HOUR
    if not allowances.spend("test-emails", user_id, count, limit, window_seconds=3600):
        raise CampaignError(f"Test email not sent: you may send tests to at most {limit} addresses an hour. "
                            "Try again later.")


def test_data_of(campaign, recipient=""):
    """(the recipient whose data a test email renders, what to call it): the campaign's recipient with the
    address RECIPIENT, or by default the first of its audience (its segment applied, suppressed addresses
    left out, as sending would mail it); the sample values when the audience is empty."""
    if recipient:
        found = (campaign.recipients.filter(email__iexact=recipient.strip())
                 .values("email", "first_name", "last_name", "data").order_by("id").first())
        if found is None:
            raise CampaignError(f"Test email not sent: {recipient} is not a recipient of this campaign.")
        return found, f"the data of {found['email']}"
    found = segments.first_of_audience(campaign.pk, campaign.segment)
    if found is None:
        return SAMPLE_RECIPIENT, "sample data: the audience is empty"
    return found, f"the data of {found['email']}, the first of the audience"


def test_versions(campaign):
    """[(variant letter or None, subject, From, HTML, text)]: one per A/B variant, as each is sent
    (campaigns.experiments.ab_tests.with_variant), or the campaign's own content."""
    values = {"subject": campaign.subject, "from_email": campaign.from_email or settings.DEFAULT_FROM_EMAIL,
              "html_body": campaign.html_body, "text_body": campaign.text_body}
    variant_ids = (list(campaign.variants.order_by("letter").values_list("id", flat=True)[:ab_tests.MAX_VARIANTS])
                   if ab_tests.is_ab_test(campaign) else [])
    if not variant_ids:
        return [(None, *values.values())]
    versions = []
    for variant_id in variant_ids:
        sent = ab_tests.with_variant(values, variant_id)
        versions.append((sent.get("variant_letter"), sent["subject"], sent["from_email"], sent["html_body"],
                         sent["text_body"]))
    return versions


def send_test_email(campaign_id, addresses, user_id=None, with_recipient_data=True, recipient=""):
    """Send the rendered campaign to ADDRESSES: with the data of RECIPIENT (an address of one of its
    recipients) or of the first recipient of its audience, or sample values; an A/B test's campaign sends
    one message per variant, its subject marked "[TEST A]", "[TEST B]" ...

    Suppressed addresses are skipped. USER_ID (staff sending from the admin) is rate-limited (one per
    message) and logged; without WITH_RECIPIENT_DATA the sample values are used, and RECIPIENT is refused.
    Touches no delivery log and no counter.
    """
    campaign = Campaign.objects.get(pk=campaign_id)
    check_sender(campaign_id, campaign.from_email)
    if recipient and not with_recipient_data:
        raise CampaignError("Test email not sent: sending with a recipient's data needs the permission to export "
                            "recipient data; leave the recipient empty to use sample data.")
    suppressed = set(Suppression.objects.filter(email__in=[a.strip().lower() for a in addresses])
                     .values_list("email", flat=True))
    allowed = [a for a in addresses if a.strip().lower() not in suppressed]
    if not allowed:
        raise CampaignError("Test email not sent: every address given is on the suppression list.")
    sample, whose = test_data_of(campaign, recipient) if with_recipient_data else (SAMPLE_RECIPIENT, "sample data")
    versions = test_versions(campaign)
    if user_id is not None:
        reserve_test_emails(user_id, len(allowed) * len(versions))
    context = recipient_context(sample["email"], sample["first_name"], sample["last_name"], sample["data"] or {},
                                f"{settings.SITE_URL}/u/test-link-not-active/",
                                f"{settings.SITE_URL}/w/test-link-not-active/")
    sent, problems, providers = 0, [], []
    for letter, subject, from_email, html_body, text_body in versions:
        marker = f"[TEST {letter}] " if letter else "[TEST] "
        compiled = compile_campaign(marker + subject, html_body, text_body)
        messages = [OutgoingMessage(delivery_id=0, email=address, context={**context}) for address in allowed]
        batch = Batch(campaign_id=campaign_id, from_email=from_email, reply_to=campaign.reply_to, compiled=compiled,
                      messages=messages, categories=("test-send",))
        # Through the campaign's pool (its From-domain rules and limits), or the environment's providers.
        provider, results = (send_with_fallback(batch) if campaign.pool_id is None
                             else routing.send(batch, campaign.pool_id))
        providers.append(provider)
        sent += sum(1 for r in results if r.outcome == Outcome.SENT)
        problems += [f"{m.email}{f' (variant {letter})' if letter else ''}: {r.error or r.outcome.value}"
                     for m, r in zip(messages, results) if r.outcome != Outcome.SENT]
    via = ", ".join(dict.fromkeys(providers))
    logger.info("Campaign %s test email by user %s via %s: %s of %s messages sent to %s addresses, %s suppressed",
                campaign_id, user_id, via, sent, len(allowed) * len(versions), len(addresses),
                len(addresses) - len(allowed))
    if versions[0][0] is None:
        message = f"Test email sent to {sent} of {len(addresses)} addresses via {via} ({whose})."
    else:
        letters = ", ".join(letter for letter, *_ in versions)
        message = (f"Test email sent via {via}: one message per variant ({letters}) to each of {len(allowed)} "
                   f"address{'es' if len(allowed) != 1 else ''}, {sent} of {len(allowed) * len(versions)} "
                   f"messages in all ({whose}).")
    if suppressed:
        message += f" Not sent to {len(addresses) - len(allowed)} suppressed address(es)."
    if problems:
        message += " Not sent: " + "; ".join(problems)
    return message


__all__ = ["create_from_template", "schedule", "send_now", "unschedule", "pause", "resume", "cancel", "retry_failed",
           "resend_unknown", "check_sender", "reserve_test_emails", "send_test_email"]


def pick_ab_winner(campaign_id, variant_id):
    """Staff end a campaign's A/B test early: VARIANT_ID goes to the rest now."""
    letter = ab_tests.send_winner(campaign_id, variant_id)
    if letter is None:
        raise CampaignError(f"Campaign #{campaign_id}'s A/B winner was chosen in the meantime.")
    return f"Variant {letter} is the winner: it goes to the rest of the recipients now."
