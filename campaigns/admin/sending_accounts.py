"""Sending accounts and pools in the admin (docs/sending-accounts.md).

An account's password or API key is typed into a password field that is never filled in: the page
says whether one is stored, and leaving the field empty keeps it. It is encrypted before it is
saved (campaigns.security.encryption) and appears in no page and no log line. "Test connection" checks the
selected accounts without sending anything, on a worker (campaigns.sending.account_check); only staff who
may change accounts may run it, since it logs in with the stored secret. The result is shown on the
account's page ("Last check"; a failed one also under "Last error", with its time, which a check that works
clears).

The form follows the account's kind: SMTP and Amazon SES show the server, its login, DKIM and the bounce
mailbox; SendGrid shows the API key and host (campaigns/static/campaigns/admin/sending_account.js shows and
hides them, from the lists below). The server ignores the fields the chosen kind does not use: they are
neither required nor checked, so a value left in a hidden field never refuses the form. "Disabled reason" is
written by sending (authentication refused), shown read-only, and cleared when staff enable the account again.

DKIM: "Generate key" (a button on the account page, and an action; the change permission) makes and
stores a key and shows the TXT record to publish (campaigns.deliverability.dkim). "Check DNS" (a page of
its own, so that opening an account looks nothing up) runs SPF, DKIM, DMARC and MX for each From
domain, with the record to publish for each failure, and the bulk-sender checklist
(campaigns.deliverability.dns_checks).
"""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.db.models import Count
from django.http import HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from campaigns import stats
from campaigns.admin.staff_actions import Outcome, perform
from campaigns.deliverability import dkim, dns_checks
from campaigns.models import SendingAccount
from campaigns.security import encryption, permissions
from campaigns.security.destinations import DESTINATION_FIELDS
from campaigns.sending import account_check, routing


SMTP_KINDS = (SendingAccount.Kind.SMTP, SendingAccount.Kind.SES_SMTP)
# The fields (and read-only rows) only some kinds use; every other field applies to every kind.
SMTP_ONLY = ("host", "port", "security", "username", "dkim_domain", "dkim_selector", "bounce_domain",
             "bounce_mailbox", "bounce_host", "bounce_port", "bounce_security", "bounce_username",
             "new_bounce_password", "bounce_folder", "bounce_after_read", "bounce_move_to")
SMTP_ONLY_ROWS = ("dkim_panel", "bounce_last_polled_at", "bounce_last_error")
SENDGRID_ONLY = ("api_host",)
# An ignored field keeps the account's value, except these, which would contradict a SendGrid account
# (it reports bounces through its Event Webhook).
CLEARED_WHEN_IGNORED = {"bounce_mailbox": "", "bounce_domain": ""}
SECRET_LABELS = {SendingAccount.Kind.SMTP: "Password", SendingAccount.Kind.SES_SMTP: "SMTP password",
                 SendingAccount.Kind.SENDGRID: "API key"}


def ignored_fields(kind) -> tuple:
    """The form fields an account of KIND does not use."""
    return SENDGRID_ONLY if kind in SMTP_KINDS else SMTP_ONLY


def kind_fields() -> dict:
    """For the page's script: per kind, the rows to hide and the secret's label."""
    return {kind: {"hide": list(ignored_fields(kind)) + ([] if kind in SMTP_KINDS else list(SMTP_ONLY_ROWS)),
                   "secret_label": SECRET_LABELS[kind]} for kind in SendingAccount.Kind.values}


class SendingAccountForm(forms.ModelForm):
    new_secret = forms.CharField(
        label="Password or API key", required=False, strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="SMTP: the password (Gmail, Workspace: an app password). SendGrid: the API key. "
                  "Never shown again; leave empty to keep the stored one.")

    new_bounce_password = forms.CharField(
        label="Bounce mailbox password", required=False, strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Gmail, Workspace: an app password. Never shown again; leave empty to keep the stored one.")

    class Meta:
        model = SendingAccount
        fields = ("name", "kind", "host", "port", "security", "username", "new_secret", "api_host", "from_domains",
                  "per_second", "per_minute", "per_hour", "per_day", "day_window", "weight", "enabled",
                  "dkim_domain", "dkim_selector", "bounce_domain", "bounce_mailbox", "bounce_host", "bounce_port", "bounce_security",
                  "bounce_username", "new_bounce_password", "bounce_folder", "bounce_after_read", "bounce_move_to")
        widgets = {"from_domains": forms.Textarea(attrs={"rows": 3, "cols": 40})}
        labels = {"api_host": "API host"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.secret:
            self.fields["new_secret"].help_text = ("A secret is stored (not shown). Type a new one to replace it; "
                                                   "leave empty to keep it.")
        if self.instance.pk and self.instance.bounce_password:
            self.fields["new_bounce_password"].help_text = ("A password is stored (not shown). Type a new one to "
                                                            "replace it; leave empty to keep it.")

    def clean(self):
        cleaned = super().clean()
        ignored = [name for name in ignored_fields(cleaned.get("kind")) if name in self.fields]
        for name in ignored:  # not used by this kind: neither checked nor changed
            self._errors.pop(name, None)
            if name in CLEARED_WHEN_IGNORED:
                cleaned[name] = CLEARED_WHEN_IGNORED[name]
            elif not name.startswith("new_"):
                cleaned[name] = getattr(self.instance, name)
            else:
                cleaned[name] = ""
        secret = cleaned.get("new_secret")
        if secret and not encryption.is_configured():
            self.add_error("new_secret", "Set FIELD_ENCRYPTION_KEY first: it encrypts this secret in the database "
                                         "(see .env.example).")
        if cleaned.get("new_bounce_password") and not encryption.is_configured():
            self.add_error("new_bounce_password", "Set FIELD_ENCRYPTION_KEY first: it encrypts this password in the "
                                                  "database (see .env.example).")
        if cleaned.get("kind") == SendingAccount.Kind.SENDGRID and (cleaned.get("bounce_mailbox")
                                                                     or cleaned.get("bounce_domain")):
            self.add_error("bounce_mailbox", "SendGrid reports bounces through its Event Webhook: a bounce mailbox "
                                             "and domain are for SMTP and Amazon SES accounts.")
        if (cleaned.get("kind") == SendingAccount.Kind.SENDGRID and not secret
                and not (self.instance.pk and self.instance.secret)):
            self.add_error("new_secret", "A SendGrid account needs its API key.")
        moved = [self.fields[name].label for name in DESTINATION_FIELDS
                 if name in self.changed_data and name not in ignored]
        if moved and not secret and self.instance.pk and self.instance.secret:
            # The stored secret was entered for the old server: never send it to the new one unasked.
            self.add_error("new_secret", f"You changed where this account connects ({', '.join(moved)}): type the "
                                         "password or API key again. A stored secret only goes to the server it "
                                         "was entered for.")
        return cleaned

    def save(self, commit=True):
        account = super().save(commit=False)
        if self.cleaned_data.get("new_secret"):
            account.secret = self.cleaned_data["new_secret"]
        if self.cleaned_data.get("new_bounce_password"):
            account.bounce_password = self.cleaned_data["new_bounce_password"]
        if account.enabled and "enabled" in self.changed_data:
            account.disabled_reason = ""  # switched back on by staff: the old reason no longer applies
        if commit:
            account.save()
            self.save_m2m()
        return account


class SendingAccountAdmin(admin.ModelAdmin):
    form = SendingAccountForm
    list_display = ("name", "kind", "enabled", "limits_summary", "weight", "sent_this_hour", "sent_today",
                    "last_error_short")
    list_filter = ("kind", "enabled")
    search_fields = ("name", "host", "username", "from_domains")
    actions = ("test_connection", "generate_dkim_key")
    change_form_template = "admin/campaigns/sendingaccount/change_form.html"
    readonly_fields = ("disabled_reason", "usage_panel", "last_error", "last_error_at", "last_check",
                       "bounce_last_polled_at",
                       "bounce_last_error", "complaint_panel", "dkim_panel",
                       "bulk_sender_panel")
    fieldsets = (
        (None, {"fields": ("name", "kind", "enabled", "disabled_reason", "weight")}),
        ("Connection", {"fields": ("host", "port", "security", "username", "new_secret", "api_host"),
                        "description": "SMTP and Amazon SES: host, port, security, user name and password. "
                                       "SendGrid: the API key and the API host."}),
        ("From domains", {"fields": ("from_domains",)}),
        ("Bounces", {"fields": ("bounce_domain", "bounce_mailbox", "bounce_host", "bounce_port", "bounce_security",
                                "bounce_username", "new_bounce_password", "bounce_folder", "bounce_after_read",
                                "bounce_move_to", "bounce_last_polled_at", "bounce_last_error"),
                     "description": "SMTP and Amazon SES: where bounces and complaints come back by mail, read every "
                                    "minute (docs/deliverability.md)."}),
        ("DKIM", {"fields": ("dkim_domain", "dkim_selector", "dkim_panel"),
                  "description": "SMTP and Amazon SES: every message is signed once the domain, the selector and "
                                 "a key are set (docs/deliverability.md)."}),
        ("Bulk-sender rules", {"fields": ("bulk_sender_panel",)}),
        ("Limits", {"fields": ("per_second", "per_minute", "per_hour", "per_day", "day_window"),
                    "description": "Shared by every worker. When every account of a pool is at a limit, its "
                                   "campaigns wait and carry on by themselves."}),
        ("Usage", {"fields": ("usage_panel", "complaint_panel", "last_error", "last_error_at", "last_check")}),
    )

    class Media:
        css = {"all": ["campaigns/admin/campaign.css"]}  # the sends chart
        js = ["campaigns/admin/sending_account.js"]  # the fields follow the kind

    def get_fieldsets(self, request, obj=None):
        if obj is not None:
            return self.fieldsets
        # Add: no usage yet, and no disabled reason (only sending writes one).
        first = (None, {"fields": tuple(f for f in self.fieldsets[0][1]["fields"] if f != "disabled_reason")})
        return (first, *self.fieldsets[1:-1])

    @admin.display(description="Limits")
    def limits_summary(self, account):
        limits = account.limits()
        if not limits:
            return "none"
        day = " (calendar)" if account.day_window == SendingAccount.DayWindow.CALENDAR else ""
        return ", ".join(f"{n:,}/{window}" + (day if window == "day" else "") for window, n in limits.items())

    @admin.display(description="Sent this hour")
    def sent_this_hour(self, account):
        return routing.account_usage(account, hours=1)["hour"]

    @admin.display(description="Sent today")
    def sent_today(self, account):
        return routing.account_usage(account, hours=1)["today"]

    @admin.display(description="Last error")
    def last_error_short(self, account):
        return (account.last_error[:80] + "…") if len(account.last_error) > 80 else account.last_error

    @admin.display(description="Sends")
    def usage_panel(self, account):
        usage = routing.account_usage(account, hours=24)
        series = [(hour, 60, count) for hour, count in usage["series"]]
        chart = stats.sends_chart_svg(series if any(count for _, _, count in series) else [], width=480, height=140)
        return format_html("<p>Sent this hour: <strong>{}</strong> · today: <strong>{}</strong></p>"
                           "<figure class='dash-chart account-chart'><figcaption>Sends per hour, last 24 hours</figcaption>{}"
                           "</figure>", usage["hour"], usage["today"], mark_safe(chart))

    @admin.display(description="Complaint rate")
    def complaint_panel(self, account):
        figures = stats.account_complaint_rate(account)
        if figures["rate"] is None:
            return f"— (nothing sent through this account in the last {stats.ACCOUNT_COMPLAINT_DAYS} days)"
        css = "errornote" if figures["level"] == "danger" else ""
        return format_html("<p class='dash-complaint-rate complaint-{} {}' id='account-complaint-rate'>"
                           "<strong>{}%</strong> ({} complaint(s) {}). {}</p>", figures["level"], css, figures["rate"],
                           figures["complained"], figures["base"], figures["message"])

    @admin.display(description="Last check")
    def last_check(self, account):
        if account.check_requested_at:
            return "Checking… (reload the page for the result)"
        if account.last_check_at is None:
            return "Never checked"
        return format_html("{} · {} · {}", timezone.localtime(account.last_check_at).strftime("%Y-%m-%d %H:%M %Z"),
                           "worked" if account.last_check_worked else "failed", account.last_check_message)

    def has_test_connection_permission(self, request, obj=None):
        return permissions.can_test_connection(request.user)

    def ask_for_checks(self, request, account_ids, done_url):
        def call():
            asked = account_check.request_checks(account_ids, user_id=request.user.pk)
            notes = []
            if asked.queued:
                notes.append((messages.SUCCESS, f"Connection check queued for {', '.join(asked.queued)}: the result "
                                                "appears on each account's page under “Last check”."))
            if asked.busy:
                notes.append((messages.WARNING, f"Already being checked, not queued again: {', '.join(asked.busy)}."))
            return Outcome(tuple(notes))

        return perform(self, request, allowed=self.has_test_connection_permission(request), call=call,
                       done_url=done_url)

    @admin.display(description="DKIM key")
    def dkim_panel(self, account):
        if account.pk is None:
            return "Save the account with its DKIM domain and selector, then generate its key here."
        # A link to a page of its own, not a submit button in the change form: Enter in any field of the
        # form would press the first one and replace the key.
        button = format_html('<a class="button" id="generate-dkim-key" href="{}">{}</a>',
                             reverse("admin:campaigns_sendingaccount_dkim_key", args=[account.pk]),
                             "Generate a new key" if account.dkim_private_key else "Generate key")
        if not account.dkim_private_key:
            return format_html("<p>No key: mail is not signed.</p>{}", button)
        record = dkim.dns_record(account.dkim_selector, account.dkim_domain, account.dkim_private_key)
        return format_html("<p>A key is stored (encrypted). Publish this TXT record:</p>"
                           "<pre id='dkim-record' style='white-space: pre-wrap'>{}</pre><p>A new key replaces it at "
                           "once: to rotate without failing signatures, change the selector first.</p>{}", record, button)

    @admin.display(description="Checklist")
    def bulk_sender_panel(self, account):
        if account.pk is None:
            return "Shown once the account is saved."
        rows = dns_checks.checklist(account, checks=None)
        return format_html("{}<p><a class='button' id='check-dns' href='{}'>Check DNS (SPF, DKIM, DMARC, MX)</a></p>",
                           checklist_html(rows), reverse("admin:campaigns_sendingaccount_dns", args=[account.pk]))

    def dkim_key_view(self, request, account_id):
        """GET: what generating does, and the button; POST: generate (the change permission)."""
        account = get_object_or_404(SendingAccount, pk=account_id)
        if not self.has_change_permission(request, account):
            raise PermissionDenied("Generating a DKIM key needs the change permission.")
        if request.method == "POST":
            self.generate_dkim_key(request, [account])
            return redirect("admin:campaigns_sendingaccount_change", account.pk)
        return TemplateResponse(request, "admin/campaigns/sendingaccount/dkim_key.html", {
            **self.admin_site.each_context(request), "opts": SendingAccount._meta, "account": account,
            "title": f"DKIM key of “{account}”",
        })

    def dns_view(self, request, account_id):
        account = get_object_or_404(SendingAccount, pk=account_id)
        if not self.has_view_permission(request, account):
            raise PermissionDenied
        domains = dns_checks.account_domains(account)
        lookups = dns_checks.Lookups()
        results = [(domain, dns_checks.check_domain(account, domain, lookups)) for domain in domains]
        return TemplateResponse(request, "admin/campaigns/sendingaccount/dns.html", {
            **self.admin_site.each_context(request), "opts": SendingAccount._meta, "account": account,
            "title": f"DNS of “{account}”", "results": results,
            "checklist": checklist_html(dns_checks.checklist(account, [c for _, checks in results for c in checks])),
        })

    @admin.action(description="Generate a DKIM key (replaces the stored one)", permissions=["change"])
    def generate_dkim_key(self, request, queryset):
        for account in queryset:
            try:
                record = dkim.generate_key(account)
            except (ValueError, ImproperlyConfigured) as error:
                self.message_user(request, str(error), messages.ERROR)
                continue
            self.message_user(request, f"{account.name}: a new DKIM key is stored. Publish: {record}",
                              messages.SUCCESS)

    @admin.action(description="Test connection (nothing is sent)", permissions=["test_connection"])
    def test_connection(self, request, queryset):
        return self.ask_for_checks(request, list(queryset.values_list("pk", flat=True)), request.get_full_path())

    def test_connection_view(self, request, account_id):
        """The account page's "Test connection" button (POST)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        account = get_object_or_404(SendingAccount, pk=account_id)
        return self.ask_for_checks(request, [account.pk], reverse("admin:campaigns_sendingaccount_change",
                                                                   args=[account.pk]))

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context["can_test_connection"] = obj is not None and self.has_test_connection_permission(request, obj)
        context["kind_fields"] = kind_fields()
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<int:account_id>/test-connection/", view(self.test_connection_view),
                 name="campaigns_sendingaccount_test_connection"),
            path("<int:account_id>/dkim-key/", view(self.dkim_key_view), name="campaigns_sendingaccount_dkim_key"),
            path("<int:account_id>/dns/", view(self.dns_view), name="campaigns_sendingaccount_dns"),
            *super().get_urls(),
        ]


def checklist_html(rows):
    marks = {True: "✔ holds", False: "✘ does not hold", None: "? not checked"}
    return format_html("<table class='bulk-sender-checklist'><tbody>{}</tbody></table>", format_html_join(
        "", "<tr data-rule='{}' data-holds='{}'><th>{}</th><td>{}</td><td>{}</td></tr>",
        ((rule, {True: "yes", False: "no", None: "unknown"}[holds], rule, marks[holds], detail)
         for rule, holds, detail in rows)))


class SendingPoolAdmin(admin.ModelAdmin):
    list_display = ("name", "account_list", "campaign_count")
    search_fields = ("name",)
    filter_horizontal = ("accounts",)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(campaign_total=Count("campaigns")).prefetch_related("accounts")

    @admin.display(description="Accounts")
    def account_list(self, pool):
        accounts = list(pool.accounts.all())
        if not accounts:
            return "—"
        return format_html_join(", ", "{}{}", ((a.name, "" if a.enabled else " (disabled)") for a in accounts))

    @admin.display(description="Campaigns", ordering="campaign_total")
    def campaign_count(self, pool):
        return pool.campaign_total
