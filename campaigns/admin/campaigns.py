"""The campaign admin: the list, the campaign page and every URL under it, and the campaign's actions.

Each page and action is a CampaignAdmin method: it finds the campaign, checks the permission and calls
the area's module (dashboard, preview, exports, imports) or runs through staff_actions.perform.
Figures come from campaigns.stats.
"""

from functools import partial

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.forms.models import BaseInlineFormSet
from django.http import Http404, HttpResponseNotAllowed, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from campaigns import services, stats
from campaigns.admin import dashboard, exports, follow_ups, imports, preflight, preview, segments
from campaigns.admin.cells import one_line
from campaigns.admin.forms import AB_FIELDS, CampaignForm, ScheduleForm, TestEmailForm, zone_name
from campaigns.admin.staff_actions import ACTIONS, REFUSALS, Outcome, change_url, done, perform, visible_actions
from campaigns.audience import plan
from campaigns.experiments import ab_tests
from campaigns.message import preflight as preflight_checks
from campaigns.message.rendering import STANDARD_TAGS, html_to_text, unknown_tags_note
from campaigns.models import NEVER_STARTED, Campaign, CampaignVariant, EmailTemplate, PreflightRun, RecipientImport
from campaigns.security import permissions

S = Campaign.Status
# Archiving is for finished campaigns; a live one stays in view.
ARCHIVABLE = (S.COMPLETED, S.FAILED, S.CANCELLED)
CONTENT_FIELDS = ("name", "subject", "from_email", "reply_to", "body_format", "html_body", "markdown_body",
                  "text_body", "batch_size", "track_engagement", "pool")
# What the campaign form writes, and of that what decides what is sent or to whom: a change to those
# takes a scheduled campaign back to draft (CampaignAdmin.save_model).
SAVED_FIELDS = frozenset((*CONTENT_FIELDS, *AB_FIELDS, "public_archive"))
APPROVED_FIELDS = frozenset(("subject", "from_email", "reply_to", "body_format", "html_body", "markdown_body",
                             "text_body", "track_engagement", "pool", *AB_FIELDS))
COUNTER_FIELDS = (
    "total_recipients", "sent_count", "failed_count", "skipped_count", "unknown_count", "delivered_count",
    "opened_count", "machine_opened_count", "clicked_count", "bounced_count", "complained_count",
    "soft_bounced_count", "unsubscribed_count",
)


def deliveries_url(campaign_id, **filters):
    query = "&".join([f"campaign__id__exact={campaign_id}", *(f"{k}={v}" for k, v in filters.items())])
    return reverse("admin:campaigns_deliverylog_changelist") + "?" + query


def recipients_url(campaign_id):
    return reverse("admin:campaigns_recipient_changelist") + f"?campaign__id__exact={campaign_id}"


def local_time(value):
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M %Z") if value else "—"


def short_time(value):
    """A list's date: the time alone today, the day and time this year, the date before."""
    local, today = timezone.localtime(value), timezone.localdate()
    if local.date() == today:
        return local.strftime("today %H:%M")
    return local.strftime("%d %b %H:%M" if local.year == today.year else "%Y-%m-%d")


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


def bulk_action(name):
    """A CampaignAdmin method for the change list: the campaign action NAME on every selected campaign."""
    action = ACTIONS[name]

    @admin.action(description=f"{action.label} (selected campaigns)", permissions=[action.permission])
    def on_selected(model_admin, request, queryset):
        return model_admin.on_selection(request, queryset, action)

    return on_selected


class VariantFormSet(BaseInlineFormSet):
    """A campaign form posted without the variants' part (a client that does not know about A/B
    tests) leaves the variants as they are, instead of failing on the missing management form."""

    def _variants_posted(self):
        return not self.is_bound or f"{self.prefix}-TOTAL_FORMS" in self.data

    def is_valid(self):
        return super().is_valid() if self._variants_posted() else True

    def save(self, commit=True):
        if self._variants_posted():
            return super().save(commit)
        self.new_objects, self.changed_objects, self.deleted_objects = [], [], []
        return []


class CampaignVariantInline(admin.StackedInline):
    """An A/B test's variants on the campaign page; editable while the campaign is."""

    model = CampaignVariant
    formset = VariantFormSet
    extra = 0
    max_num = ab_tests.MAX_VARIANTS
    fields = ("letter", "subject", "from_name", "html_body", "text_body")
    verbose_name = "A/B variant"
    verbose_name_plural = "A/B variants (two to four; empty fields use the campaign's)"

    def _editable(self, obj):
        return obj is None or obj.is_editable

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name == "subject":  # as wide as the campaign's own (a new variant's letter: campaign_editor.js)
            kwargs["widget"] = forms.TextInput(attrs={"class": "vLargeTextField"})
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def has_add_permission(self, request, obj=None):
        return self._editable(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request, obj=None):
        return self._editable(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self._editable(obj) and super().has_delete_permission(request, obj)


class CampaignAdmin(admin.ModelAdmin):
    form = CampaignForm
    inlines = [CampaignVariantInline]
    change_form_template = "admin/campaigns/campaign/campaign_change_form.html"
    # Fits beside the filters at 1280 px with the admin's menu open: a long name is cut to one line (in full on
    # hover), the progress counts the recipients, one date says what the campaign last did.
    list_display = ("campaign_name", "status_badge", "progress", "delivery_rate", "last_date")
    list_display_links = ("campaign_name",)
    list_filter = ("status", ArchivedFilter, "template", ("created_at", admin.DateFieldListFilter))
    search_fields = ("name", "subject")
    list_per_page = 50
    actions = ["bulk_send_now", "bulk_pause", "bulk_resume", "bulk_cancel", "bulk_duplicate", "bulk_retry_failed",
               "bulk_resend_unknown", "archive", "unarchive", "delete_selected"]
    readonly_fields = ("status", "scheduled_local", "started_at", "paused_at", "completed_at", "last_error",
                       *COUNTER_FIELDS, "created_by", "created_at", "updated_at")

    class Media:
        css = {"all": ["campaigns/admin/campaign.css"]}

    # --- change list columns ---------------------------------------------------------------------

    @admin.display(description="Name", ordering="name")
    def campaign_name(self, campaign):
        return one_line("campaign-name", campaign.name)

    @admin.display(description="Status", ordering="status")
    def status_badge(self, campaign):
        return format_html('<span class="campaign-badge status-{}">{}</span>', campaign.status,
                           campaign.get_status_display())

    @admin.display(description="Progress")
    def progress(self, campaign):
        figures = stats.CampaignStats.of(campaign)
        if campaign.status in plan.NOT_STARTED:
            return "—"  # not started: its audience is on its page (counting it here would scan every campaign)
        return format_html(
            '<div class="campaign-progress" title="{} of {} processed, {} sent"><progress max="100" value="{}"></progress>'
            '<span>{} / {} sent</span></div>', f"{figures.done:,}", f"{figures.audience:,}", f"{figures.sent:,}",
            figures.progress_percent, f"{figures.sent:,}", f"{figures.audience:,}")

    @admin.display(description=stats.figure_label("accepted_rate"))
    def delivery_rate(self, campaign):
        figures = stats.CampaignStats.of(campaign)
        if figures.delivery_rate is None:
            return "—"
        return format_html('<span class="delivery-rate rate-{}">{}%</span>', figures.rate_level,
                           figures.delivery_rate)

    @admin.display(description="When", ordering="created_at")
    def last_date(self, campaign):
        """What the campaign did last, and when: completed, started, scheduled for, or created."""
        for label, value in (("Completed", campaign.completed_at), ("Started", campaign.started_at),
                             ("Scheduled", campaign.scheduled_at if campaign.status == S.SCHEDULED else None),
                             ("Created", campaign.created_at)):
            if value:
                return format_html('<span class="campaign-date" title="{} {}">{}<br>{}</span>', label,
                                   local_time(value), label, short_time(value))
        return "—"

    @admin.display(description="Scheduled at")
    def scheduled_local(self, campaign):
        return local_time(campaign.scheduled_at)

    # --- permissions -----------------------------------------------------------------------------

    def has_send_permission(self, request, obj=None):
        """Starting mail to recipients (schedule, send now, resume, retry, resend) is its own permission."""
        return permissions.can_send(request.user, obj)

    def has_export_recipients_permission(self, request, obj=None):
        """Recipients' personal data leaves the admin (CSV exports, preview and tests with real data)."""
        return permissions.can_export(request.user, obj) and self.has_view_or_change_permission(request, obj)

    def has_duplicate_permission(self, request, obj=None):
        """A copy is a new campaign made from one the user may see."""
        return self.has_add_permission(request) and self.has_view_or_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        # A campaign that has started sending keeps its delivery logs, the record of who was mailed.
        return super().has_delete_permission(request, obj) and (obj is None or obj.is_deletable)

    # --- form ------------------------------------------------------------------------------------

    def get_fieldsets(self, request, obj=None):
        editable = obj is None or obj.is_editable
        content = (("start_from",) if obj is None else ()) + CONTENT_FIELDS
        # Once sending starts the content is read-only and long: fold it away under the dashboard.
        fieldsets = [("Content", {"fields": content, "classes": () if editable else ("collapse",)}),
                     # Publishing may be decided after sending, so this stays editable.
                     ("Web version", {"fields": ("public_archive",), "description": (
                         "Every email can link to its own web version with {{ web_url }}. The public archive "
                         "(/archive/) lists the sent campaigns marked here, rendered with sample data only.")}),
                     # Who gets it may be decided after sending too (docs/api.md, "The completion report").
                     ("Completion report", {"fields": ("completion_report",)}),
                     ("A/B test", {"fields": AB_FIELDS, "classes": () if editable else ("collapse",), "description": (
                         "With a test share above 0 and two to four variants below, that share of the recipients "
                         "is split evenly at random between the variants; when the wait ends, the variant with "
                         "the best rate goes to the rest.")})]
        # A new campaign may be scheduled as it is saved; an existing one has the Schedule control of its
        # actions panel (actions_panel.html), the only one on its page.
        if obj is None and self.has_send_permission(request, obj):
            fieldsets.append(("Schedule", {"fields": ("schedule_for",),
                                           "description": f"Times are in {zone_name()}."}))
        if obj is not None:
            fieldsets.append(("Status and counters", {
                "classes": ("collapse",),
                "fields": ("status", "scheduled_local", "started_at", "paused_at", "completed_at", "last_error",
                           *COUNTER_FIELDS, "created_by", "created_at", "updated_at")}))
        return fieldsets

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "pool" and field is not None:
            # Pools are managed on their own page; the campaign form only chooses one.
            field.widget.can_add_related = field.widget.can_change_related = False
            field.widget.can_delete_related = field.widget.can_view_related = False
        return field

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and not obj.is_editable:
            return (*CONTENT_FIELDS, *AB_FIELDS, *self.readonly_fields)
        return self.readonly_fields

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        template = EmailTemplate.objects.filter(pk=request.GET.get("start_from") or None).first()
        if template:
            initial.update(start_from=template.pk, name=template.name, subject=template.subject,
                           html_body=template.html_body,
                           text_body=template.text_body or html_to_text(template.html_body))
        return initial

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
            return super().save_model(request, obj, form, change)
        # OBJ was read at the start of the request: writing all of it would undo what workers and other staff
        # did since (counters, a cancel). Only the fields this form changed are written, under the row lock.
        with transaction.atomic():
            current = Campaign.objects.select_for_update().get(pk=obj.pk)
            fields = [name for name in form.changed_data if name in SAVED_FIELDS]
            if not current.is_editable:  # it started sending (or was cancelled) meanwhile: its content is fixed
                fixed = [name for name in fields if name in APPROVED_FIELDS]
                fields = [name for name in fields if name not in APPROVED_FIELDS]
                if fixed:
                    status = current.get_status_display().lower()
                    self.message_user(request, f"Content not saved: the campaign is {status} now, and only a draft "
                                               "or scheduled campaign's content can change.", messages.ERROR)
            if fields:
                obj.save(update_fields=[*fields, "updated_at"])
            if any(name in APPROVED_FIELDS and field_value(obj, name) != field_value(current, name) for name in fields):
                self.after_approved_change(request, obj.pk, "the content")

    def after_approved_change(self, request, campaign_id, what):
        """Separation of duties: a scheduled campaign whose content or audience changed is a draft again."""
        note = services.unschedule_after_change(campaign_id, request.user.pk, what)
        if note:
            self.message_user(request, note, messages.WARNING)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        if change and any(formset.new_objects or formset.changed_objects or formset.deleted_objects
                          for formset in formsets):
            self.after_approved_change(request, form.instance.pk, "the A/B variants")
        self.warn_unknown_tags(request, form.instance)
        when = form.cleaned_data.get("schedule_for")
        if when and not self.has_send_permission(request, form.instance):
            self.message_user(request, "Saved, but not scheduled: you do not have permission to send campaigns.",
                              messages.WARNING)
        elif when:
            try:
                self.message_user(request, services.schedule(form.instance.pk, when, user_id=request.user.pk), messages.SUCCESS)
            except REFUSALS as refusal:
                self.message_user(request, f"Saved, but not scheduled: {refusal}", messages.WARNING)

    def warn_unknown_tags(self, request, campaign):
        """Saved with merge tags no recipient has yet (a draft may be: the import comes later): say so."""
        if not campaign.is_editable:
            return
        unknown = set(campaign.unknown_merge_tags())
        for variant in campaign.variants.all():
            unknown.update(variant.unknown_merge_tags())
        if unknown:
            self.message_user(request, unknown_tags_note(sorted(unknown)), messages.WARNING)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context["starter_templates"] = [
            # Both bodies: a template without its own text gets the one made from its HTML, to edit.
            {**template, "text_body": template["text_body"] or html_to_text(template["html_body"])}
            for template in EmailTemplate.objects.values("id", "name", "subject", "html_body", "text_body")]
        context["merge_tag_choices"] = merge_tag_choices(obj)
        if obj is not None:
            context.update(self.action_context(request, obj))
            context.update(dashboard.dashboard_context(obj))
            context.update(
                running_import=imports.running_import(obj),
                deliveries_url=deliveries_url(obj.pk), recipients_url=recipients_url(obj.pk),
                failed_url=deliveries_url(obj.pk, status__exact="failed"),
                unknown_url=deliveries_url(obj.pk, status__exact="unknown"),
                can_import=self.has_change_permission(request, obj) and obj.is_editable,
                can_export=self.has_export_recipients_permission(request, obj),
                segment_builder=segments.builder_data(obj, self.has_change_permission(request, obj)),
                preflight_run=preflight_checks.latest_run(obj) if obj.is_editable else None,
                ab_test=ab_test_context(obj),
                can_pick_winner=self.has_send_permission(request, obj),
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    def action_context(self, request, campaign):
        can_change = self.has_change_permission(request, campaign)
        return {
            "staff_actions": [a for a in visible_actions(campaign) if a.allowed(self, request, campaign)],
            "can_change": can_change,
            "can_schedule": self.has_send_permission(request, campaign) and campaign.status in (S.DRAFT, S.SCHEDULED),
            "schedule_form": ScheduleForm(initial={"when": timezone.localtime(campaign.scheduled_at)
                                                   if campaign.scheduled_at else None}),
            "test_form": TestEmailForm(),
            "zone_name": zone_name(),
        }

    # --- the campaign page's buttons and forms ---------------------------------------------------

    def campaign_action_view(self, request, campaign_id, name):
        campaign = get_object_or_404(Campaign, pk=campaign_id)
        if request.method != "POST":
            return self.action_page_again(request, campaign, name)
        if name == "schedule":
            return self.schedule(request, campaign)
        if name == "send_test_email":
            return self.send_test_email(request, campaign)
        if name not in ACTIONS:
            raise PermissionDenied("No such action.")
        action = ACTIONS[name]
        return perform(self, request, allowed=action.allowed(self, request, campaign),
                       form=action.confirmation(request),
                       page=partial(self.confirm_page, request, action, [campaign]),
                       call=partial(action.on_campaign, campaign.pk), done_url=change_url(campaign.pk))

    def schedule(self, request, campaign):
        return perform(self, request, allowed=self.has_send_permission(request, campaign),
                       form=partial(ScheduleForm, request.POST), label="Schedule",
                       call=lambda when: done(services.schedule(campaign.pk, when, user_id=request.user.pk)),
                       done_url=change_url(campaign.pk))

    def send_test_email(self, request, campaign):
        def send(addresses, recipient=""):
            try:
                return done(services.send_test_email(
                    campaign.pk, addresses, user_id=request.user.pk, recipient=recipient,
                    with_recipient_data=self.has_export_recipients_permission(request, campaign)))
            except REFUSALS:
                raise  # perform shows them as it shows every refusal
            except Exception as error:  # a provider outage is shown to staff, not a server error page
                return done(f"Test email not sent: {error}", messages.ERROR)

        return perform(self, request, allowed=self.has_change_permission(request, campaign),
                       form=partial(TestEmailForm, request.POST), label="Test email", call=send,
                       done_url=change_url(campaign.pk))

    def action_page_again(self, request, campaign, name):
        """GET on an action's URL: a confirmation page reloaded, or its address opened again. An action that
        asks first shows its question again while it is still possible; anything else goes back to the
        campaign page, saying that nothing was done and why."""
        action = ACTIONS.get(name)
        if action is not None and action.confirm and action.shown_when(campaign):
            if not action.allowed(self, request, campaign):
                raise PermissionDenied
            return self.confirm_page(request, action, [campaign], form=None)
        label = action.label if action else {"schedule": "Schedule", "send_test_email": "Send test email"}.get(name)
        if label is None:
            raise Http404("No such action.")
        if action is not None and not action.shown_when(campaign):
            why = f"the campaign is {campaign.get_status_display().lower()} now, so “{label}” no longer applies."
        else:
            why = f"“{label}” is done with its button on this page."
        self.message_user(request, f"Nothing was done: {why}", messages.WARNING)
        return redirect(change_url(campaign.pk))

    def confirm_page(self, request, action, campaigns, form, bulk=False):
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "title": f"{action.label}?",
                   "action": action, "campaigns": campaigns, "bulk": bulk}
        if bulk:
            context.update(selected=request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
                           action_checkbox_name=helpers.ACTION_CHECKBOX_NAME)
        else:
            [campaign] = campaigns
            context.update(campaign=campaign, action_url=request.path, cancel_url=change_url(campaign.pk))
            if action.name == "send_now":  # the audience, the A/B plan, the pool and the preflight, before it starts
                context["preflight_run"] = preflight_checks.latest_run(campaign)
                winner_at = timezone.localtime(timezone.now() + campaign.ab_wait)
                context["plan"] = plan.plan_lines(campaign, winner_at=f"at {winner_at:%H:%M} {zone_name()}",
                                                  test_when="now")
        if action.name == "send_now":
            context["audiences"] = {c.pk: plan.audience(c).size for c in campaigns if c.status in plan.NOT_STARTED}
        return TemplateResponse(request, "admin/campaigns/campaign/confirm_action.html", context)

    # --- bulk actions of the change list ---------------------------------------------------------

    def on_selection(self, request, queryset, action):
        return perform(self, request, allowed=action.allowed(self, request), form=action.confirmation(request),
                       page=partial(self.confirm_page, request, action, list(queryset), bulk=True),
                       call=partial(action.on_each, queryset.values_list("pk", flat=True)),
                       done_url=request.get_full_path())

    bulk_send_now = bulk_action("send_now")
    bulk_pause = bulk_action("pause")
    bulk_resume = bulk_action("resume")
    bulk_cancel = bulk_action("cancel")
    bulk_duplicate = bulk_action("duplicate")
    bulk_retry_failed = bulk_action("retry_failed")
    bulk_resend_unknown = bulk_action("resend_unknown")

    # --- deleting and archiving ------------------------------------------------------------------

    @admin.action(description="Delete selected campaigns (drafts and cancelled before sending only)",
                  permissions=["delete"])
    def delete_selected(self, request, queryset):
        started = list(queryset.exclude(NEVER_STARTED))
        if started:
            self.message_user(request, f"Nothing deleted: {len(started)} of the selected campaigns cannot be deleted. "
                                       + not_deletable_advice(started), messages.ERROR)
            return None
        return django_delete_selected(self, request, queryset)  # its confirmation page, then delete_queryset

    def delete_view(self, request, object_id, extra_context=None):
        """A campaign that started sending is not deleted: an admin page says why and what to do instead (not
        a bare 403). Anything else is Django's delete page."""
        campaign = Campaign.objects.filter(pk=object_id).first() if str(object_id).isdigit() else None
        if (campaign is not None and not campaign.is_deletable
                and super().has_delete_permission(request, campaign)):
            context = {**self.admin_site.each_context(request), "opts": self.model._meta, "campaign": campaign,
                       "title": "This campaign cannot be deleted", "advice": not_deletable_advice([campaign])}
            return TemplateResponse(request, "admin/campaigns/campaign/not_deletable.html", context, status=403)
        return super().delete_view(request, object_id, extra_context)

    def delete_queryset(self, request, queryset):
        # Re-checked in the DELETE itself: a campaign may have started since the confirmation page.
        queryset.filter(NEVER_STARTED).delete()

    def delete_model(self, request, obj):
        Campaign.objects.filter(NEVER_STARTED, pk=obj.pk).delete()

    @admin.action(description="Archive selected campaigns (finished ones)", permissions=["change"])
    def archive(self, request, queryset):
        return perform(self, request, allowed=self.has_change_permission(request),
                       call=partial(archive_finished, queryset), done_url=request.get_full_path())

    @admin.action(description="Unarchive selected campaigns", permissions=["change"])
    def unarchive(self, request, queryset):
        return perform(self, request, allowed=self.has_change_permission(request),
                       call=partial(unarchive_all, queryset), done_url=request.get_full_path())

    # --- pages under the campaign ----------------------------------------------------------------

    def viewable_campaign(self, request, campaign_id):
        campaign = get_object_or_404(Campaign, pk=campaign_id)
        if not self.has_view_or_change_permission(request, campaign):
            raise PermissionDenied
        return campaign

    def dashboard_json_view(self, request, campaign_id):
        return dashboard.dashboard_json(self.viewable_campaign(request, campaign_id))

    def segment_json_view(self, request, campaign_id):
        campaign = self.viewable_campaign(request, campaign_id)
        return segments.segment_json(request, campaign, can_edit=self.has_change_permission(request, campaign))

    def preflight_view(self, request, campaign_id, run_id=None):
        """GET: the latest (or a given) run, its progress or findings. POST: start a new run."""
        campaign = self.viewable_campaign(request, campaign_id)
        can_start = self.has_change_permission(request, campaign) and campaign.is_editable
        if request.method == "POST":
            if not can_start:
                raise PermissionDenied("Only a draft or scheduled campaign you may change can be preflighted.")
            run = preflight_checks.start_preflight(campaign, request.user)
            return redirect("admin:campaigns_campaign_preflight_run", campaign.pk, run.pk)
        return preflight.preflight_page(request, self.admin_site.each_context(request), campaign,
                                        can_start=can_start, run_id=run_id,
                                        show_examples=request.user.has_perm("campaigns.view_recipient"))

    def preflight_status_json(self, request, run_id):
        run = get_object_or_404(PreflightRun, pk=run_id)
        self.viewable_campaign(request, run.campaign_id)
        return preflight.preflight_status_json(run)

    def preview_view(self, request, campaign_id):
        campaign = self.viewable_campaign(request, campaign_id)
        return preview.preview_page(request, campaign,
                                    real_data=self.has_export_recipients_permission(request, campaign),
                                    admin_context=self.admin_site.each_context(request))

    def preview_frame_view(self, request, campaign_id):
        campaign = self.viewable_campaign(request, campaign_id)
        return preview.preview_frame(request, campaign,
                                     real_data=self.has_export_recipients_permission(request, campaign))

    def live_preview_frame_view(self, request):
        """Anyone who may write a campaign's HTML body may see it rendered while writing it."""
        if not (self.has_add_permission(request) or self.has_change_permission(request)):
            raise PermissionDenied
        return preview.live_preview_frame(request)

    def follow_up_view(self, request, campaign_id):
        """GET: each group's size; POST: a draft campaign to one group (campaigns.audience.follow_ups)."""
        campaign = self.viewable_campaign(request, campaign_id)
        can_create = self.has_duplicate_permission(request, campaign)
        page = partial(follow_ups.follow_up_page, request, campaign, can_create=can_create,
                       admin_context=self.admin_site.each_context(request))
        if request.method != "POST":
            return page()
        return perform(self, request, allowed=can_create, form=partial(follow_ups.FollowUpForm, request.POST),
                       page=lambda form: page(form=form), call=partial(follow_ups.create, request.user, campaign),
                       done_url=request.path)

    def ab_winner_view(self, request, campaign_id, variant_id):
        """POST: staff pick the A/B winner sooner; it goes to the rest now (campaigns.experiments.ab_tests)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        campaign = get_object_or_404(Campaign, pk=campaign_id)
        return perform(self, request, allowed=self.has_send_permission(request, campaign),
                       call=lambda: done(services.pick_ab_winner(campaign.pk, variant_id)),
                       done_url=change_url(campaign.pk))

    def export_delivery_logs_view(self, request, campaign_id):
        campaign = get_object_or_404(Campaign, pk=campaign_id)
        if not self.has_export_recipients_permission(request, campaign):
            raise PermissionDenied
        return exports.delivery_logs_csv(campaign)

    def import_recipients_view(self, request, campaign_id):
        campaign = get_object_or_404(Campaign, pk=campaign_id)
        admin_context = self.admin_site.each_context(request)
        return perform(self, request, allowed=self.has_change_permission(request, campaign),
                       form=partial(imports.upload_form, request, campaign),
                       page=partial(imports.upload_page, request, admin_context, campaign),
                       call=partial(imports.start_import, request.user, campaign),
                       done_url=change_url(campaign.pk))

    def viewable_import(self, request, import_id) -> RecipientImport:
        record = get_object_or_404(RecipientImport.objects.select_related("campaign"), pk=import_id)
        if not self.has_view_or_change_permission(request, record.campaign):
            raise PermissionDenied
        return record

    def import_status_view(self, request, import_id):
        record = self.viewable_import(request, import_id)
        return imports.status_page(request, self.admin_site.each_context(request), record,
                                   self.has_export_recipients_permission(request, record.campaign))

    def import_status_json(self, request, import_id):
        record = self.viewable_import(request, import_id)
        return JsonResponse(imports.import_status(
            record, self.has_export_recipients_permission(request, record.campaign)))

    def import_rejected_csv(self, request, import_id):
        record = self.viewable_import(request, import_id)
        # Duplicates and rows already present are real addresses with all their columns: an export.
        if not self.has_export_recipients_permission(request, record.campaign):
            raise PermissionDenied
        return imports.rejected_rows_csv(record)

    # --- extra URLs ------------------------------------------------------------------------------

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<int:campaign_id>/action/<slug:name>/", view(self.campaign_action_view),
                 name="campaigns_campaign_action"),
            path("<int:campaign_id>/dashboard.json", view(self.dashboard_json_view),
                 name="campaigns_campaign_dashboard_json"),
            path("<int:campaign_id>/segment.json", view(self.segment_json_view),
                 name="campaigns_campaign_segment_json"),
            path("<int:campaign_id>/preflight/", view(self.preflight_view), name="campaigns_campaign_preflight"),
            path("<int:campaign_id>/preflight/<int:run_id>/", view(self.preflight_view),
                 name="campaigns_campaign_preflight_run"),
            path("preflight/<int:run_id>/status.json", view(self.preflight_status_json),
                 name="campaigns_campaign_preflight_status_json"),
            path("<int:campaign_id>/preview/", view(self.preview_view), name="campaigns_campaign_preview"),
            path("<int:campaign_id>/preview/frame/", view(self.preview_frame_view),
                 name="campaigns_campaign_preview_frame"),
            path("preview/frame/", view(self.live_preview_frame_view), name="campaigns_campaign_live_preview_frame"),
            path("<int:campaign_id>/follow-up/", view(self.follow_up_view), name="campaigns_campaign_follow_up"),
            path("<int:campaign_id>/ab-winner/<int:variant_id>/", view(self.ab_winner_view),
                 name="campaigns_campaign_ab_winner"),
            path("<int:campaign_id>/delivery-logs.csv", view(self.export_delivery_logs_view),
                 name="campaigns_campaign_export"),
            path("<int:campaign_id>/import/", view(self.import_recipients_view), name="campaigns_campaign_import"),
            path("imports/<int:import_id>/", view(self.import_status_view), name="campaigns_campaign_import_status"),
            path("imports/<int:import_id>/status.json", view(self.import_status_json),
                 name="campaigns_campaign_import_status_json"),
            path("imports/<int:import_id>/rejected.csv", view(self.import_rejected_csv),
                 name="campaigns_campaign_import_rejected"),
            *super().get_urls(),
        ]


def merge_tag_choices(campaign):
    """The campaign form's merge-tag picker: its recipients' columns, then the built-in tags."""
    columns = [tag for tag in (campaign.available_merge_tags() if campaign else []) if tag not in STANDARD_TAGS]
    return {"columns": columns, "builtin": list(STANDARD_TAGS)}


def field_value(campaign, name):
    return campaign.pool_id if name == "pool" else getattr(campaign, name)


def ab_test_context(campaign):
    """The campaign page's A/B test panel: each variant's figures and the winner, once it started."""
    if not ab_tests.is_ab_test(campaign) or campaign.started_at is None:
        return None
    return {"figures": ab_tests.variant_figures(campaign.pk), "winner": campaign.ab_winner,
            "metric": campaign.get_ab_metric_display(), "ends_at": local_time(campaign.ab_test_ends_at),
            "waiting_for_test_sends": ab_tests.waiting_for_test_sends(campaign),
            "can_pick": campaign.ab_winner_id is None and campaign.status in (S.IN_PROGRESS, S.PAUSED)}


def names_of(campaigns):
    return ", ".join(f"“{c.name}”" for c in campaigns)


def not_deletable_advice(campaigns):
    """Why CAMPAIGNS are not deleted, and for each what staff can do instead that works."""
    scheduled = [c for c in campaigns if c.status == S.SCHEDULED]
    live = [c for c in campaigns if c.status in (S.IN_PROGRESS, S.PAUSED)]
    finished = [c for c in campaigns if c.status in ARCHIVABLE]
    parts = []
    if scheduled:
        parts.append(f"{names_of(scheduled)}: scheduled, so first unschedule it on the campaign page (it goes back "
                     "to draft), then delete it.")
    if live:
        parts.append(f"{names_of(live)}: sending has started and its delivery logs are the record of who was "
                     "mailed, so it is kept. To stop it, cancel it on the campaign page (Pause only holds the "
                     "rest); once cancelled, archive it to hide it from the list.")
    if finished:
        parts.append(f"{names_of(finished)}: it sent mail and its delivery logs are the record of who was mailed, "
                     "so it is kept. To hide it from the list, archive it (“Archive selected campaigns” on the "
                     "campaign list).")
    return " ".join(parts)


def not_archivable_advice(campaigns):
    """Why CAMPAIGNS (not finished) were not archived, and for each what works instead."""
    never_started = [c for c in campaigns if c.is_deletable]
    scheduled = [c for c in campaigns if c.status == S.SCHEDULED]
    live = [c for c in campaigns if c.status in (S.IN_PROGRESS, S.PAUSED)]
    parts = ["Only completed, failed and cancelled campaigns are archived."]
    if never_started:
        parts.append(f"Not archived: {names_of(never_started)}, never sent: delete it instead "
                     "(“Delete selected campaigns”).")
    if scheduled:
        parts.append(f"Not archived: {names_of(scheduled)}, scheduled: unschedule it, then delete it.")
    if live:
        parts.append(f"Not archived: {names_of(live)}, still sending: cancel it on the campaign page, then archive it.")
    return " ".join(parts)


def archive_finished(queryset):
    refused = list(queryset.exclude(status__in=ARCHIVABLE))
    count = queryset.filter(status__in=ARCHIVABLE, archived=False).update(archived=True)
    notes = [(messages.SUCCESS, f"Archived {count} campaign{'s' * (count != 1)}. The Archived filter shows them.")]
    if refused:
        notes.append((messages.WARNING, not_archivable_advice(refused)))
    return Outcome(tuple(notes))


def unarchive_all(queryset):
    count = queryset.filter(archived=True).update(archived=False)
    return done(f"Unarchived {count} campaign{'s' * (count != 1)}.")
