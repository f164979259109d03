"""The segment builder of the campaign page: its JSON endpoint (the live count, saving) and page context.

Staff send the filter as data (campaigns.audience.segments validates and compiles it); the page's script
(static campaigns/admin/segment.js) only builds that data and shows the count this returns.
"""

import json

from django.conf import settings
from django.http import JsonResponse

from campaigns import services
from campaigns.audience import segments
from campaigns.exceptions import SegmentError
from campaigns.security import allowances

MAX_BODY_BYTES = 256 * 1024


def builder_data(campaign, can_edit):
    if campaign.is_editable:
        matching, total = segments.count_matching(campaign.pk, campaign.segment)
    else:
        # The audience was fixed at the start: its size is the campaign's total, no need to scan its rows.
        matching, total = campaign.total_recipients, None
    return {
        "segment": campaign.segment or {"match": "all", "conditions": []},
        "columns": segments.columns_of(campaign),
        "operators": [{"name": name, "label": label, "takes_value": name not in segments.VALUELESS}
                      for name, label in segments.OPERATORS.items()],
        "matching": matching,
        "total": total,
        "description": segments.describe(campaign.segment),
        "editable": bool(can_edit and campaign.is_editable),
    }


def segment_json(request, campaign, can_edit):
    """GET: the saved segment, the columns and the count. POST {"segment": …, "save": bool}: the count of
    that segment, and with save, store it (draft or scheduled campaigns only).

    Each count scans the campaign's recipients: every user, a Viewer too, may ask for at most
    SEGMENT_COUNTS_PER_USER_PER_MINUTE of them (429 beyond)."""
    if request.method in ("GET", "POST"):
        limit = settings.SEGMENT_COUNTS_PER_USER_PER_MINUTE
        if not allowances.spend("segment-counts", request.user.pk, 1, limit, window_seconds=60):
            response = _json({"error": f"Too many audience counts: at most {limit} a minute. Wait a moment and "
                                       "try again."}, status=429)
            response["Retry-After"] = "60"
            return response
    if request.method == "GET":
        return _json(builder_data(campaign, can_edit))
    if request.method != "POST":
        return _json({"error": "Use GET or POST."}, status=405)
    if len(request.body) > MAX_BODY_BYTES:
        return _json({"error": "The segment is too large."}, status=400)
    try:
        body = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        return _json({"error": "The request body is not JSON."}, status=400)
    if not isinstance(body, dict):
        return _json({"error": "Send an object: {\"segment\": …, \"save\": false}."}, status=400)
    try:
        normal = segments.validate(body.get("segment"), segments.columns_of(campaign))
        if body.get("save"):
            if not can_edit:
                return _json({"error": "Changing the segment needs the change permission."}, status=403)
            message = segments.save_segment(campaign.pk, normal)
            unscheduled = services.unschedule_after_change(campaign.pk, request.user.pk, "the segment")
            message = f"{message} {unscheduled}".strip()
        else:
            message = ""
    except SegmentError as error:
        return _json({"error": str(error)}, status=400)
    matching, total = segments.count_matching(campaign.pk, normal)
    return _json({"matching": matching, "total": total, "description": segments.describe(normal),
                  "message": message, "segment": normal or {"match": "all", "conditions": []}})


def _json(data, status=200):
    response = JsonResponse(data, status=status)
    response["Cache-Control"] = "no-store"
    return response
