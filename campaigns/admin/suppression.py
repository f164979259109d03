"""Suppression list in the admin: add, remove, import from CSV; reason, source and campaign shown.

Addresses are normalised (trimmed, lower-cased) before the unique check, so "Ann@X.com" and
"ann@x.com" are one entry, and the send-time check finds them whatever case a recipient was imported in.
"""

from functools import partial

from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.urls import path, reverse

from campaigns.admin.staff_actions import done, perform
from campaigns.audience import suppression
from campaigns.audience.validators import validate_email_address
from campaigns.exceptions import SuppressionImportError
from campaigns.models import Suppression

MAX_UPLOAD_MB = 50


class SuppressionForm(forms.ModelForm):
    class Meta:
        model = Suppression
        fields = ("email", "reason", "source", "campaign")

    def clean_email(self):
        email = suppression.normalize(self.cleaned_data["email"])
        validate_email_address(email)
        return email


class SuppressionImportForm(forms.Form):
    file = forms.FileField(help_text=f'A CSV file (UTF-8, UTF-16 or a Windows encoding) with a column named "email", '
                                     f"or one address per line. At most {MAX_UPLOAD_MB} MB.")
    reason = forms.ChoiceField(choices=Suppression.Reason.choices, initial=Suppression.Reason.MANUAL)
    source = forms.CharField(max_length=200, required=False,
                             help_text='Where the list came from, e.g. "unsubscribes exported from our old ESP".')

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > MAX_UPLOAD_MB * 1024 * 1024:
            raise forms.ValidationError(f"The file is larger than {MAX_UPLOAD_MB} MB.")
        return upload


class SuppressionAdmin(admin.ModelAdmin):
    form = SuppressionForm
    list_display = ("email", "reason", "source", "campaign", "created_at")
    list_filter = ("reason",)
    search_fields = ("email", "source")
    raw_id_fields = ("campaign",)
    list_select_related = ("campaign",)
    show_full_result_count = False

    # Removing an address means mailing someone who asked not to be: its own permission, not the model's.
    def has_add_permission(self, request):
        return request.user.has_perm("campaigns.manage_suppressions")

    def has_change_permission(self, request, obj=None):
        return request.user.has_perm("campaigns.manage_suppressions")

    def has_delete_permission(self, request, obj=None):
        return request.user.has_perm("campaigns.manage_suppressions")

    def get_urls(self):
        return [
            path("import/", self.admin_site.admin_view(self.import_view), name="campaigns_suppression_import"),
            *super().get_urls(),
        ]

    def import_view(self, request):
        return perform(self, request, allowed=self.has_add_permission(request),
                       form=partial(SuppressionImportForm, request.POST or None, request.FILES or None),
                       page=partial(self.import_page, request), call=import_suppressions,
                       done_url=reverse("admin:campaigns_suppression_changelist"))

    def import_page(self, request, form):
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "form": form,
                   "title": "Import suppressions from CSV"}
        return TemplateResponse(request, "admin/campaigns/suppression/import.html", context)


def import_suppressions(*, file, reason, source):
    try:
        report = suppression.import_csv(file.file, reason=reason, source=source or f"CSV import: {file.name}"[:200])
    except SuppressionImportError as refused:
        raise forms.ValidationError({"file": str(refused)}) from refused
    return done(report.summary(), messages.WARNING if report.invalid else messages.SUCCESS)
