"""What the API reads and writes. Secrets (sending accounts' passwords and keys, webhook secrets) are
write-only: never in an answer."""

import copy

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import ManyToManyField
from rest_framework import serializers

from campaigns.audience.follow_ups import Segment
from campaigns.audience.validators import validate_email_address
from campaigns.message.markdown import markdown_to_html
from campaigns.models import (
    Campaign,
    CampaignVariant,
    DeliveryLog,
    PreflightRun,
    Recipient,
    RecipientImport,
    SendingAccount,
    SendingPool,
    Suppression,
    WebhookAttempt,
    WebhookEndpoint,
    WebhookMessage,
)
from campaigns.webhooks.events import EVENT_TYPES

COUNTERS = ("total_recipients", "sent_count", "failed_count", "skipped_count", "unknown_count", "delivered_count",
            "opened_count", "machine_opened_count", "clicked_count", "bounced_count", "complained_count",
            "unsubscribed_count")


def model_clean(serializer, attrs):
    """The model's own checks (merge tags, unsubscribe link, addresses) on the row as it would be saved,
    as a 400 with field errors."""
    model = serializer.Meta.model
    if serializer.instance is not None:
        instance = copy.copy(serializer.instance)
        for name, value in attrs.items():
            if not isinstance(model._meta.get_field(name), ManyToManyField):
                setattr(instance, name, value)
    else:
        instance = model(**{name: value for name, value in attrs.items()
                            if not isinstance(model._meta.get_field(name), ManyToManyField)})
    try:
        instance.full_clean(validate_unique=False, validate_constraints=False)
    except DjangoValidationError as error:
        raise serializers.ValidationError(error.message_dict if hasattr(error, "error_dict") else error.messages)


class CampaignSerializer(serializers.ModelSerializer):
    class Meta:
        model = Campaign
        fields = ("id", "name", "subject", "from_email", "reply_to", "body_format", "markdown_body", "html_body",
                  "text_body", "template", "status",
                  "scheduled_at", "started_at", "paused_at", "completed_at", "batch_size", "track_engagement",
                  "public_archive", "pool", "segment", "ab_test_percent", "ab_metric", "ab_wait", "completion_report",
                  "pause_reason", "last_error", *COUNTERS, "created_at", "updated_at")
        read_only_fields = ("status", "scheduled_at", "started_at", "paused_at", "completed_at", "segment",
                            "pause_reason", "last_error", *COUNTERS, "created_at", "updated_at")
        # A Markdown campaign's HTML body is made from its Markdown body (the model's save), as on the form.
        extra_kwargs = {"html_body": {"required": False}}

    def validate(self, attrs):
        body_format = attrs.get("body_format", getattr(self.instance, "body_format", Campaign.BodyFormat.HTML))
        if body_format == Campaign.BodyFormat.MARKDOWN:
            markdown = attrs.get("markdown_body", getattr(self.instance, "markdown_body", ""))
            attrs["html_body"] = markdown_to_html(markdown)
        elif self.instance is None and not attrs.get("html_body"):
            raise serializers.ValidationError({"html_body": ["This field is required."]})
        model_clean(self, attrs)
        return attrs


class RecipientSerializer(serializers.ModelSerializer):
    class Meta:
        model = Recipient
        fields = ("id", "email", "first_name", "last_name", "data")


class RecipientImportSerializer(serializers.ModelSerializer):
    rejected_rows = serializers.SerializerMethodField()

    class Meta:
        model = RecipientImport
        fields = ("id", "campaign", "status", "original_name", "sheet", "rows_done", "rows_estimated", "total_rows",
                  "imported", "duplicates_in_file", "already_present", "invalid", "suppressed", "error",
                  "rejected_rows", "created_at", "started_at", "finished_at")
        read_only_fields = fields

    def get_rejected_rows(self, record) -> str | None:
        """The rejected-rows report (CSV), when the import rejected any."""
        if not record.rejected_file:
            return None
        request = self.context.get("request")
        path = f"/api/v1/imports/{record.pk}/rejected-rows/"
        return request.build_absolute_uri(path) if request else path


class JsonRowsSerializer(serializers.Serializer):
    """Recipients as JSON: {"rows": [{"email": ..., "first_name": ..., "city": ...}, ...]}; every key
    other than email, first_name and last_name is a column (a merge tag), as in a file."""

    rows = serializers.ListField(child=serializers.DictField(), min_length=1, max_length=100_000)
    check_mx = serializers.BooleanField(default=False)


class ImportFileSerializer(serializers.Serializer):
    """A CSV, XLSX or XLS file (multipart/form-data), as uploaded in the admin."""

    file = serializers.FileField()
    sheet = serializers.CharField(required=False, allow_blank=True, max_length=255, default="")
    check_mx = serializers.BooleanField(default=False)


class ScheduleSerializer(serializers.Serializer):
    at = serializers.DateTimeField(help_text="When to start, ISO 8601, e.g. 2026-12-01T09:00:00+01:00; without "
                                             "an offset, in the server's TIME_ZONE.")


class TestSendSerializer(serializers.Serializer):
    addresses = serializers.ListField(child=serializers.CharField(max_length=320), min_length=1, max_length=5)
    recipient = serializers.EmailField(
        required=False, allow_blank=True, default="",
        help_text="The address of one of the campaign's recipients whose data the test uses; empty: the first "
                  "recipient of the audience (segment applied, suppressed addresses left out).")

    def validate_addresses(self, addresses):
        for address in addresses:
            try:
                validate_email_address(address)
            except DjangoValidationError as error:
                raise serializers.ValidationError(f"{address}: {' '.join(error.messages)}")
        return addresses


class FollowUpSerializer(serializers.Serializer):
    group = serializers.ChoiceField(choices=[s.value for s in Segment])
    link = serializers.IntegerField(required=False, allow_null=True, min_value=1,
                                    help_text="The clicked link's id (group link_clickers only).")


class MessageSerializer(serializers.Serializer):
    """What an action did, in one sentence for people."""

    message = serializers.CharField()
    campaign = CampaignSerializer(required=False)


class PreflightSerializer(serializers.ModelSerializer):
    class Meta:
        model = PreflightRun
        fields = ("id", "campaign", "status", "rows_done", "rows_total", "report", "error", "created_at",
                  "started_at", "finished_at")
        read_only_fields = fields


class StatsSerializer(serializers.Serializer):
    """Every figure of the campaign page."""

    status = serializers.CharField()
    total = serializers.IntegerField()
    sent = serializers.IntegerField()
    failed = serializers.IntegerField()
    skipped = serializers.IntegerField()
    unknown = serializers.IntegerField()
    pending = serializers.IntegerField()
    processed = serializers.IntegerField()
    audience = serializers.IntegerField(help_text="Who the campaign mails: its segment, suppressed addresses left out.")
    suppressed_at_start = serializers.IntegerField()
    done = serializers.IntegerField(help_text="Of the audience, those with a result.")
    progress_percent = serializers.IntegerField(help_text="done out of audience.")
    accepted_rate = serializers.FloatField(allow_null=True, help_text="The campaign page's Accepted: sent / (sent + "
                                                                      "failed + unknown).")
    delivery_rate = serializers.FloatField(allow_null=True, help_text="accepted_rate, by its former name.")
    rate_level = serializers.CharField(allow_null=True)
    delivered = serializers.IntegerField()
    opened = serializers.IntegerField()
    machine_opened = serializers.IntegerField()
    clicked = serializers.IntegerField()
    bounced = serializers.IntegerField()
    complained = serializers.IntegerField()
    unsubscribed = serializers.IntegerField()
    engagement_known = serializers.BooleanField()
    rates = serializers.DictField(child=serializers.FloatField(allow_null=True))
    started_at = serializers.CharField(allow_null=True)
    completed_at = serializers.CharField(allow_null=True)
    duration = serializers.CharField(allow_null=True)
    emails_per_second = serializers.FloatField(allow_null=True)
    sending_batches = serializers.IntegerField()
    sending = serializers.IntegerField()
    clicks_per_link = serializers.ListField(child=serializers.DictField())


class DeliveryLogSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeliveryLog
        fields = ("id", "recipient", "email", "status", "batch_number", "variant", "provider", "provider_message_id",
                  "attempts", "last_error", "sent_at", "delivered_at", "opened_at", "machine_opened_at", "clicked_at",
                  "bounced_at", "complained_at", "unsubscribed_at")
        read_only_fields = fields


class SuppressionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Suppression
        fields = ("id", "email", "reason", "source", "campaign", "created_at")
        read_only_fields = ("id", "campaign", "created_at")

    def validate_email(self, value):
        try:
            validate_email_address(value)
        except DjangoValidationError as error:
            raise serializers.ValidationError(" ".join(error.messages))
        return value.strip().lower()


class SendingAccountSerializer(serializers.ModelSerializer):
    secret = serializers.CharField(write_only=True, required=False, allow_blank=True, style={"input_type": "password"},
                                   help_text="The password or API key; write-only, never returned.")
    has_secret = serializers.SerializerMethodField()

    class Meta:
        model = SendingAccount
        fields = ("id", "name", "kind", "host", "port", "security", "username", "secret", "has_secret", "api_host",
                  "from_domains", "per_second", "per_minute", "per_hour", "per_day", "day_window", "weight",
                  "enabled", "disabled_reason", "last_error", "last_error_at", "created_at", "updated_at")
        read_only_fields = ("last_error", "last_error_at", "created_at", "updated_at")

    def get_has_secret(self, account) -> bool:
        return bool(account.secret)

    def validate(self, attrs):
        model_clean(self, attrs)
        return attrs


class SendingPoolSerializer(serializers.ModelSerializer):
    class Meta:
        model = SendingPool
        fields = ("id", "name", "accounts")


class VariantSerializer(serializers.ModelSerializer):
    class Meta:
        model = CampaignVariant
        fields = ("id", "letter", "subject", "from_name", "html_body", "text_body", "updated_at")
        read_only_fields = ("updated_at",)


class WebhookEndpointSerializer(serializers.ModelSerializer):
    events = serializers.ListField(child=serializers.ChoiceField(choices=EVENT_TYPES), min_length=1)

    class Meta:
        model = WebhookEndpoint
        fields = ("id", "url", "description", "events", "enabled", "disabled_reason", "failing_since", "created_at",
                  "updated_at")
        read_only_fields = ("disabled_reason", "failing_since", "created_at", "updated_at")


class NewWebhookEndpointSerializer(WebhookEndpointSerializer):
    """The answer to a create: the only time the signing secret is shown."""

    secret = serializers.CharField(read_only=True, help_text="whsec_…: verify each request's signature with it.")

    class Meta(WebhookEndpointSerializer.Meta):
        fields = (*WebhookEndpointSerializer.Meta.fields, "secret")


class WebhookAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookAttempt
        fields = ("at", "status_code", "response_head", "error", "duration_ms")


class WebhookMessageSerializer(serializers.ModelSerializer):
    webhook_id = serializers.CharField(read_only=True)
    attempt_log = WebhookAttemptSerializer(many=True, read_only=True)

    class Meta:
        model = WebhookMessage
        fields = ("id", "webhook_id", "endpoint", "status", "event_count", "attempts", "next_attempt_at", "created_at",
                  "delivered_at", "attempt_log")
        read_only_fields = fields
