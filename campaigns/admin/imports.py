"""The admin's "Import recipients" pages: upload, live progress, report, rejected rows.

`RecipientImportAdminMixin` adds them to CampaignAdmin. The upload is stored as a RecipientImport
and imported by a Celery task once the row is committed; the status page polls a JSON endpoint.
"""

from pathlib import Path

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from campaigns.models import Campaign, RecipientImport

ACCEPTED_SUFFIXES = (".csv", ".txt", ".tsv", ".xlsx", ".xls")
IMPORTABLE_STATUSES = (Campaign.Status.DRAFT, Campaign.Status.SCHEDULED)
FINISHED = (RecipientImport.Status.SUCCEEDED, RecipientImport.Status.FAILED)


def upload_limit_bytes() -> int:
    return settings.IMPORT_MAX_UPLOAD_MB * 1024 * 1024


class RecipientImportForm(forms.Form):
    file = forms.FileField(help_text="CSV (any delimiter or encoding), XLSX or XLS, with a header row and an "
                                     "email column.")
    sheet = forms.CharField(required=False, max_length=255,
                            help_text="Workbooks only: the sheet to read. Empty means the first sheet.")
    check_mx = forms.BooleanField(required=False, label="Check that each domain accepts email (MX lookup)",
                                  help_text="Slower: one DNS lookup per distinct domain.")

    def __init__(self, *args, campaign, **kwargs):
        super().__init__(*args, **kwargs)
        self.campaign = campaign

    def clean(self):
        if self.campaign.status not in IMPORTABLE_STATUSES:
            raise forms.ValidationError(
                f"Recipients can only be added to a draft or scheduled campaign; this one is "
                f"{self.campaign.get_status_display().lower()}.")
        return super().clean()

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > upload_limit_bytes():
            raise forms.ValidationError(
                f"The file is {upload.size / 2**20:,.1f} MB; the limit is {settings.IMPORT_MAX_UPLOAD_MB} MB.")
        if not upload.name.lower().endswith(ACCEPTED_SUFFIXES):
            raise forms.ValidationError("Upload a .csv, .xlsx or .xls file.")
        return upload


class RecipientImportAdminMixin:
    """Mixed into CampaignAdmin: the import URLs and an "Import recipients" button on the change page."""

    change_form_template = "admin/campaigns/import/campaign_change_form.html"

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<int:campaign_id>/import/", view(self.import_recipients_view), name="campaigns_campaign_import"),
            path("imports/<int:import_id>/", view(self.import_status_view), name="campaigns_campaign_import_status"),
            path("imports/<int:import_id>/status.json", view(self.import_status_json),
                 name="campaigns_campaign_import_status_json"),
            path("imports/<int:import_id>/rejected.csv", view(self.import_rejected_csv),
                 name="campaigns_campaign_import_rejected"),
            *super().get_urls(),
        ]

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context["running_import"] = obj.imports.exclude(status__in=FINISHED).order_by("created_at").first()
        return super().render_change_form(request, context, add, change, form_url, obj)

    def import_recipients_view(self, request, campaign_id):
        campaign = get_object_or_404(Campaign, pk=campaign_id)
        if not self.has_change_permission(request, campaign):
            raise PermissionDenied
        form = RecipientImportForm(campaign=campaign)
        # An oversized upload is refused from its declared length, before Django reads the body.
        if request.method == "POST" and int(request.META.get("CONTENT_LENGTH") or 0) > upload_limit_bytes() + 2**20:
            messages.error(request, f"The file is larger than the {settings.IMPORT_MAX_UPLOAD_MB} MB limit.")
        elif request.method == "POST":
            form = RecipientImportForm(request.POST, request.FILES, campaign=campaign)
            if form.is_valid():
                record = self._start_import(request, campaign, form.cleaned_data)
                return redirect("admin:campaigns_campaign_import_status", import_id=record.pk)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Import recipients into “{campaign}”",
            "opts": self.model._meta,
            "campaign": campaign,
            "form": form,
            "max_upload_mb": settings.IMPORT_MAX_UPLOAD_MB,
            "max_rows": settings.IMPORT_MAX_ROWS,
            "recent_imports": campaign.imports.all()[:10],
        }
        return TemplateResponse(request, "admin/campaigns/import/upload.html", context)

    def _start_import(self, request, campaign, data):
        from campaigns.tasks.imports import import_recipients_file

        upload = data["file"]
        with transaction.atomic():
            record = RecipientImport.objects.create(
                campaign=campaign, file=upload, original_name=Path(upload.name).name[:255],
                sheet=data.get("sheet") or "", created_by=request.user,
            )
            check_mx = bool(data.get("check_mx"))
            transaction.on_commit(lambda: import_recipients_file.delay(record.pk, check_mx))
        return record

    def _viewable_import(self, request, import_id) -> RecipientImport:
        record = get_object_or_404(RecipientImport.objects.select_related("campaign"), pk=import_id)
        if not self.has_view_or_change_permission(request, record.campaign):
            raise PermissionDenied
        return record

    def import_status_view(self, request, import_id):
        record = self._viewable_import(request, import_id)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Import of {record.original_name}",
            "opts": self.model._meta,
            "campaign": record.campaign,
            "record": record,
            "finished": record.status in FINISHED,
            "status": import_status(record),
        }
        return TemplateResponse(request, "admin/campaigns/import/status.html", context)

    def import_status_json(self, request, import_id):
        return JsonResponse(import_status(self._viewable_import(request, import_id)))

    def import_rejected_csv(self, request, import_id):
        record = self._viewable_import(request, import_id)
        if not record.rejected_file:
            raise Http404("This import rejected no rows.")
        return FileResponse(record.rejected_file.open("rb"), as_attachment=True, content_type="text/csv",
                            filename=f"rejected-rows-{Path(record.original_name).stem}.csv")


def import_status(record: RecipientImport) -> dict:
    estimated = max(record.rows_estimated, record.rows_done, 1)
    finished = record.status in FINISHED
    return {
        "status": record.status,
        "status_display": record.get_status_display(),
        "finished": finished,
        "rows_done": record.rows_done,
        "rows_estimated": record.rows_estimated,
        "percent": 100 if finished else min(99, int(100 * record.rows_done / estimated)),
        "rows": record.total_rows,
        "imported": record.imported,
        "duplicates_in_file": record.duplicates_in_file,
        "already_present": record.already_present,
        "invalid": record.invalid,
        "suppressed": record.suppressed,
        "error": record.error,
        "rejected_url": (reverse("admin:campaigns_campaign_import_rejected", args=[record.pk])
                         if record.rejected_file else None),
    }
