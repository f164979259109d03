"""Admin registration: the staff product. Views live in campaigns/admin_*.py; figures in campaigns.stats."""

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from campaigns import stats
from campaigns.admin import dashboard as admin_dashboard
from campaigns.admin import exports as admin_exports
from campaigns.admin.imports import RecipientImportAdminMixin
from campaigns.admin.pagination import CappedCountPaginator, address_search
from campaigns.admin.staff_actions import REFUSALS, CampaignActionsMixin, bulk_actions
from campaigns.forms import CampaignForm, zone_name
from campaigns.models import (NEVER_STARTED, Campaign, DeliveryLog, EmailTemplate, Recipient, RecipientImport,
                              Suppression)
from campaigns.sending import control
from campaigns.suppression import suppress_many

CONTENT_FIELDS = ("name", "subject", "from_email", "reply_to", "html_body", "text_body", "batch_size",
                  "track_engagement")
COUNTER_FIELDS = (
    "total_recipients", "sent_count", "failed_count", "skipped_count", "unknown_count", "delivered_count",
    "opened_count", "clicked_count", "bounced_count", "complained_count", "unsubscribed_count",
)


def deliveries_url(campaign_id, **filters):
    query = "&".join([f"campaign__id__exact={campaign_id}", *(f"{k}={v}" for k, v in filters.items())])
    return reverse("admin:campaigns_deliverylog_changelist") + "?" + query


def recipients_url(campaign_id):
    return reverse("admin:campaigns_recipient_changelist") + f"?campaign__id__exact={campaign_id}"


def local_time(value):
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M %Z") if value else "—"


@admin.register(EmailTemplate)
class EmailTemplateAdmin(admin.ModelAdmin):
    list_display = ("name", "key", "subject", "is_starter", "updated_at")
    search_fields = ("name", "key", "subject")
    prepopulated_fields = {"key": ("name",)}


class ArchivedFilter(admin.SimpleListFilter):
    """Archived campaigns are out of the way: the default list hides them."""

    title = "archived"
    parameter_name = "archived"

    def lookups(self, request, model_admin):
        return [("yes", "Archived"), ("all", "All")]

    def choices(self, changelist):
        yield {"selected": self.value() is None, "display": "Not archived",
               "query_string": changelist.get_query_string(remove=[self.parameter_name])}
        for value, label in self.lookup_choices:
            yield {"selected": self.value() == value, "display": label,
                   "query_string": changelist.get_query_string({self.parameter_name: value})}

    def queryset(self, request, queryset):
        if self.value() == "all":
            return queryset
        return queryset.filter(archived=self.value() == "yes")


# Archiving is for finished campaigns; a live one stays in view.
ARCHIVABLE = (Campaign.Status.COMPLETED, Campaign.Status.FAILED, Campaign.Status.CANCELLED)


@admin.register(Campaign)
class CampaignAdmin(CampaignActionsMixin, RecipientImportAdminMixin, admin.ModelAdmin):
    form = CampaignForm
    change_form_template = "admin/campaigns/campaign/campaign_change_form.html"
    list_display = ("name", "status_badge", "progress", "delivery_rate", "scheduled", "total_recipients",
                    "created_at")
    list_display_links = ("name",)
    list_filter = ("status", ArchivedFilter, "template", ("created_at", admin.DateFieldListFilter))
    search_fields = ("name", "subject")
    list_per_page = 50
    actions = [*bulk_actions, "archive", "unarchive", "delete_selected"]
    readonly_fields = ("status", "scheduled_local", "started_at", "paused_at", "completed_at", "last_error",
                       *COUNTER_FIELDS, "created_by", "created_at", "updated_at")

    class Media:
        css = {"all": ["campaigns/admin/campaign.css"]}

    # --- change list columns ---------------------------------------------------------------------

    @admin.display(description="Status", ordering="status")
    def status_badge(self, campaign):
        return format_html('<span class="campaign-badge status-{}">{}</span>', campaign.status,
                           campaign.get_status_display())

    @admin.display(description="Progress")
    def progress(self, campaign):
        figures = stats.CampaignStats.of(campaign)
        return format_html(
            '<div class="campaign-progress" title="{} of {} processed"><progress max="100" value="{}"></progress>'
            '<span>{} / {} sent</span></div>', figures.processed, figures.total, figures.progress_percent,
            figures.sent, figures.total)

    @admin.display(description="Delivery rate")
    def delivery_rate(self, campaign):
        figures = stats.CampaignStats.of(campaign)
        if figures.delivery_rate is None:
            return "—"
        return format_html('<span class="delivery-rate rate-{}">{}%</span>', figures.rate_level,
                           figures.delivery_rate)

    @admin.display(description="Scheduled", ordering="scheduled_at")
    def scheduled(self, campaign):
        return local_time(campaign.scheduled_at) if campaign.scheduled_at else "—"

    @admin.display(description="Scheduled at")
    def scheduled_local(self, campaign):
        return local_time(campaign.scheduled_at)

    # --- form ------------------------------------------------------------------------------------

    def get_fieldsets(self, request, obj=None):
        editable = obj is None or obj.is_editable
        content = (("start_from",) if obj is None else ()) + CONTENT_FIELDS
        # Once sending starts the content is read-only and long: fold it away under the dashboard.
        fieldsets = [("Content", {"fields": content, "classes": () if editable else ("collapse",)})]
        if editable and self.has_change_permission(request, obj) and self.has_send_permission(request, obj):
            fieldsets.append(("Schedule", {"fields": ("schedule_for",),
                                           "description": f"Times are in {zone_name()}."}))
        if obj is not None:
            fieldsets.append(("Status and counters", {
                "classes": ("collapse",),
                "fields": ("status", "scheduled_local", "started_at", "paused_at", "completed_at", "last_error",
                           *COUNTER_FIELDS, "created_by", "created_at", "updated_at")}))
        return fieldsets

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and not obj.is_editable:
            return (*CONTENT_FIELDS, *self.readonly_fields)
        return self.readonly_fields

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        template = EmailTemplate.objects.filter(pk=request.GET.get("start_from") or None).first()
        if template:
            initial.update(start_from=template.pk, name=template.name, subject=template.subject,
                           html_body=template.html_body, text_body=template.text_body)
        return initial

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        when = form.cleaned_data.get("schedule_for")
        if when and not self.has_send_permission(request, form.instance):
            self.message_user(request, "Saved, but not scheduled: you do not have permission to send campaigns.",
                              messages.WARNING)
        elif when:
            try:
                self.message_user(request, control.schedule(form.instance.pk, when), messages.SUCCESS)
            except REFUSALS as refusal:
                self.message_user(request, f"Saved, but not scheduled: {refusal}", messages.WARNING)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context["starter_templates"] = list(EmailTemplate.objects.values("id", "name", "subject", "html_body",
                                                                         "text_body"))
        if obj is not None:
            context.update(self.action_context(request, obj))
            context.update(admin_dashboard.dashboard_context(obj))
            context.update(
                deliveries_url=deliveries_url(obj.pk), recipients_url=recipients_url(obj.pk),
                failed_url=deliveries_url(obj.pk, status__exact="failed"),
                unknown_url=deliveries_url(obj.pk, status__exact="unknown"),
                can_import=self.has_change_permission(request, obj) and obj.is_editable,
                can_export=self.has_export_recipients_permission(request, obj),
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    # --- deleting and archiving ------------------------------------------------------------------

    def has_delete_permission(self, request, obj=None):
        # A campaign that has started sending keeps its delivery logs, the record of who was mailed.
        return super().has_delete_permission(request, obj) and (obj is None or obj.is_deletable)

    @admin.action(description="Delete selected campaigns (drafts and cancelled before sending only)",
                  permissions=["delete"])
    def delete_selected(self, request, queryset):
        started = queryset.exclude(NEVER_STARTED).count()
        if started:
            self.message_user(request, f"Nothing deleted: {started} of the selected campaigns started sending and "
                                       "cannot be deleted; archive them instead.", messages.ERROR)
            return None
        return django_delete_selected(self, request, queryset)  # its confirmation page, then delete_queryset

    def delete_queryset(self, request, queryset):
        # Re-checked in the DELETE itself: a campaign may have started since the confirmation page.
        queryset.filter(NEVER_STARTED).delete()

    def delete_model(self, request, obj):
        Campaign.objects.filter(NEVER_STARTED, pk=obj.pk).delete()

    @admin.action(description="Archive selected campaigns (finished ones)", permissions=["change"])
    def archive(self, request, queryset):
        count = queryset.filter(status__in=ARCHIVABLE, archived=False).update(archived=True)
        self.message_user(request, f"Archived {count} campaign{'s' * (count != 1)}; only completed, failed and "
                                   "cancelled campaigns are archived. The Archived filter shows them.",
                          messages.SUCCESS)

    @admin.action(description="Unarchive selected campaigns", permissions=["change"])
    def unarchive(self, request, queryset):
        count = queryset.filter(archived=True).update(archived=False)
        self.message_user(request, f"Unarchived {count} campaign{'s' * (count != 1)}.", messages.SUCCESS)

    # --- extra URLs ------------------------------------------------------------------------------

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<int:campaign_id>/action/<slug:name>/", view(self.campaign_action_view),
                 name="campaigns_campaign_action"),
            path("<int:campaign_id>/dashboard.json",
                 view(lambda request, campaign_id: admin_dashboard.dashboard_json_view(self, request, campaign_id)),
                 name="campaigns_campaign_dashboard_json"),
            path("<int:campaign_id>/preview/",
                 view(lambda request, campaign_id: admin_dashboard.preview_view(self, request, campaign_id)),
                 name="campaigns_campaign_preview"),
            path("<int:campaign_id>/delivery-logs.csv",
                 view(lambda request, campaign_id: admin_exports.export_delivery_logs_view(self, request,
                                                                                           campaign_id)),
                 name="campaigns_campaign_export"),
            *super().get_urls(),
        ]


class LedgerAdmin(admin.ModelAdmin):
    """A record of what happened: view, filter, search and export only. Rows are written by imports and
    sending; one is deleted only together with a campaign that never started sending."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        # Asked for each related row when a campaign (or recipient) is deleted: allowed only for one that
        # never started sending. No delete button or bulk action of its own (obj is None there).
        return obj is not None and obj.campaign.is_deletable and super().has_delete_permission(request, obj)


@admin.register(Recipient)
class RecipientAdmin(LedgerAdmin):
    list_display = ("email", "first_name", "last_name", "campaign")
    list_select_related = ("campaign",)
    search_fields = ("email",)
    search_help_text = "An exact address, or the beginning of one."
    raw_id_fields = ("campaign",)
    show_full_result_count = False
    paginator = CappedCountPaginator
    show_facets = admin.ShowFacets.NEVER
    actions = ["suppress_selected", "delete_selected"]

    def get_search_results(self, request, queryset, search_term):
        return address_search(queryset, search_term), False

    def has_delete_permission(self, request, obj=None):
        # The bulk "Delete selected recipients" (with Django's confirmation page); deleting a recipient who
        # has a delivery log is refused there, because LedgerAdmin refuses to delete the log.
        return admin.ModelAdmin.has_delete_permission(self, request, obj)

    def has_manage_suppressions_permission(self, request, obj=None):
        return request.user.has_perm("campaigns.manage_suppressions")

    @admin.action(description="Suppress the selected addresses (never mail them again)",
                  permissions=["manage_suppressions"])
    def suppress_selected(self, request, queryset):
        source = f"admin, by user {request.user.pk}"
        added = suppress_many((email, Suppression.Reason.MANUAL, source, campaign_id)
                              for email, campaign_id in queryset.values_list("email", "campaign_id"))
        self.message_user(request, f"Suppressed {added} new address{'es' * (added != 1)}.", messages.SUCCESS)

    def delete_queryset(self, request, queryset):
        campaign_ids = set(queryset.values_list("campaign_id", flat=True))
        super().delete_queryset(request, queryset)
        Campaign.recount_recipients(campaign_ids)

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        Campaign.recount_recipients([obj.campaign_id])


@admin.register(DeliveryLog)
class DeliveryLogAdmin(LedgerAdmin):
    list_display = ("email", "campaign", "status", "provider", "attempts", "sent_at", "short_error")
    list_filter = ("status", "provider")
    list_select_related = ("campaign",)
    search_fields = ("email",)
    search_help_text = "An exact address, or the beginning of one."
    raw_id_fields = ("campaign", "recipient")
    show_full_result_count = False
    paginator = CappedCountPaginator
    show_facets = admin.ShowFacets.NEVER
    ordering = ("-id",)
    # Rendering rows, not querying, is where a page of logs spends its time: 50 rows, and no action
    # checkboxes (deleting logs would break "one log per recipient" anyway).
    list_per_page = 50
    actions = None

    @admin.display(description="Error")
    def short_error(self, log):
        return (log.last_error[:80] + "…") if len(log.last_error) > 80 else log.last_error

    def get_search_results(self, request, queryset, search_term):
        return address_search(queryset, search_term), False

    def changelist_view(self, request, extra_context=None):
        campaign_id = request.GET.get("campaign__id__exact")
        campaign = Campaign.objects.filter(pk=campaign_id).first() if campaign_id and campaign_id.isdigit() else None
        extra_context = {**(extra_context or {}), "filtered_campaign": campaign}
        return super().changelist_view(request, extra_context)


@admin.register(RecipientImport)
class RecipientImportAdmin(LedgerAdmin):
    list_display = ("original_name", "campaign", "status", "imported", "invalid", "created_at")
    list_filter = ("status",)
    search_fields = ("original_name",)
    raw_id_fields = ("campaign",)


from campaigns.admin import suppression  # noqa: E402,F401  (SuppressionAdmin lives there)
