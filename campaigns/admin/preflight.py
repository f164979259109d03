"""The campaign's preflight page: start a run, watch its progress bar, read its errors and warnings."""

from django.http import JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse

from campaigns.message import preflight
from campaigns.models import Campaign, PreflightRun

FINISHED = (PreflightRun.Status.SUCCEEDED, PreflightRun.Status.FAILED)


def run_status(run):
    finished = run.status in FINISHED
    total = max(run.rows_total, 1)
    return {
        "status": run.status, "status_display": run.get_status_display(), "finished": finished,
        "rows_done": run.rows_done, "rows_total": run.rows_total,
        "percent": 100 if finished else min(99, int(100 * run.rows_done / total)),
    }


def preflight_page(request, admin_context, campaign, *, can_start, show_examples, run_id=None):
    run = (get_object_or_404(PreflightRun, pk=run_id, campaign=campaign) if run_id
           else preflight.latest_run(campaign))
    report = run.report if run and run.status == PreflightRun.Status.SUCCEEDED else None
    return TemplateResponse(request, "admin/campaigns/campaign/preflight.html", {
        **admin_context,
        "opts": Campaign._meta, "title": f"Preflight of “{campaign}”", "campaign": campaign,
        "run": run, "status": run_status(run) if run else None, "report": report,
        "current": preflight.is_current(run, campaign), "can_start": can_start, "show_examples": show_examples,
    })


def preflight_status_json(run):
    response = JsonResponse(run_status(run))
    response["Cache-Control"] = "no-store"
    return response
