"""Segments (campaigns.audience.segments): filters over recipients' columns against hand-computed sets, hostile
values, and the audience a started campaign's delivery logs are created for."""

import pytest

from campaigns.audience import segments
from campaigns.exceptions import SegmentError
from campaigns.models import Campaign, DeliveryLog, Recipient, Suppression
from campaigns.sending import pipeline
from tests.support.factories import CampaignFactory

PEOPLE = [
    # email, first_name, last_name, data
    ("ana@example.com", "Ana", "Silva", {"city": "Lisbon", "plan": "pro", "joined": "2024-01-15", "note": ""}),
    ("bo@example.com", "Bo", "", {"city": " lisbon ", "plan": "free", "joined": "2024-06-01 09:30"}),
    ("cy@example.org", "Cy", "Kent", {"city": "Porto", "plan": "PRO", "joined": "15/01/2024", "note": "vip"}),
    ("di@example.org", "", "Lane", {"city": "Paris", "plan": "team", "joined": "2023-12-31", "note": "  "}),
    ("ed@example.net", "Ed", "O'Neil", {"city": "Lisbon'; DROP TABLE campaigns_recipient; --", "plan": "free"}),
]


@pytest.fixture
def campaign(db):
    campaign = CampaignFactory()
    Recipient.objects.bulk_create(Recipient(campaign=campaign, email=e, first_name=f, last_name=l, data=d)
                                  for e, f, l, d in PEOPLE)
    Campaign.objects.filter(pk=campaign.pk).update(total_recipients=len(PEOPLE))
    campaign.refresh_from_db()
    # Another campaign's recipients never match.
    other = CampaignFactory()
    Recipient.objects.create(campaign=other, email="ana@example.com", data={"city": "Lisbon"})
    return campaign


def matching(campaign, segment):
    """The emails a segment selects, by running its compiled SQL."""
    normal = segments.validate(segment, segments.columns_of(campaign))
    where, params = segments.compile_segment(normal)
    from django.db import connection
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT r.email FROM campaigns_recipient r WHERE r.campaign_id = %(c)s AND {where}",
                       {**params, "c": campaign.pk})
        return {row[0].split("@")[0] for row in cursor.fetchall()}


def seg(*conditions, match="all"):
    return {"match": match, "conditions": [dict(zip(("column", "operator", "value"), c)) for c in conditions]}


@pytest.mark.parametrize("segment, expected", [
    (None, {"ana", "bo", "cy", "di", "ed"}),
    (seg(("city", "equals", "lisbon")), {"ana", "bo"}),  # case and surrounding spaces ignored
    (seg(("plan", "equals", "pro")), {"ana", "cy"}),
    (seg(("city", "contains", "IS")), {"ana", "bo", "di", "ed"}),
    (seg(("city", "in", ["porto", "PARIS", "Madrid"])), {"cy", "di"}),
    (seg(("city", "in", "Porto, Paris")), {"cy", "di"}),  # a comma-separated string is a list
    (seg(("joined", "before", "2024-01-15")), {"di"}),  # strictly before; 15/01/2024 is not a date
    (seg(("joined", "after", "2024-01-15")), {"bo"}),  # the date part of "2024-06-01 09:30"
    (seg(("note", "empty", None)), {"ana", "bo", "di", "ed"}),  # "", missing, only spaces
    (seg(("note", "not_empty", None)), {"cy"}),
    (seg(("last_name", "empty", None)), {"bo"}),
    (seg(("email", "contains", "@example.org")), {"cy", "di"}),
    (seg(("first_name", "equals", "ed")), {"ed"}),
    (seg(("city", "equals", "lisbon"), ("plan", "equals", "pro")), {"ana"}),
    (seg(("city", "equals", "lisbon"), ("plan", "equals", "pro"), match="any"), {"ana", "bo", "cy"}),
    (seg(("joined", "before", "2024-03-01"), ("note", "not_empty", None), match="any"), {"ana", "cy", "di"}),
])
def test_filters_select_the_hand_computed_sets(campaign, segment, expected):
    assert matching(campaign, segment) == expected


@pytest.mark.parametrize("value, expected", [
    ("Lisbon'; DROP TABLE campaigns_recipient; --", {"ed"}),  # a value is a parameter: matched literally
    ("' OR '1'='1", set()),
    ("%", set()),  # no LIKE wildcards
    ("L_sbon", set()),  # LIKE would match Lisbon
    ("\\", set()),
    ("'; DROP", {"ed"}),
])
def test_hostile_values_are_compared_as_plain_text(campaign, value, expected):
    assert matching(campaign, seg(("city", "contains", value))) == expected
    assert Recipient.objects.filter(campaign=campaign).count() == len(PEOPLE)


def test_a_planted_data_key_shaped_like_a_json_path_is_only_a_key(campaign):
    """->> reads one top-level key: '{city}' or 'city,0' is never a path into the data."""
    Recipient.objects.filter(campaign=campaign, email="ana@example.com").update(
        data={"city": "Lisbon", "{city}": "x", "city' OR '1'='1": "y"})
    assert segments.columns_of(campaign)[3:] == ["city", "joined", "note", "plan"]  # planted keys are not offered
    columns = [*segments.columns_of(campaign), "{city}", "city' OR '1'='1"]
    for column, expected in [("{city}", {"ana"}), ("city' OR '1'='1", {"ana"})]:
        normal = segments.validate(seg((column, "not_empty", None)), columns)
        where, params = segments.compile_segment(normal)
        assert column not in where  # the key is bound, never written into the SQL
        assert matching_with(campaign, where, params) == expected


def matching_with(campaign, where, params):
    from django.db import connection
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT r.email FROM campaigns_recipient r WHERE r.campaign_id = %(c)s AND {where}",
                       {**params, "c": campaign.pk})
        return {row[0].split("@")[0] for row in cursor.fetchall()}


@pytest.mark.parametrize("segment, message", [
    (seg(("city; DROP TABLE x", "equals", "a")), "unknown column 'city; DROP TABLE x'"),
    (seg(("data->>'city'", "equals", "a")), "unknown column"),
    (seg(("id", "equals", "1")), "unknown column 'id'"),
    (seg(("city", "like", "a")), "unknown operator 'like'"),
    (seg(("city", "= 'a' OR TRUE --", "a")), "unknown operator"),
    (seg(("joined", "before", "yesterday")), "'yesterday' is not a date; write it as YYYY-MM-DD"),
    (seg(("joined", "after", "2024-02-30")), "is not a date"),
    (seg(("city", "equals", "  ")), "give a value"),
    (seg(("city", "equals", {"$ne": 1})), "the value must be text"),
    (seg(("city", "in", [])), "at least one value"),
    (seg(("city", "equals", "a"), match="none"), "Match must be all or any"),
    ({"match": "all", "conditions": "city = 'a'"}, "conditions of a segment are a list"),
    ({"match": "all", "conditions": [], "sql": "TRUE"}, "not sql"),
    ("city = 'Lisbon'", "is an object"),
    (seg(*[("city", "equals", "a")] * 21), "at most 20 conditions"),
    (seg(("city", "equals", "a" * 501)), "at most 500 characters"),
])
def test_invalid_filters_are_refused_with_a_clear_message(campaign, segment, message):
    with pytest.raises(SegmentError, match=message.replace("(", r"\(").replace("'", "'")):
        segments.validate(segment, segments.columns_of(campaign))


def test_compile_refuses_a_stored_segment_with_an_unknown_operator():
    with pytest.raises(SegmentError, match="unknown operator"):
        segments.compile_segment(seg(("city", "regex", ".*")))


def test_count_matching_gives_the_segment_and_the_whole_audience(campaign):
    assert segments.count_matching(campaign.pk, seg(("city", "equals", "Lisbon"))) == (2, 5)
    assert segments.count_matching(campaign.pk, None) == (5, 5)


def test_a_saved_segment_narrows_the_delivery_logs_when_the_campaign_starts(campaign):
    Suppression.objects.create(email="bo@example.com", reason="unsubscribed")
    message = segments.save_segment(campaign.pk, seg(("city", "equals", "lisbon"), ("plan", "equals", "pro"),
                                                     match="any"))
    assert message.startswith("Segment saved: 3 of 5 recipients match")
    campaign.refresh_from_db()
    created, skipped, *_ = pipeline.create_delivery_logs(campaign.pk, 200, segment=campaign.segment)
    assert (created, skipped) == (3, 1)
    logged = dict(DeliveryLog.objects.filter(campaign=campaign).values_list("email", "status"))
    assert logged == {"ana@example.com": "pending", "bo@example.com": "skipped", "cy@example.org": "pending"}


def test_start_campaign_creates_logs_only_for_the_segment(campaign, django_capture_on_commit_callbacks):
    from django.utils import timezone
    segments.save_segment(campaign.pk, seg(("city", "in", ["porto", "paris"])))
    Campaign.objects.filter(pk=campaign.pk).update(status="scheduled", scheduled_at=timezone.now())
    with django_capture_on_commit_callbacks():
        assert pipeline.start_campaign(campaign.pk)
    campaign.refresh_from_db()
    assert campaign.total_recipients == 2
    assert set(DeliveryLog.objects.filter(campaign=campaign).values_list("email", flat=True)) == {
        "cy@example.org", "di@example.org"}


def test_the_segment_is_fixed_once_sending_starts(campaign):
    segments.save_segment(campaign.pk, seg(("city", "equals", "Porto")))
    Campaign.objects.filter(pk=campaign.pk).update(status="in_progress")
    with pytest.raises(SegmentError, match="it is in progress; only a draft or scheduled campaign's can change"):
        segments.save_segment(campaign.pk, None)
    campaign.refresh_from_db()
    assert campaign.segment == seg(("city", "equals", "Porto"))


def test_clearing_the_segment_means_everyone(campaign):
    segments.save_segment(campaign.pk, seg(("city", "equals", "Porto")))
    assert segments.save_segment(campaign.pk, {"match": "all", "conditions": []}).startswith(
        "Segment saved: 5 of 5")
    campaign.refresh_from_db()
    assert campaign.segment is None


def test_scheduling_refuses_an_audience_that_matches_nobody(campaign):
    from django.utils import timezone

    from campaigns import services
    from campaigns.exceptions import CampaignError
    segments.save_segment(campaign.pk, seg(("city", "equals", "Madrid")))
    with pytest.raises(CampaignError, match=r"audience matches no recipient \(all of: city equals \"Madrid\"\)"):
        services.schedule(campaign.pk, timezone.now())
    campaign.refresh_from_db()
    assert campaign.status == "draft"
    segments.save_segment(campaign.pk, seg(("city", "equals", "Porto")))
    assert services.schedule(campaign.pk, timezone.now()).startswith("Scheduled for")
