"""The data model of docs/design.md. Names are fixed; state changes live in `campaigns.states`."""

import datetime
import re

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import MD5, Coalesce
from django.utils.timezone import now as timezone_now

from campaigns.audience.validators import (
    refuse_line_breaks,
    require_json_object,
    validate_email_address,
    validate_from_email,
)
from campaigns.message.markdown import markdown_to_html
from campaigns.message.rendering import (
    available_tags,
    content_problems,
    refuse_oversized_content,
    unknown_tags,
)
from campaigns.security.destinations import api_host_refusal, plaintext_auth_refusal
from campaigns.security.encryption import EncryptedTextField
from campaigns.security.logsafe import escape

# SendGrid accepts at most this many personalizations in one request.
MAX_BATCH_SIZE = 1000


def default_batch_size():
    return settings.CAMPAIGN_BATCH_SIZE


class EmailTemplate(models.Model):
    """A reusable subject, HTML and text; the starter ones are loaded from email_templates/."""

    key = models.SlugField(max_length=100, unique=True, help_text="Stable identifier, e.g. 'newsletter'.")
    name = models.CharField(max_length=200)
    description = models.CharField(max_length=500, blank=True)
    subject = models.CharField(max_length=998)
    html_body = models.TextField(validators=[refuse_oversized_content])
    text_body = models.TextField(blank=True, validators=[refuse_oversized_content],
                                 help_text="Generated from the HTML when empty.")
    is_starter = models.BooleanField(default=False, help_text="Shipped with the product in email_templates/.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class Campaign(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        SCHEDULED = "scheduled", "Scheduled"
        IN_PROGRESS = "in_progress", "In progress"
        PAUSED = "paused", "Paused"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    name = models.CharField(max_length=200)
    subject = models.CharField(max_length=998)
    from_email = models.CharField(max_length=320, default="", blank=True, validators=[validate_from_email],
                                  help_text="Sender, e.g. 'Acme <news@acme.com>'. Defaults to DEFAULT_FROM_EMAIL.")
    reply_to = models.CharField(max_length=254, blank=True, validators=[validate_email_address])
    class BodyFormat(models.TextChoices):
        HTML = "html", "HTML"
        MARKDOWN = "markdown", "Markdown"

    body_format = models.CharField(
        max_length=10, choices=BodyFormat.choices, default=BodyFormat.HTML,
        help_text="Markdown: write the Markdown body; the HTML body is made from it each time it is saved.")
    markdown_body = models.TextField(
        blank=True, validators=[refuse_oversized_content],
        help_text='Markdown, with merge tags as anywhere else, e.g. [Unsubscribe]({{ unsubscribe_url }}). '
                  "HTML written in it is shown as text.")
    html_body = models.TextField(validators=[refuse_oversized_content])
    text_body = models.TextField(blank=True, validators=[refuse_oversized_content],
                                 help_text="Generated from the HTML when empty.")
    template = models.ForeignKey(EmailTemplate, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="campaigns")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.DRAFT, db_index=True)
    scheduled_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    batch_size = models.PositiveIntegerField(
        default=default_batch_size, validators=[MinValueValidator(1), MaxValueValidator(MAX_BATCH_SIZE)]
    )
    track_engagement = models.BooleanField(
        default=True, help_text="Open pixel and click tracking on the SMTP path (SendGrid tracks its own)."
    )
    last_error = models.TextField(blank=True)
    # Hidden from the default admin list; a campaign that has started sending is archived, never deleted,
    # because its delivery logs are the record of who was mailed.
    archived = models.BooleanField(default=False)
    # Not the same as archived: shown, with sample data only, on the public archive page (/archive/).
    public_archive = models.BooleanField(
        default=False, verbose_name="in the public archive",
        help_text="Show this campaign on the public archive page, rendered with sample data only.")
    # Why sending paused by itself: every provider refused us (credentials, configuration, a relay's
    # policy). Empty for a pause staff chose; cleared on resume.
    pause_reason = models.TextField(blank=True, editable=False)
    # The sending pool its batches go through (campaigns.sending.routing); empty: the built-in default
    # pool, the providers configured in the environment (SENDGRID_API_KEY, EMAIL_HOST).
    pool = models.ForeignKey("SendingPool", null=True, blank=True, on_delete=models.PROTECT, related_name="campaigns",
                             help_text="Empty: the default pool (the SendGrid key and SMTP server of the environment).")
    # While every account of its pool is at a limit: when the first of them frees (the page says so).
    quota_wait_until = models.DateTimeField(null=True, blank=True, editable=False)
    # Bumped by every finished batch; the sweep re-dispatches a live campaign that stopped moving. While
    # it waits for quota: when its waiting batch wakes (campaigns.sending.routing.wait_for_quota).
    last_progress_at = models.DateTimeField(null=True, blank=True)
    # While the start creates the delivery rows and batches chunk by chunk (campaigns.sending.pipeline):
    # the last recipient id done, committed with that chunk's rows. Empty before the start and once every
    # row exists; a crashed start resumes after it, and the campaign cannot complete while it is set.
    start_cursor = models.BigIntegerField(null=True, blank=True, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    # Who last scheduled it (or sent it now): the completion report goes to them.
    scheduled_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+", editable=False)
    completion_report = models.BooleanField(
        default=True, help_text="Email a report when it completes, fails or is cancelled, to whoever scheduled it "
                                "and CAMPAIGN_REPORT_RECIPIENTS.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Denormalised counters, updated per batch with F() expressions so that no page counts rows.
    total_recipients = models.PositiveIntegerField(default=0)
    sent_count = models.PositiveIntegerField(default=0)
    failed_count = models.PositiveIntegerField(default=0)
    skipped_count = models.PositiveIntegerField(default=0)
    # Of total_recipients, those on the suppression list when it started (skipped then): not its audience
    # (campaigns.audience.plan).
    suppressed_at_start = models.PositiveIntegerField(default=0)
    unknown_count = models.PositiveIntegerField(default=0)
    delivered_count = models.PositiveIntegerField(default=0)
    opened_count = models.PositiveIntegerField(default=0)  # recipients opened by a person (campaigns.engagement.opens_and_clicks)
    machine_opened_count = models.PositiveIntegerField(default=0)  # recipients whose mail a machine opened
    clicked_count = models.PositiveIntegerField(default=0)
    bounced_count = models.PositiveIntegerField(default=0)
    complained_count = models.PositiveIntegerField(default=0)
    soft_bounced_count = models.PositiveIntegerField(default=0)  # recipients whose mail came back for a passing reason
    unsubscribed_count = models.PositiveIntegerField(default=0)

    # The recipients' imported column names (their merge tags), cached so that validating a campaign
    # with a million recipients does not read every row on each save. Valid while
    # merge_fields_total equals total_recipients (an import always changes that count).
    merge_fields = models.JSONField(default=list, blank=True, editable=False)
    merge_fields_total = models.IntegerField(null=True, blank=True, editable=False)
    # The audience narrowed by the recipients' columns (campaigns.audience.segments): plain data, validated against
    # the known columns and operators and compiled to parameterised SQL when the campaign starts. None: everyone.
    segment = models.JSONField(null=True, blank=True, editable=False)

    # A/B test (campaigns.experiments.ab_tests): with two to four variants and a test share, that share of the
    # recipients is split evenly at random between the variants; after the wait the winner goes to the rest.
    class AbMetric(models.TextChoices):
        OPENS = "opens", "Opens by people (machine opens left out)"
        CLICKS = "clicks", "Clicks"

    ab_test_percent = models.PositiveSmallIntegerField(
        "A/B test share (%)", default=0, validators=[MinValueValidator(0), MaxValueValidator(100)],
        help_text="Share of the recipients that test the variants; 0 sends no A/B test.")
    ab_metric = models.CharField("A/B winner metric", max_length=10, choices=AbMetric.choices,
                                 default=AbMetric.OPENS)
    ab_wait = models.DurationField("A/B wait", default=datetime.timedelta(hours=4),
                                   help_text="How long the test runs before the winner goes to the rest (HH:MM:SS).")
    ab_test_ends_at = models.DateTimeField(null=True, blank=True, editable=False)
    ab_winner = models.ForeignKey("CampaignVariant", null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+", editable=False)

    class Meta:
        ordering = ["-created_at"]
        permissions = [
            ("send_campaign", "Can send campaigns (schedule, send now, resume, retry failed, resend unknown)"),
            ("export_recipients", "Can export recipient data (CSV) and preview with real recipient data"),
        ]
        indexes = [
            # The beat sweep looks for due scheduled campaigns and live ones.
            models.Index(fields=["status", "scheduled_at"], name="campaign_status_sched_idx"),
        ]

    def __str__(self):
        return self.name

    @property
    def processed_count(self):
        return self.sent_count + self.failed_count + self.skipped_count + self.unknown_count

    @property
    def is_deletable(self):
        """Only a campaign that never started sending: it has no delivery logs, no record to keep."""
        return self.status == self.Status.DRAFT or (self.status == self.Status.CANCELLED and self.started_at is None)

    @property
    def is_editable(self):
        """Content can change until sending starts."""
        return self.status in (self.Status.DRAFT, self.Status.SCHEDULED)

    @classmethod
    def lock(cls, campaign_ids):
        """Lock these campaigns' rows (FOR UPDATE) in id order, in the caller's transaction: the first
        step of every writer that also writes batches or delivery rows, so that all take their locks
        in one order (campaign, then batch, then rows) and wait for each other instead of deadlocking."""
        ids = sorted({pk for pk in campaign_ids if pk is not None})
        if ids:
            list(cls.objects.select_for_update().filter(pk__in=ids).order_by("pk").values_list("pk", flat=True))
        return ids

    @classmethod
    def lock_for_deliveries(cls, delivery_ids):
        """Lock the campaigns of these delivery rows, as `lock` does; returns their ids."""
        return cls.lock(DeliveryLog.objects.filter(pk__in=list(delivery_ids)).values_list("campaign_id", flat=True)
                        .distinct())

    @classmethod
    def recount_recipients(cls, campaign_ids):
        """Set total_recipients from the rows, after recipients were deleted."""
        count = Recipient.objects.filter(campaign=models.OuterRef("pk")).order_by().values("campaign").annotate(
            n=models.Count("pk")).values("n")
        cls.objects.filter(pk__in=list(campaign_ids)).update(
            total_recipients=Coalesce(models.Subquery(count), 0))

    def recipient_data_keys(self):
        """The distinct imported column names of this campaign's recipients (cached, see merge_fields)."""
        if self.pk is None:
            return []
        total = self.total_recipients
        # Once started no import can add columns, while the start's chunks move total_recipients (from 0 up
        # to the rows made so far): a scan per page load would read every recipient of a 10M campaign.
        if self.merge_fields_total == total or (self.merge_fields_total is not None and self.started_at is not None):
            return list(self.merge_fields)
        from django.db import connection, transaction

        # Every row of one import has the same keys, so this full scan runs once per import, not per save.
        with connection.cursor() as cursor:
            cursor.execute("SELECT DISTINCT jsonb_object_keys(data) FROM campaigns_recipient WHERE campaign_id = %s",
                           [self.pk])
            keys = sorted(row[0] for row in cursor.fetchall())
        # An import holds the campaign row until it commits: then the cache is not written this time
        # (SKIP LOCKED) rather than making the page wait for the import.
        unlocked = Campaign.objects.filter(pk=self.pk).select_for_update(skip_locked=True).values("pk")
        with transaction.atomic():
            Campaign.objects.filter(pk__in=unlocked).update(merge_fields=keys, merge_fields_total=total)
        self.merge_fields, self.merge_fields_total = keys, total
        return keys

    def available_merge_tags(self):
        return available_tags(self.recipient_data_keys())

    def render_markdown(self):
        """A Markdown campaign's HTML body, made from its Markdown body (campaigns.message.markdown)."""
        if self.body_format == self.BodyFormat.MARKDOWN:
            self.html_body = markdown_to_html(self.markdown_body)

    def save(self, *args, **kwargs):
        # A Markdown draft's HTML follows its Markdown; a save of other fields (counters) leaves both alone.
        fields = kwargs.get("update_fields")
        if self.body_format == self.BodyFormat.MARKDOWN and self.is_editable and (
                fields is None or not {"body_format", "markdown_body", "html_body"}.isdisjoint(fields)):
            self.render_markdown()
            if fields is not None:
                kwargs["update_fields"] = {*fields, "html_body"}
        super().save(*args, **kwargs)

    def content_problems(self):
        """What stops this content from being sent, by field (campaigns.message.rendering.content_problems);
        scheduling refuses a campaign with any (campaigns.services.schedule)."""
        return content_problems(self.available_merge_tags(), self.subject, self.html_body, self.text_body)

    def unknown_merge_tags(self):
        """Tags the content uses that no recipient has a column for (yet): a draft may be saved with them."""
        return unknown_tags(self.subject, self.html_body, self.text_body, available=self.available_merge_tags())

    def clean(self):
        """Refuse malformed merge tags and HTML with no unsubscribe link. Unknown tags are accepted while it is
        a draft (the import that defines them may come later; the admin warns), refused when scheduled."""
        super().clean()
        if not self.is_editable:
            return  # sending has started: the content is read-only and was checked while it was editable
        self.render_markdown()
        errors = content_problems(self.available_merge_tags(), self.subject, self.html_body, self.text_body,
                                  unknown_ok=True)
        if errors and self.body_format == self.BodyFormat.MARKDOWN and "html_body" in errors:
            errors["markdown_body"] = errors.pop("html_body")  # the HTML is made from it: say so where it is written
        if errors:
            raise ValidationError(errors)

    def duplicate(self, with_recipients=True, **fields):
        """A draft copy of the content and settings, sent through the same pool (its quotas, its From-domain
        rules) to the same audience (segment); recipients are copied with one INSERT ... SELECT."""
        from django.db import connection, transaction

        copied = ("subject", "from_email", "reply_to", "body_format", "markdown_body", "html_body", "text_body",
                  "template_id", "batch_size", "track_engagement", "pool_id", "segment")
        values = {name: getattr(self, name) for name in copied}
        values["merge_fields"] = self.recipient_data_keys() if with_recipients else []
        values["name"] = f"Copy of {self.name}"[:200]
        values.update(fields)  # a caller may name the copy
        with transaction.atomic():
            copy = Campaign.objects.create(**values)
            if with_recipients:
                with connection.cursor() as cursor:
                    cursor.execute(
                        "INSERT INTO campaigns_recipient (campaign_id, email, first_name, last_name, data) "
                        "SELECT %s, email, first_name, last_name, data FROM campaigns_recipient "
                        "WHERE campaign_id = %s ORDER BY id", [copy.pk, self.pk])
                    copy.total_recipients = cursor.rowcount
                copy.merge_fields_total = copy.total_recipients
                Campaign.objects.filter(pk=copy.pk).update(total_recipients=copy.total_recipients,
                                                           merge_fields_total=copy.merge_fields_total)
        return copy


# Campaigns that never started sending (no delivery logs): the only ones that may be deleted.
NEVER_STARTED = Q(status=Campaign.Status.DRAFT) | Q(status=Campaign.Status.CANCELLED, started_at__isnull=True)


class Recipient(models.Model):
    # No index of its own: (campaign, email) below leads with campaign_id and serves every lookup.
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="recipients", db_index=False)
    email = models.CharField(max_length=320, help_text="Normalised (validated, lower-cased).",
                             validators=[refuse_line_breaks])
    first_name = models.CharField(max_length=200, blank=True, default="")
    last_name = models.CharField(max_length=200, blank=True, default="")
    data = models.JSONField(default=dict, blank=True, validators=[require_json_object],
                            help_text="Every other imported column; each is a merge tag.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "email"], name="recipient_unique_campaign_email"),
        ]
        # The chunked start reads a campaign's recipients in id order, one range at a time.
        indexes = [models.Index(fields=["campaign", "id"], name="recipient_campaign_id")]

    def __str__(self):
        return self.email


class DeliveryLog(models.Model):
    class Status(models.TextChoices):
        # A row claimed by a live batch stays pending until its result: the claim is the batch's
        # (SendBatch), so the row is written once after it is created.
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"
        UNKNOWN = "unknown", "Unknown"

    TERMINAL_STATUSES = (Status.SENT, Status.FAILED, Status.SKIPPED, Status.UNKNOWN)

    class Provider(models.TextChoices):
        SENDGRID = "sendgrid", "SendGrid"
        SMTP = "smtp", "SMTP"

    # No index of its own: (campaign, status, id) leads with campaign_id. Neither key is a database
    # constraint: checking two foreign keys per row (each locking the row it points to) was half the
    # time of a campaign's start (docs/design.md, promise 2). The rows are made only from the
    # campaign's own recipients, in the same statement, and go only with them (Django's cascade; a
    # started campaign and a mailed recipient are never deleted).
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="delivery_logs", db_index=False,
                                 db_constraint=False)
    # Unique: a recipient belongs to one campaign, so this is "one log per recipient of a campaign".
    recipient = models.OneToOneField(Recipient, on_delete=models.CASCADE, related_name="delivery_log",
                                     db_constraint=False)
    # Copied from the recipient so that sending, webhooks and admin search need no join.
    email = models.CharField(max_length=320, validators=[refuse_line_breaks])
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    # The A/B variant this row tests (the test share only; the rest get the winner, Campaign.ab_winner).
    variant = models.ForeignKey("CampaignVariant", null=True, blank=True, on_delete=models.DO_NOTHING,
                                db_constraint=False, db_index=False, related_name="+")
    # Assigned when the campaign starts: rows [n * batch_size, (n + 1) * batch_size) form batch n
    # (SendBatch number n), so a batch task (and any redelivery of it) always sends the same rows.
    batch_number = models.PositiveIntegerField(default=0)
    # "sendgrid" or "smtp" (the environment's providers, the built-in default pool), or the name of
    # the sending account (SendingAccount) that sent it.
    provider = models.CharField(max_length=100, blank=True, default="")
    provider_message_id = models.CharField(max_length=255, blank=True, default="")
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    sent_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)  # first open by a person
    # First open by a machine (a privacy proxy's prefetch, a scanner): campaigns.engagement.opens_and_clicks's rule.
    machine_opened_at = models.DateTimeField(null=True, blank=True)
    clicked_at = models.DateTimeField(null=True, blank=True)
    bounced_at = models.DateTimeField(null=True, blank=True)
    complained_at = models.DateTimeField(null=True, blank=True)
    # The first soft bounce (full mailbox, policy, greylisting, timeout): counted, never a suppression by itself.
    soft_bounced_at = models.DateTimeField(null=True, blank=True)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)
    # A provider event that settles the row ("sent" or "failed"), kept while the row is not final yet
    # (its worker died after the provider took it, before writing the result): applied, and cleared,
    # when the row would become unknown (campaigns.sending.ledger). db_default: rows are inserted in SQL.
    early_evidence = models.CharField(max_length=10, blank=True, default="", db_default="")
    early_evidence_note = models.CharField(max_length=500, blank=True, default="", db_default="")
    # Refused as a dead address, but not suppressed: the batch tripped the suppression circuit breaker
    # (too many such refusals at once), until staff confirm the addresses really are dead.
    suppression_held = models.BooleanField(default=False, db_default=False)
    # Held back with its domain group (a receiving server's 421 or 4.7.x throttling, DomainHold):
    # pending, not sent before this time, and the deferral used no attempt (campaigns.sending.domain_groups).
    not_before = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # The campaign page's "held back" note and a batch's earliest held row: held rows are few.
            models.Index(fields=["campaign", "not_before"], name="dlog_held_idx",
                         condition=Q(not_before__isnull=False)),
            # Admin list filtered by campaign and status, newest first; a batch reads its pending rows
            # as a range of ids (SendBatch.first_id .. last_id) of the campaign's pending ones.
            models.Index(fields=["campaign", "status", "id"], name="dlog_campaign_status_idx"),
            models.Index(fields=["email"], name="dlog_email_idx"),
            models.Index(fields=["provider_message_id"], name="dlog_msgid_idx",
                         condition=~Q(provider_message_id="")),
            # The campaign dashboard's sends-per-minute chart (an index-only range scan).
            models.Index(fields=["campaign", "sent_at"], name="dlog_campaign_sent_idx",
                         condition=Q(sent_at__isnull=False)),
            # An account's complaint rate (campaigns.stats.account_complaint_rate): complaints are few.
            models.Index(fields=["provider", "complained_at"], name="dlog_complained_idx",
                         condition=Q(complained_at__isnull=False)),
        ]

    def __str__(self):
        return f"{self.email} ({self.status})"


class Suppression(models.Model):
    class Reason(models.TextChoices):
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
        BOUNCED = "bounced", "Bounced"
        COMPLAINED = "complained", "Complained (spam report)"
        MANUAL = "manual", "Added by staff"

    email = models.CharField(max_length=320, unique=True, help_text="Normalised (lower-cased).",
                             validators=[refuse_line_breaks])
    reason = models.CharField(max_length=20, choices=Reason.choices, default=Reason.MANUAL)
    source = models.CharField(max_length=200, blank=True, default="",
                              help_text="Where it came from, e.g. 'one-click unsubscribe', 'sendgrid webhook'.")
    campaign = models.ForeignKey(Campaign, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("manage_suppressions", "Can add, remove and import suppressions")]

    def __str__(self):
        return f"{self.email} ({self.reason})"

    def save(self, *args, **kwargs):
        self.email = self.email.strip().lower()
        super().save(*args, **kwargs)


class BackgroundRun(models.Model):
    """Work a staff member started that runs on a worker, with its progress: an import, a preflight."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    rows_done = models.PositiveIntegerField(default=0, help_text="Progress: rows done so far.")
    error = models.TextField(blank=True, default="")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ["-created_at"]


class RecipientImport(BackgroundRun):
    """One uploaded file imported into a campaign in the background, with its report."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="imports")
    file = models.FileField(upload_to="imports/%Y/%m/")
    original_name = models.CharField(max_length=255)
    sheet = models.CharField(max_length=255, blank=True, default="")
    rows_estimated = models.PositiveIntegerField(default=0)
    total_rows = models.PositiveIntegerField(default=0)
    imported = models.PositiveIntegerField(default=0)
    duplicates_in_file = models.PositiveIntegerField(default=0)
    already_present = models.PositiveIntegerField(default=0)
    invalid = models.PositiveIntegerField(default=0)
    suppressed = models.PositiveIntegerField(default=0)
    rejected_file = models.FileField(upload_to="imports/rejected/%Y/%m/", blank=True)
    # The merge tags the file's columns give its recipients, and those of them the campaign had not before.
    merge_tags = models.JSONField(default=list, blank=True, editable=False)
    new_merge_tags = models.JSONField(default=list, blank=True, editable=False)

    def __str__(self):
        return f"{self.original_name} → {self.campaign}"


class CampaignLink(models.Model):
    """A link of a campaign that was clicked, with the number of recipients who clicked it.

    Created on its first click (SMTP redirect or SendGrid click event). Identified by its URL: the
    unique index is on md5(url) because a URL may be longer than a btree entry may be.
    """

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="links", db_index=False)
    url = models.TextField()
    clickers = models.PositiveIntegerField(default=0, help_text="Recipients who clicked this link.")
    first_clicked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint("campaign", MD5("url"), name="campaignlink_unique_campaign_url"),
        ]

    def __str__(self):
        return self.url


class LinkClick(models.Model):
    """That one recipient (a delivery) clicked one link; at most one row per pair, the first click."""

    link = models.ForeignKey(CampaignLink, on_delete=models.CASCADE, related_name="+", db_index=False)
    delivery = models.ForeignKey(DeliveryLog, on_delete=models.CASCADE, related_name="+")
    clicked_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["link", "delivery"], name="linkclick_unique_link_delivery"),
        ]


class EngagementHour(models.Model):
    """First opens and clicks per recipient, counted in the hour they happened (the engagement chart)."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="+", db_index=False)
    hour = models.DateTimeField()
    opens = models.PositiveIntegerField(default=0)
    machine_opens = models.PositiveIntegerField(default=0)
    clicks = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "hour"], name="engagementhour_unique_campaign_hour"),
        ]


class EngagementMinute(models.Model):
    """First opens and clicks per recipient, counted in the minute they happened: the chart of a campaign's
    first hours (campaigns.stats.engagement_series), finer than EngagementHour."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="+", db_index=False)
    minute = models.DateTimeField()
    opens = models.PositiveIntegerField(default=0)
    machine_opens = models.PositiveIntegerField(default=0)
    clicks = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "minute"], name="engagementminute_unique_campaign_minute"),
        ]


class PreflightRun(BackgroundRun):
    """One preflight of a campaign (campaigns.message.preflight): every recipient rendered in the background,
    with progress, then its findings (errors that block sending, warnings, figures) as JSON."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="preflight_runs")
    # The campaign version checked: findings are stale once the campaign changes.
    campaign_updated_at = models.DateTimeField(null=True, blank=True)
    rows_total = models.PositiveIntegerField(default=0)
    report = models.JSONField(default=dict, blank=True)

    def get_status_display(self):
        # A preflight that ran to the end succeeded even when it found errors: staff read "Finished".
        return "Finished" if self.status == self.Status.SUCCEEDED else super().get_status_display()

    def __str__(self):
        return f"Preflight of {self.campaign} ({self.status})"


class SendingAccount(models.Model):
    """One way to send mail, managed in the admin: a SendGrid API key, an SMTP server, or Amazon SES
    through its SMTP interface; with its limits. Pools group accounts; campaigns choose a pool."""

    class Kind(models.TextChoices):
        SENDGRID = "sendgrid", "SendGrid API"
        SMTP = "smtp", "SMTP"
        SES_SMTP = "ses_smtp", "Amazon SES (SMTP interface)"

    class Security(models.TextChoices):
        STARTTLS = "starttls", "STARTTLS (port 587)"
        TLS = "tls", "Implicit TLS (port 465)"
        NONE = "none", "None (local relays only)"

    class DayWindow(models.TextChoices):
        ROLLING = "rolling", "Rolling 24 hours"
        CALENDAR = "calendar", "Calendar day (TIME_ZONE)"

    class BounceMailbox(models.TextChoices):
        IMAP = "imap", "IMAP"
        POP3 = "pop3", "POP3"

    class AfterRead(models.TextChoices):
        DELETE = "delete", "Delete it"
        MOVE = "move", "Move it to a folder (IMAP)"

    name = models.CharField(max_length=100, unique=True, help_text="Shown in delivery logs and on campaign pages.")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.SMTP)
    host = models.CharField(max_length=255, blank=True, help_text="SMTP server, e.g. smtp.gmail.com, "
                            "smtp.office365.com, email-smtp.eu-west-1.amazonaws.com.")
    port = models.PositiveIntegerField(null=True, blank=True, validators=[MaxValueValidator(65535)],
                                       help_text="Empty: 587 with STARTTLS, 465 with implicit TLS, 25 without.")
    security = models.CharField(max_length=10, choices=Security.choices, default=Security.STARTTLS)
    username = models.CharField(max_length=255, blank=True)
    # The SMTP password or the SendGrid API key, encrypted (campaigns.security.encryption); never shown back.
    secret = EncryptedTextField(blank=True, editable=False)
    api_host = models.CharField(max_length=255, blank=True, default="https://api.sendgrid.com",
                                help_text="SendGrid only: the API base URL.")
    from_domains = models.TextField(
        blank=True, help_text="Domains this account may send From, one a line or comma-separated "
                              "(subdomains not included). Empty: any domain.")
    per_second = models.PositiveIntegerField(default=0, help_text="0: no limit.")
    per_minute = models.PositiveIntegerField(default=0, help_text="0: no limit.")
    per_hour = models.PositiveIntegerField(default=0, help_text="0: no limit.")
    per_day = models.PositiveIntegerField(default=0, help_text="0: no limit.")
    day_window = models.CharField(max_length=10, choices=DayWindow.choices, default=DayWindow.ROLLING)
    weight = models.PositiveSmallIntegerField(default=1, validators=[MinValueValidator(1)],
                                              help_text="Relative share of the traffic among accounts with room.")
    # DKIM (campaigns.deliverability.dkim): every message of an SMTP or SES-SMTP account with all three is
    # signed. The private key is encrypted like the secret and never shown back.
    dkim_domain = models.CharField(max_length=253, blank=True, help_text="DKIM: the signing domain (d=), "
                                   "usually the From domain or its parent, e.g. example.com.")
    dkim_selector = models.CharField(max_length=63, blank=True, help_text="DKIM: the selector (s=), e.g. "
                                     "mailer2026; the key is published at <selector>._domainkey.<domain>.")
    dkim_private_key = EncryptedTextField(blank=True, editable=False)
    enabled = models.BooleanField(default=True)
    disabled_reason = models.TextField(blank=True, help_text="Why sending disabled it (authentication refused).")
    # Bounces that come back by mail (campaigns.engagement.bounce_mail; docs/deliverability.md).
    bounce_domain = models.CharField(
        max_length=253, blank=True, help_text="SMTP only: with a domain, the envelope sender is "
        "bounces+<signed token>@<this domain> (VERP), so every bounce names its delivery. Its MX must deliver "
        "to the bounce mailbox below (or to process_bounce_mail through a pipe). Empty: the From address.")
    bounce_mailbox = models.CharField("bounce mailbox", max_length=4, choices=BounceMailbox.choices, blank=True,
                                      help_text="Where bounces to this account arrive; read every minute.")
    bounce_host = models.CharField(max_length=255, blank=True, help_text="e.g. imap.gmail.com, outlook.office365.com.")
    bounce_port = models.PositiveIntegerField(null=True, blank=True, validators=[MaxValueValidator(65535)],
                                              help_text="Empty: 993/995 with TLS, 143/110 otherwise.")
    bounce_security = models.CharField(max_length=10, choices=Security.choices, default=Security.TLS)
    bounce_username = models.CharField(max_length=255, blank=True)
    # Encrypted like `secret`; never shown back.
    bounce_password = EncryptedTextField(blank=True, editable=False)
    bounce_folder = models.CharField(max_length=255, blank=True, default="INBOX", help_text="IMAP only.")
    bounce_after_read = models.CharField(max_length=6, choices=AfterRead.choices, default=AfterRead.DELETE)
    bounce_move_to = models.CharField(max_length=255, blank=True, default="Processed",
                                      help_text="IMAP only: the folder read messages move to (created if missing).")
    bounce_last_polled_at = models.DateTimeField(null=True, blank=True, editable=False)
    bounce_last_error = models.TextField(blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    last_error_at = models.DateTimeField(null=True, blank=True, editable=False)
    # "Test connection" runs on a worker (campaigns.sending.account_check): when one was asked for (set while
    # it is queued or running, so a second one waits), and what the last one found.
    check_requested_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_check_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_check_worked = models.BooleanField(null=True, editable=False)
    last_check_message = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def domains(self):
        return {d.strip().lower().rstrip(".") for d in self.from_domains.replace(",", "\n").split() if d.strip()}

    def may_send_from(self, domain):
        allowed = self.domains()
        return not allowed or domain.lower() in allowed

    def limits(self):
        """{window name: limit} of the limits set (0 means none)."""
        return {name: getattr(self, f"per_{name}") for name in ("second", "minute", "hour", "day")
                if getattr(self, f"per_{name}")}

    def default_port(self):
        return {self.Security.TLS: 465, self.Security.NONE: 25}.get(self.security, 587)

    def default_bounce_port(self):
        tls = self.bounce_security == self.Security.TLS
        if self.bounce_mailbox == self.BounceMailbox.POP3:
            return 995 if tls else 110
        return 993 if tls else 143

    def signs_with_dkim(self):
        return (self.kind in (self.Kind.SMTP, self.Kind.SES_SMTP) and bool(self.dkim_domain)
                and bool(self.dkim_selector) and bool(self.dkim_private_key))

    def clean(self):
        if self.kind in (self.Kind.SMTP, self.Kind.SES_SMTP) and not self.host:
            raise ValidationError({"host": "An SMTP account needs its server's host name."})
        if self.bounce_domain:
            self.bounce_domain = self.bounce_domain.strip().rstrip(".").lower()
            try:
                ascii_domain = self.bounce_domain.encode("idna").decode("ascii")
            except UnicodeError:
                ascii_domain = ""
            if not re.fullmatch(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}", ascii_domain):
                raise ValidationError({"bounce_domain": "Enter a domain name, e.g. bounces.example.com."})
        if self.bounce_mailbox and not self.bounce_host:
            raise ValidationError({"bounce_host": "A bounce mailbox needs its server's host name."})
        if (self.bounce_mailbox == self.BounceMailbox.POP3 and self.bounce_after_read == self.AfterRead.MOVE):
            raise ValidationError({"bounce_after_read": "POP3 has no folders: read messages can only be deleted."})
        if self.bounce_after_read == self.AfterRead.MOVE and not self.bounce_move_to.strip():
            raise ValidationError({"bounce_move_to": "Name the folder read messages move to."})
        errors = {}
        if self.kind == self.Kind.SENDGRID and api_host_refusal(self.api_host):
            errors["api_host"] = api_host_refusal(self.api_host)
        if self.kind != self.Kind.SENDGRID and plaintext_auth_refusal(self.host, self.security, self.username):
            errors["security"] = plaintext_auth_refusal(self.host, self.security, self.username)
        if errors:
            raise ValidationError(errors)


class SendingPool(models.Model):
    """The accounts a campaign may send through; routing picks among them batch by batch."""

    name = models.CharField(max_length=100, unique=True)
    accounts = models.ManyToManyField(SendingAccount, related_name="pools", blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class SendingAccountUsage(models.Model):
    """How many messages an account sent for one campaign in one hour of TIME_ZONE (`hour`: its start):
    the admin's usage figures and chart per account, and the campaign page's sends per account, without
    counting rows."""

    account = models.ForeignKey(SendingAccount, on_delete=models.CASCADE, related_name="usage")
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="account_usage")
    hour = models.DateTimeField()
    sent = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "campaign", "hour"],
                                               name="sending_account_usage_unique")]
        indexes = [models.Index(fields=["account", "hour"], name="sending_usage_account_hour_idx")]


class SendBatch(models.Model):
    """One batch of a campaign's delivery rows (DeliveryLog.batch_number == number), and its claim.

    The claim, its lease, the heartbeat and the "call began" marks are written here, once per batch
    (or per SMTP message on this one small row), so a delivery row is written once after it is
    created: with its result (campaigns.sending.ledger).
    """

    class Status(models.TextChoices):
        WAITING = "waiting", "Waiting"  # has pending rows; no task is queued for it yet
        QUEUED = "queued", "Queued"  # a send task is queued (or its retry is due)
        SENDING = "sending", "Sending"  # claimed by a live batch, under a lease
        DONE = "done", "Done"  # every row it holds has a result
        HELD = "held", "Held"  # an A/B test's rest: nothing queues it until the winner is chosen

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="send_batches", db_index=False)
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.WAITING)
    # The rows' ids lie in [first_id, last_id] (a batch reads its pending rows as that range).
    first_id = models.BigIntegerField()
    last_id = models.BigIntegerField()
    size = models.PositiveIntegerField(default=0, help_text="Rows in the batch when it was made.")
    attempts = models.PositiveIntegerField(default=0, help_text="Claims so far.")
    # The claim: a live batch keeps renewing lease_expires_at; a dead one loses it within one lease.
    claim_token = models.UUIDField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # The rows whose provider call began and whose result is not written yet (SMTP: the current
    # chunk; SendGrid: the request), set at the last moment before bytes leave. An expired lease
    # makes exactly these `unknown`; every other pending row of the batch goes back to be sent.
    in_flight = ArrayField(models.BigIntegerField(), default=list, blank=True)
    call_started_at = models.DateTimeField(null=True, blank=True, help_text="When the current in-flight call began.")
    # An A/B test's batch: sent with this variant's subject, From name and content (a held batch gets
    # the winner when it is chosen).
    variant = models.ForeignKey("CampaignVariant", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "number"], name="sendbatch_unique_campaign_number"),
        ]
        indexes = [
            # The sweep finds expired leases; the admin shows what is in flight.
            models.Index(fields=["lease_expires_at"], name="sendbatch_sending_idx", condition=Q(status="sending")),
            # The next batches to queue, in order.
            models.Index(fields=["campaign", "number"], name="sendbatch_waiting_idx", condition=Q(status="waiting")),
        ]

    def __str__(self):
        return f"campaign {self.campaign_id} batch {self.number} ({self.status})"


class CampaignVariant(models.Model):
    """One variant of a campaign's A/B test: its subject, and optionally its own From name and content
    (empty fields use the campaign's)."""

    LETTERS = "ABCD"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="variants")
    letter = models.CharField(max_length=1, choices=[(c, c) for c in LETTERS])
    subject = models.CharField(max_length=998)
    from_name = models.CharField(max_length=200, blank=True, validators=[refuse_line_breaks],
                                 help_text="Empty: the campaign's From.")
    html_body = models.TextField(blank=True, validators=[refuse_oversized_content],
                                 help_text="Empty: the campaign's HTML.")
    text_body = models.TextField(blank=True, validators=[refuse_oversized_content],
                                 help_text="Empty: the campaign's text (or the variant's HTML as text).")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["campaign", "letter"]
        constraints = [models.UniqueConstraint(fields=["campaign", "letter"], name="campaignvariant_unique_letter")]

    def __str__(self):
        return f"Variant {self.letter}"

    def _campaign_if_set(self):
        # An admin inline of a campaign being added sets the (unsaved) campaign, with no id yet.
        return self.campaign if self.campaign_id is not None or "campaign" in self._state.fields_cache else None

    def content_problems(self, unknown_ok=False):
        """What stops this variant's own subject, HTML or text from being sent, by field, checked as the
        campaign's own are (campaigns.message.rendering.content_problems): merge tags, the unsubscribe link."""
        campaign = self._campaign_if_set()
        available = campaign.available_merge_tags() if campaign is not None else available_tags()
        return content_problems(available, self.subject, self.html_body, self.text_body, unknown_ok=unknown_ok)

    def unknown_merge_tags(self):
        campaign = self._campaign_if_set()
        available = campaign.available_merge_tags() if campaign is not None else available_tags()
        return unknown_tags(self.subject, self.html_body, self.text_body, available=available)

    def clean(self):
        super().clean()
        campaign = self._campaign_if_set()
        if campaign is not None and not campaign.is_editable:
            return  # sending has started: the variants are read-only, as the campaign's content is
        errors = self.content_problems(unknown_ok=True)  # unknown tags: as the campaign's (Campaign.clean)
        if errors:
            raise ValidationError(errors)


class UnreadBounce(models.Model):
    """A message in a bounce mailbox (or given to process_bounce_mail) that could not be read as a
    bounce, a complaint or an auto-reply: kept for staff to look at, never guessed
    (campaigns.engagement.bounce_mail)."""

    received_at = models.DateTimeField(auto_now_add=True)
    source = models.CharField(max_length=200, help_text="Where it came from: a sending account's mailbox, or a file.")
    sender = models.CharField(max_length=998, blank=True)
    subject = models.CharField(max_length=998, blank=True)
    reason = models.CharField(max_length=500, help_text="Why it could not be read.")
    # The digest makes a message kept twice (a replay, a mailbox read again) one row.
    digest = models.CharField(max_length=64, unique=True)
    raw = models.BinaryField(help_text="The whole message as it arrived (at most BOUNCE_MAX_MESSAGE_BYTES).")

    class Meta:
        ordering = ["-received_at"]
        verbose_name = "unread bounce message"

    def __str__(self):
        return f"{self.subject or '(no subject)'} ({self.reason})"

class ApiToken(models.Model):
    """A personal API token (campaigns.api.authentication): only its SHA-256 is stored, the token itself is
    shown once. `prefix` (the token's first characters) finds the row; the hash proves the rest."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True, help_text="What it is for, e.g. 'CRM sync'.")
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    token_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never expires.")
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API token"

    def __str__(self):
        return f"{self.name or 'token'} ({self.prefix}…)"


class IdempotencyKey(models.Model):
    """The first answer to a POST sent with an Idempotency-Key (campaigns.api.idempotency). The row is
    inserted before the request acts, so a concurrent duplicate meets the unique constraint and never acts."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=2000)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)  # None: the first request is running
    body = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key", "method", "path"],
                                               name="idempotencykey_unique_request")]
        indexes = [models.Index(fields=["created_at"], name="idempotencykey_created_idx")]


class WebhookEndpoint(models.Model):
    """Where outbound webhooks go (campaigns.webhooks): a URL, the event types it wants, and the secret its
    requests are signed with (Standard Webhooks), encrypted at rest and shown once."""

    url = models.URLField(max_length=2000, help_text="https://… (private addresses are refused unless "
                                                     "WEBHOOK_ALLOW_PRIVATE_URLS is set).")
    description = models.CharField(max_length=200, blank=True)
    events = ArrayField(models.CharField(max_length=40), help_text="Event types sent to it.")
    enabled = models.BooleanField(default=True)
    secret = EncryptedTextField(editable=False)
    disabled_reason = models.TextField(blank=True, editable=False)
    # Since when every attempt failed (empty: the last one succeeded); a day of it disables the endpoint.
    failing_since = models.DateTimeField(null=True, blank=True, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return self.description or self.url


class WebhookMessage(models.Model):
    """One request to an endpoint carrying one or more events (delivery events are batched): its id
    (`webhook-id`, the same on every retry), body, and where its delivery stands."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed (gave up)"

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="messages")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    body = models.TextField()
    event_count = models.PositiveIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone_now)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["next_attempt_at"], name="webhookmessage_due_idx",
                                condition=Q(status="pending"))]

    @property
    def webhook_id(self):
        return f"msg_{self.pk}"

    def __str__(self):
        return f"{self.webhook_id} to endpoint {self.endpoint_id} ({self.status})"


class WebhookEvent(models.Model):
    """The outbox: one event for one endpoint, written in the same transaction as the change it reports
    (campaigns.webhooks.events); packed into a WebhookMessage when sent."""

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="+", db_index=False)
    type = models.CharField(max_length=40)
    data = models.JSONField()
    created_at = models.DateTimeField(default=timezone_now)
    message = models.ForeignKey(WebhookMessage, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="events")

    class Meta:
        indexes = [models.Index(fields=["endpoint", "id"], name="webhookevent_unsent_idx",
                                condition=Q(message__isnull=True))]


class WebhookAttempt(models.Model):
    """One try at delivering a message: the answer's status and its first bytes, or the error."""

    message = models.ForeignKey(WebhookMessage, on_delete=models.CASCADE, related_name="attempt_log")
    at = models.DateTimeField(default=timezone_now)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_head = models.TextField(blank=True)
    error = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-id"]


class DomainGroup(models.Model):
    """Receiving domains that one mailbox provider serves (Gmail: gmail.com, googlemail.com), with the
    limits we keep towards it and the backoff when it throttles us (campaigns.sending.domain_groups).
    Applies to mail sent over SMTP (sending accounts and the environment's server)."""

    name = models.CharField(max_length=100, unique=True)
    domains = ArrayField(models.CharField(max_length=253), default=list,
                         help_text="Receiving domains, comma-separated, e.g. yahoo.com, aol.com. A domain belongs "
                                   "to one group.")
    per_second = models.PositiveIntegerField(default=0, help_text="Messages per second to these domains, per "
                                                                  "sending account (0: no limit).")
    per_minute = models.PositiveIntegerField(default=0, help_text="Per minute, per sending account (0: no limit).")
    per_hour = models.PositiveIntegerField(default=0, help_text="Per hour, per sending account (0: no limit).")
    backoff_seconds = models.PositiveIntegerField(
        default=0, help_text="The first hold after a 421 or 4.7.x deferral, doubled at each further one in a row "
                             "(0: SEND_DOMAIN_BACKOFF_SECONDS).")
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def clean(self):
        super().clean()
        cleaned = sorted({d.strip().lower().rstrip(".") for d in self.domains if d.strip()})
        bad = [d for d in cleaned if "@" in d or " " in d or "." not in d]
        if bad:
            raise ValidationError({"domains": f"Not a domain: {', '.join(bad)}"})
        taken = {d for other in DomainGroup.objects.exclude(pk=self.pk) for d in other.domains}
        clash = sorted(set(cleaned) & taken)
        if clash:
            raise ValidationError({"domains": f"Already in another group: {', '.join(clash)}"})
        self.domains = cleaned


class DomainHold(models.Model):
    """A domain group of a campaign held back after its receiving servers deferred us (421, 4.7.x):
    its rows are not sent before `until`; `deferrals` in a row set the backoff."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="domain_holds")
    group = models.ForeignKey(DomainGroup, on_delete=models.CASCADE, related_name="holds")
    until = models.DateTimeField()
    deferrals = models.PositiveIntegerField(default=1)
    last_reply = models.CharField(max_length=500, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["campaign", "group"], name="domainhold_unique")]

    def __str__(self):
        return f"campaign {self.campaign_id}: {self.group} held until {self.until}"


# --- how tasks name what they work on (Flower, the worker log) ----------------------------------------------

TASK_LABEL_NAME_CHARS = 60


def quoted_name(name) -> str:
    """«NAME» as a task's label shows it: one line (control characters escaped), at most 60 characters."""
    name = escape(" ".join(str(name or "").split()))
    return f"«{name if len(name) <= TASK_LABEL_NAME_CHARS else name[:TASK_LABEL_NAME_CHARS - 1] + '…'}»"


def campaign_label(campaign_id, name=None) -> str:
    """`campaign 2 «Spring sale»`: how a queued task names its campaign in Flower (the task's argsrepr).
    Ids and the campaign's name, never an address. NAME: the campaign's name, looked up when not given."""
    if name is None:
        name = Campaign.objects.filter(pk=campaign_id).values_list("name", flat=True).first() or ""
    return f"campaign {campaign_id} {quoted_name(name)}"
