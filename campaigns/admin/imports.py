"""The admin's "Import recipients" pages: upload, live progress, report, rejected rows; and the imports' list.

CampaignAdmin serves the pages (under the campaign's URLs). The upload is stored as a RecipientImport
and imported by a Celery task once the row is committed; the status page polls a JSON endpoint.

A campaign that takes no recipients (sending has started or ended) shows why in place of the upload form,
never only after the upload. Figures are written with thousands separators ("49,200"); the progress line
comes from here (`progress_line`), for the page and its polling alike.
"""

from pathlib import Path

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.http import FileResponse, Http404
from django.template.response import TemplateResponse
from django.urls import reverse

from campaigns import services
from campaigns.admin.delivery_logs import LedgerAdmin
from campaigns.admin.staff_actions import Outcome, done
from campaigns.audience.importing import uploads
from campaigns.models import Campaign, RecipientImport

ACCEPTED_SUFFIXES = (".csv", ".txt", ".tsv", ".xlsx", ".xls")
IMPORTABLE_STATUSES = uploads.IMPORTABLE_STATUSES
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


def refusal(campaign) -> str:
    """Why CAMPAIGN takes no recipients now, for staff; "" when it does."""
    if campaign.status in IMPORTABLE_STATUSES:
        return ""
    return (f"Recipients cannot be added to this campaign: it is {campaign.get_status_display().lower()}. "
            f"Only a draft or scheduled campaign takes new recipients, so that everyone it mails gets the same "
            f"message.")


def upload_form(request, campaign) -> RecipientImportForm:
    """The form, bound to the upload once there is one. An oversized upload is refused from its declared
    length, before Django reads the body: the form comes back empty, with the reason as a message. So is
    an upload to a campaign that takes none: its page says why, in place of the form."""
    if request.method != "POST" or refusal(campaign):
        return RecipientImportForm(campaign=campaign)
    if int(request.META.get("CONTENT_LENGTH") or 0) > upload_limit_bytes() + 2**20:
        messages.error(request, f"The file is larger than the {settings.IMPORT_MAX_UPLOAD_MB} MB limit.")
        return RecipientImportForm(campaign=campaign)
    return RecipientImportForm(request.POST, request.FILES, campaign=campaign)


def upload_page(request, admin_context, campaign, form):
    return TemplateResponse(request, "admin/campaigns/import/upload.html", {
        **admin_context,
        "title": f"Import recipients into “{campaign}”",
        "opts": Campaign._meta,
        "campaign": campaign,
        "form": form,
        "refusal": refusal(campaign),
        "max_upload_mb": settings.IMPORT_MAX_UPLOAD_MB,
        "max_rows": settings.IMPORT_MAX_ROWS,
        "recent_imports": campaign.imports.all()[:10],
    })


def start_import(user, campaign, *, file, sheet, check_mx) -> Outcome:
    """Stores the upload as a RecipientImport; a Celery task imports it once the row is committed."""
    record = uploads.queue_import(user, campaign, file, Path(file.name).name, sheet, check_mx)
    unscheduled = services.unschedule_after_change(campaign.pk, user.pk, "the recipients (an import)")
    return done(unscheduled, messages.WARNING, url=reverse("admin:campaigns_campaign_import_status", args=[record.pk]))


def running_import(campaign):
    return campaign.imports.exclude(status__in=FINISHED).order_by("created_at").first()


def status_page(request, admin_context, record, can_export):
    return TemplateResponse(request, "admin/campaigns/import/status.html", {
        **admin_context,
        "title": f"Import of {record.original_name}",
        "opts": Campaign._meta,
        "campaign": record.campaign,
        "record": record,
        "finished": record.status in FINISHED,
        "status": import_status(record, can_export),
    })


def rejected_rows_csv(record):
    if not record.rejected_file:
        raise Http404("This import rejected no rows.")
    return FileResponse(record.rejected_file.open("rb"), as_attachment=True, content_type="text/csv",
                        filename=f"rejected-rows-{Path(record.original_name).stem}.csv")


def progress_line(record: RecipientImport) -> str:
    """What the progress bar's line says: queued, opening the file, or how far it has read."""
    if record.status == RecipientImport.Status.QUEUED:
        return "Queued: waiting for an import worker"
    if record.status == RecipientImport.Status.RUNNING and not record.rows_estimated and not record.rows_done:
        return "Opening the file…"
    if record.status in FINISHED:
        return f"{record.rows_done:,} rows read"
    return f"{record.rows_done:,} of about {max(record.rows_estimated, record.rows_done):,} rows read"


def import_status(record: RecipientImport, can_export: bool) -> dict:
    """The import's progress and figures; the rejected rows' link only for staff who may export them."""
    estimated = max(record.rows_estimated, record.rows_done, 1)
    finished = record.status in FINISHED
    return {
        "status": record.status,
        "status_display": record.get_status_display(),
        "finished": finished,
        "rows_done": record.rows_done,
        "rows_estimated": record.rows_estimated,
        "progress_line": progress_line(record),
        "merge_tags": record.merge_tags,
        "new_merge_tags": record.new_merge_tags,
        "percent": 100 if finished else min(99, int(100 * record.rows_done / estimated)),
        "rows": record.total_rows,
        "imported": record.imported,
        "duplicates_in_file": record.duplicates_in_file,
        "already_present": record.already_present,
        "invalid": record.invalid,
        "suppressed": record.suppressed,
        "error": record.error,
        "rejected_url": (reverse("admin:campaigns_campaign_import_rejected", args=[record.pk])
                         if record.rejected_file and can_export else None),
    }


class RecipientImportAdmin(LedgerAdmin):
    list_display = ("original_name", "campaign", "status", "imported_count", "invalid_count", "created_at")

    @admin.display(description="Imported", ordering="imported")
    def imported_count(self, record):
        return f"{record.imported:,}"

    @admin.display(description="Invalid", ordering="invalid")
    def invalid_count(self, record):
        return f"{record.invalid:,}"
    list_filter = ("status",)
    search_fields = ("original_name",)
    raw_id_fields = ("campaign",)
