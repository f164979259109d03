"""Recipients and delivery logs: the ledgers of who is in a campaign and what happened to each.

Lists that stay fast with millions of rows (campaigns.admin.pagination); rows are written by imports and
sending, never edited here.
"""

from functools import partial

from django.contrib import admin, messages
from django.utils import timezone
from django.utils.html import format_html

from campaigns import services
from campaigns.admin.cells import one_line
from campaigns.admin.pagination import CappedCountPaginator, address_search
from campaigns.admin.staff_actions import done, perform
from campaigns.audience.suppression import suppress_many
from campaigns.models import Campaign, SendingAccount, Suppression


class ProviderFilter(admin.SimpleListFilter):
    """The environment's providers and the sending accounts, without a DISTINCT over millions of rows."""

    title = "provider"
    parameter_name = "provider__exact"

    def lookups(self, request, model_admin):
        return [("sendgrid", "SendGrid (environment)"), ("smtp", "SMTP (environment)")] + [
            (name, name) for name in SendingAccount.objects.values_list("name", flat=True)]

    def queryset(self, request, queryset):
        return queryset.filter(provider=self.value()) if self.value() else queryset


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
        return perform(self, request, allowed=self.has_manage_suppressions_permission(request),
                       call=partial(suppress_recipients, queryset, request.user),
                       done_url=request.get_full_path())

    def delete_queryset(self, request, queryset):
        campaign_ids = set(queryset.values_list("campaign_id", flat=True))
        super().delete_queryset(request, queryset)
        self.after_removal(request, campaign_ids)

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        self.after_removal(request, [obj.campaign_id])

    def after_removal(self, request, campaign_ids):
        Campaign.recount_recipients(campaign_ids)
        for campaign_id in sorted(campaign_ids):  # who gets a scheduled campaign changed: a sender approves again
            note = services.unschedule_after_change(campaign_id, request.user.pk, "the recipients")
            if note:
                self.message_user(request, f"Campaign #{campaign_id}: {note}", messages.WARNING)


class DeliveryLogAdmin(LedgerAdmin):
    # Fits beside the filters at 1280 px with the admin's menu open: long addresses, campaign names and errors
    # are cut to one line (in full on hover); the campaign column goes when the list shows one campaign.
    list_display = ("address", "campaign_name", "status", "sent_by", "attempts", "sent_time", "short_error")
    list_filter = ("status", ProviderFilter)
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

    class Media:
        css = {"all": ["campaigns/admin/campaign.css"]}

    @admin.display(description="Email", ordering="email")
    def address(self, log):
        return one_line("log-email", log.email)

    @admin.display(description="Campaign", ordering="campaign")
    def campaign_name(self, log):
        return one_line("log-campaign", log.campaign)

    @admin.display(description="Provider", ordering="provider")
    def sent_by(self, log):
        return one_line("log-provider", log.provider)

    @admin.display(description="Sent at", ordering="sent_at")
    def sent_time(self, log):
        if log.sent_at is None:
            return "—"
        local = timezone.localtime(log.sent_at)
        return format_html('<span class="log-time" title="{}">{}<br>{}</span>', local.strftime("%Y-%m-%d %H:%M:%S %Z"),
                           local.strftime("%Y-%m-%d"), local.strftime("%H:%M"))

    @admin.display(description="Error")
    def short_error(self, log):
        if not log.last_error:
            return ""
        return one_line("log-error", log.last_error)

    def get_list_display(self, request):
        if filtered_campaign_id(request):  # the page says which campaign above the list
            return tuple(name for name in self.list_display if name != "campaign_name")
        return self.list_display

    def get_search_results(self, request, queryset, search_term):
        return address_search(queryset, search_term), False

    def changelist_view(self, request, extra_context=None):
        campaign_id = filtered_campaign_id(request)
        campaign = Campaign.objects.filter(pk=campaign_id).first() if campaign_id else None
        extra_context = {**(extra_context or {}), "filtered_campaign": campaign}
        return super().changelist_view(request, extra_context)


def filtered_campaign_id(request):
    """The campaign the list is filtered to, or None."""
    campaign_id = request.GET.get("campaign__id__exact", "")
    return int(campaign_id) if campaign_id.isdigit() else None


def suppress_recipients(queryset, user):
    source = f"admin, by user {user.pk}"
    added = suppress_many((email, Suppression.Reason.MANUAL, source, campaign_id)
                          for email, campaign_id in queryset.values_list("email", "campaign_id"))
    return done(f"Suppressed {added} new address{'es' * (added != 1)}.")
