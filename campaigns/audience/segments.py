"""Segments: a campaign's audience narrowed by its recipients' columns (issue 16, item 4).

A segment is stored on the campaign (Campaign.segment) as plain data, never as SQL:

    {"match": "all" | "any",
     "conditions": [{"column": "city", "operator": "equals", "value": "Lisbon"}, ...]}

`validate` accepts only the campaign's known columns (email, first_name, last_name and its recipients'
imported `data` keys) and the operators below, and returns the segment in its normal form; anything
else raises SegmentError with one sentence for staff. `compile_segment` turns a valid segment into a
WHERE fragment over alias `r` (campaigns_recipient) and its parameters: every value and every data key
is a bound parameter, so no staff text reaches the SQL. `r.data ->> key` reads one top-level key; the
key is never a path, so "a,b" or "{a,b}" or "a' OR '1'='1" is just a key no recipient has.

Comparisons: equals, in and contains ignore case and surrounding spaces; before and after compare
dates written YYYY-MM-DD (a longer ISO value such as "2024-05-01 09:30" counts by its date part);
values in another format never match a date condition. Empty means missing, blank or only spaces.
"""

import datetime
import json
import logging

from django.db import connection

from campaigns.exceptions import SegmentError
from campaigns.message.rendering import MERGE_TAG_NAME

logger = logging.getLogger(__name__)

STANDARD_COLUMNS = ("email", "first_name", "last_name")
MATCHES = {"all": " AND ", "any": " OR "}
OPERATORS = {
    "equals": "equals",
    "contains": "contains",
    "in": "is one of",
    "before": "is before (date)",
    "after": "is after (date)",
    "empty": "is empty",
    "not_empty": "is not empty",
}
VALUELESS = ("empty", "not_empty")
MAX_CONDITIONS = 20
MAX_LIST_VALUES = 1000
MAX_VALUE_LENGTH = 500


def columns_of(campaign):
    """The columns a segment of CAMPAIGN may name: the standard ones, then its imported data keys."""
    # As for merge tags, a data key of another shape than an imported column's (planted by hand) is not offered.
    keys = [key for key in campaign.recipient_data_keys()
            if MERGE_TAG_NAME.fullmatch(key) and key not in STANDARD_COLUMNS]
    return [*STANDARD_COLUMNS, *keys]


def is_everyone(segment):
    return not segment or not segment.get("conditions")


def validate(segment, columns):
    """SEGMENT in its normal form (None for everyone), or SegmentError saying what is wrong.

    COLUMNS: the names a condition may use (columns_of); None accepts any name (compile_segment re-checks
    a stored segment's shape that way: a column no recipient has simply matches nobody)."""
    if segment in (None, {}, ""):
        return None
    if not isinstance(segment, dict):
        raise SegmentError("A segment is an object with a match and a list of conditions.")
    unknown_keys = sorted(set(segment) - {"match", "conditions"})
    if unknown_keys:
        raise SegmentError(f"A segment has only a match and conditions, not {', '.join(map(str, unknown_keys))}.")
    match = segment.get("match", "all")
    if match not in MATCHES:
        raise SegmentError(f"Match must be all or any, not {_shown(match)}.")
    conditions = segment.get("conditions") or []
    if not isinstance(conditions, list):
        raise SegmentError("The conditions of a segment are a list.")
    if len(conditions) > MAX_CONDITIONS:
        raise SegmentError(f"A segment has at most {MAX_CONDITIONS} conditions; this one has {len(conditions)}.")
    normal = [_validate_condition(n, condition, columns) for n, condition in enumerate(conditions, 1)]
    return {"match": match, "conditions": normal} if normal else None


def _validate_condition(number, condition, columns):
    where = f"Condition {number}"
    if not isinstance(condition, dict) or set(condition) - {"column", "operator", "value"}:
        raise SegmentError(f"{where}: a condition has a column, an operator and a value.")
    column, operator = condition.get("column"), condition.get("operator")
    if not isinstance(column, str) or not column or (columns is not None and column not in columns):
        raise SegmentError(f"{where}: unknown column {_shown(column)}. Columns: {', '.join(columns)}.")
    if operator not in OPERATORS:
        raise SegmentError(f"{where}: unknown operator {_shown(operator)}. Operators: {', '.join(OPERATORS)}.")
    value = condition.get("value")
    if operator in VALUELESS:
        value = None
    elif operator == "in":
        value = _list_value(where, value)
    elif operator in ("before", "after"):
        value = _date_value(where, value)
    else:
        value = _text_value(where, value)
        if not value.strip():
            raise SegmentError(f"{where}: give a value to compare {column} with (or use is empty).")
    return {"column": column, "operator": operator, "value": value}


def _text_value(where, value):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise SegmentError(f"{where}: the value must be text.")
    if len(value) > MAX_VALUE_LENGTH:
        raise SegmentError(f"{where}: a value has at most {MAX_VALUE_LENGTH} characters.")
    if "\x00" in value:
        raise SegmentError(f"{where}: the value contains a NUL character.")
    return value


def _list_value(where, value):
    if isinstance(value, str):
        value = [part for part in value.replace("\n", ",").split(",")]
    if not isinstance(value, list):
        raise SegmentError(f"{where}: is one of takes a list of values, separated by commas.")
    items = [_text_value(where, item).strip() for item in value]
    items = list(dict.fromkeys(item for item in items if item))
    if not items:
        raise SegmentError(f"{where}: is one of needs at least one value.")
    if len(items) > MAX_LIST_VALUES:
        raise SegmentError(f"{where}: is one of takes at most {MAX_LIST_VALUES} values.")
    return items


def _date_value(where, value):
    text = _text_value(where, value).strip()
    try:
        return datetime.date.fromisoformat(text).isoformat()
    except ValueError:
        raise SegmentError(f"{where}: {_shown(text)} is not a date; write it as YYYY-MM-DD.") from None


def _shown(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…"


# --- SQL -----------------------------------------------------------------------------------------

# A date-shaped start of a value (the pattern has no % so it needs no escaping for the driver).
_DATE_SHAPE = "'^[0-9]{4}-[0-9]{2}-[0-9]{2}'"


def compile_segment(segment, prefix="seg"):
    """(sql, params): a WHERE fragment over alias r and its named parameters, for a VALID segment.

    Everyone (no segment) compiles to TRUE. PREFIX keeps the parameter names apart from the query's own.
    """
    segment = validate(segment, None)
    if is_everyone(segment):
        return "TRUE", {}
    params = {}

    def bind(value):
        name = f"{prefix}_{len(params)}"
        params[name] = value
        return f"%({name})s"

    parts = []
    for condition in segment["conditions"]:
        column = condition["column"]
        expression = f"r.{column}" if column in STANDARD_COLUMNS else f"(r.data ->> {bind(column)})"
        parts.append(f"coalesce({_condition_sql(expression, condition, bind)}, FALSE)")
    return "(" + MATCHES[segment["match"]].join(parts) + ")", params


def _condition_sql(expression, condition, bind):
    operator, value = condition["operator"], condition["value"]
    normalised = f"lower(btrim({expression}))"
    if operator == "equals":
        return f"{normalised} = lower(btrim({bind(value)}))"
    if operator == "in":
        return f"{normalised} = ANY({bind([item.lower() for item in value])}::text[])"
    if operator == "contains":
        return f"strpos(lower({expression}), lower({bind(value)})) > 0"
    if operator in ("before", "after"):
        day = f"left(btrim({expression}), 10)"
        comparison = "<" if operator == "before" else ">"
        return f"({day} ~ {_DATE_SHAPE} AND {day} COLLATE \"C\" {comparison} {bind(value)})"
    if operator == "empty":
        return f"(btrim(coalesce({expression}, '')) = '')"
    if operator == "not_empty":
        return f"(btrim(coalesce({expression}, '')) <> '')"
    raise SegmentError(f"Unknown operator {_shown(operator)}.")  # validate() lets none through


def count_matching(campaign_id, segment):
    """(matching, total) recipients of the campaign for a VALID segment, in one scan."""
    where, params = compile_segment(segment)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FILTER (WHERE {where}), count(*) FROM campaigns_recipient r "
                       "WHERE r.campaign_id = %(campaign_id)s", {**params, "campaign_id": campaign_id})
        return cursor.fetchone()


def has_match(campaign_id, segment):
    """Whether any recipient of the campaign matches a VALID segment (stops at the first)."""
    where, params = compile_segment(segment)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT EXISTS (SELECT 1 FROM campaigns_recipient r WHERE r.campaign_id = %(campaign_id)s "
                       f"AND {where})", {**params, "campaign_id": campaign_id})
        return cursor.fetchone()[0]


def describe(segment):
    """One line for people: 'all of: city equals "Lisbon", …' or 'every recipient'."""
    if is_everyone(segment):
        return "every recipient"
    parts = []
    for condition in segment["conditions"]:
        value = condition["value"]
        shown = "" if value is None else " " + (", ".join(f'"{v}"' for v in value) if isinstance(value, list)
                                                else f'"{value}"')
        parts.append(f"{condition['column']} {OPERATORS[condition['operator']]}{shown}")
    return f"{segment['match']} of: " + "; ".join(parts)


def save_segment(campaign_id, segment):
    """Store a segment on a draft or scheduled campaign (None: everyone); returns a sentence for staff.

    The UPDATE is conditional on the status, so a campaign that started meanwhile keeps the audience it
    started with."""
    from campaigns.models import Campaign

    campaign = Campaign.objects.filter(pk=campaign_id).first()
    if campaign is None:
        raise SegmentError(f"Campaign #{campaign_id} does not exist.")
    normal = validate(segment, columns_of(campaign))
    editable = (Campaign.Status.DRAFT, Campaign.Status.SCHEDULED)
    if not Campaign.objects.filter(pk=campaign_id, status__in=editable).update(segment=normal):
        status = Campaign.objects.filter(pk=campaign_id).values_list("status", flat=True).first()
        raise SegmentError(f"Cannot change the segment of campaign #{campaign_id}: it is "
                           f"{Campaign.Status(status).label.lower()}; only a draft or scheduled campaign's can change.")
    matching, total = count_matching(campaign_id, normal)
    logger.info("Campaign %s segment saved: %s of %s recipients match", campaign_id, matching, total)
    return f"Segment saved: {matching} of {total} recipients match ({describe(normal)})."


RECIPIENT_FIELDS = ("email", "first_name", "last_name", "data")


def first_of_audience(campaign_id, segment):
    """The first recipient (by id) of the campaign's audience, as sending would mail it: matching a VALID
    segment, suppressed addresses left out; a dict of RECIPIENT_FIELDS, or None when nobody is left."""
    where, params = compile_segment(segment)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT r.email, r.first_name, r.last_name, r.data FROM campaigns_recipient r "
                       f"WHERE r.campaign_id = %(campaign_id)s AND {where} AND NOT EXISTS "
                       "(SELECT 1 FROM campaigns_suppression s WHERE s.email = lower(r.email)) ORDER BY r.id LIMIT 1",
                       {**params, "campaign_id": campaign_id})
        row = cursor.fetchone()
    if row is None:
        return None
    found = dict(zip(RECIPIENT_FIELDS, row))
    if isinstance(found["data"], str):  # a raw cursor reads jsonb as text
        found["data"] = json.loads(found["data"])
    return found
