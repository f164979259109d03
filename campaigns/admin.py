"""Admin registration. The full staff experience (actions, dashboard, import) builds on these."""

from django.contrib import admin

from campaigns.admin_import import RecipientImportAdminMixin
from campaigns.models import Campaign, DeliveryLog, EmailTemplate, Recipient, RecipientImport


@admin.register(EmailTemplate)
class EmailTemplateAdmin(admin.ModelAdmin):
    list_display = ("name", "key", "subject", "is_starter", "updated_at")
    search_fields = ("name", "key", "subject")
    prepopulated_fields = {"key": ("name",)}


@admin.register(Campaign)
class CampaignAdmin(RecipientImportAdminMixin, admin.ModelAdmin):
    list_display = ("name", "status", "scheduled_at", "total_recipients", "sent_count", "failed_count")
    list_filter = ("status",)
    search_fields = ("name", "subject")
    readonly_fields = (
        "status", "started_at", "paused_at", "completed_at", "last_error", "total_recipients", "sent_count",
        "failed_count", "skipped_count", "unknown_count", "delivered_count", "opened_count", "clicked_count",
        "bounced_count", "complained_count", "unsubscribed_count", "created_by", "created_at", "updated_at",
    )


@admin.register(Recipient)
class RecipientAdmin(admin.ModelAdmin):
    list_display = ("email", "first_name", "last_name", "campaign")
    search_fields = ("email",)
    raw_id_fields = ("campaign",)
    show_full_result_count = False


@admin.register(DeliveryLog)
class DeliveryLogAdmin(admin.ModelAdmin):
    list_display = ("email", "campaign", "status", "provider", "attempts", "sent_at")
    list_filter = ("status", "provider")
    search_fields = ("email",)
    raw_id_fields = ("campaign", "recipient")
    show_full_result_count = False


@admin.register(RecipientImport)
class RecipientImportAdmin(admin.ModelAdmin):
    list_display = ("original_name", "campaign", "status", "imported", "invalid", "created_at")
    list_filter = ("status",)
    raw_id_fields = ("campaign",)


from campaigns import admin_suppression  # noqa: E402,F401  (SuppressionAdmin lives there)
