"""Opens told apart (person or machine), clicks per link and the hourly counters (issue 16, items 2 and 3)."""

import datetime as dt
import time

import pytest
from django.db.models import Count, Sum
from django.utils import timezone

from campaigns.engagement import opens_and_clicks
from campaigns.models import Campaign, CampaignLink, DeliveryLog, EngagementHour, LinkClick
from tests.support.engaged_campaign import APPLE_MPP, IPHONE_MAIL, LINK_A, LINK_B, make_engaged_campaign
from tests.support.factories import CampaignFactory, DeliveryLogFactory

GMAIL_PROXY = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
OUTLOOK = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"


@pytest.mark.parametrize("agent, machine", [
    (APPLE_MPP, True),  # Apple Mail Privacy Protection's prefetch: "Mozilla/5.0" and nothing else
    (" mozilla/5.0 ", True),
    ("Barracuda Sentinel (EE)", True),
    ("Mozilla/5.0 (compatible; Mimecast URL Protect)", True),
    ("python-requests/2.31", True),
    ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", True),
    ("Link Scanner 3.1", True),
    ("Mozilla/5.0 (Linux; Android 12; CUBOT X30) AppleWebKit/537.36 Chrome/120.0 Mobile Safari/537.36", False),
    (IPHONE_MAIL, False),  # Apple Mail without Privacy Protection: a person
    (GMAIL_PROXY, False),  # Gmail fetches images when the person opens the message
    (OUTLOOK, False),
    ("", False), (None, False),  # nothing known: the delay rule decides
])
def test_machine_user_agents(agent, machine):
    assert opens_and_clicks.is_machine_user_agent(agent) is machine


def a_delivery(sent_seconds_ago, delivered_seconds_ago=None):
    now = timezone.now()
    return DeliveryLogFactory(
        recipient__campaign=CampaignFactory(status="completed", started_at=now), status="sent",
        sent_at=now - dt.timedelta(seconds=sent_seconds_ago),
        delivered_at=None if delivered_seconds_ago is None else now - dt.timedelta(seconds=delivered_seconds_ago))


def opened(delivery):
    delivery.refresh_from_db()
    campaign = Campaign.objects.get(pk=delivery.campaign_id)
    return (bool(delivery.opened_at), bool(delivery.machine_opened_at),
            campaign.opened_count, campaign.machine_opened_count)


@pytest.mark.django_db
def test_an_open_within_machine_open_seconds_of_sending_is_a_machines(settings):
    settings.MACHINE_OPEN_SECONDS = 5
    delivery = a_delivery(sent_seconds_ago=2)
    opens_and_clicks.record_open(delivery.pk, IPHONE_MAIL)
    assert opened(delivery) == (False, True, 0, 1)


@pytest.mark.django_db
def test_an_open_after_machine_open_seconds_is_a_persons(settings):
    settings.MACHINE_OPEN_SECONDS = 5
    delivery = a_delivery(sent_seconds_ago=60)
    opens_and_clicks.record_open(delivery.pk, IPHONE_MAIL)
    assert opened(delivery) == (True, False, 1, 0)


@pytest.mark.django_db
def test_the_delay_counts_from_delivery_when_the_provider_reports_it(settings):
    settings.MACHINE_OPEN_SECONDS = 5
    delivery = a_delivery(sent_seconds_ago=600, delivered_seconds_ago=1)  # slow to arrive, opened at once
    opens_and_clicks.record_open(delivery.pk, IPHONE_MAIL)
    assert opened(delivery) == (False, True, 0, 1)


@pytest.mark.django_db
def test_machine_open_seconds_zero_turns_the_delay_rule_off(settings):
    settings.MACHINE_OPEN_SECONDS = 0
    delivery = a_delivery(sent_seconds_ago=0)
    opens_and_clicks.record_open(delivery.pk, IPHONE_MAIL, at=time.time() - 60)  # even one dated before sending
    assert opened(delivery) == (True, False, 1, 0)


@pytest.mark.django_db
def test_a_machine_open_then_a_persons_open_count_once_each():
    delivery = a_delivery(sent_seconds_ago=3600)
    for agent in (APPLE_MPP, APPLE_MPP, IPHONE_MAIL, IPHONE_MAIL):
        opens_and_clicks.record_open(delivery.pk, agent)
    assert opened(delivery) == (True, True, 1, 1)


@pytest.mark.django_db
def test_counters_equal_the_rows_they_count():
    campaign, ids = make_engaged_campaign()
    # More of the same, again and on other hours: repeats change nothing, a new first click counts once.
    later = time.time() + 7200
    opens_and_clicks.record_open(ids["r0"], IPHONE_MAIL, at=later)
    opens_and_clicks.record_click(ids["r0"], LINK_A, at=later)
    opens_and_clicks.record_click(ids["r0"], LINK_B, at=later)  # r0's first click on B: B has two clickers
    opens_and_clicks.record_click(ids["r4"], LINK_B, at=later)

    campaign.refresh_from_db()
    logs = DeliveryLog.objects.filter(campaign=campaign)
    hours = EngagementHour.objects.filter(campaign=campaign).aggregate(o=Sum("opens"), m=Sum("machine_opens"),
                                                                      c=Sum("clicks"))
    # A click is a person's open where none was seen (issue 25, item 7): r3 and r4 count as opened.
    assert campaign.opened_count == logs.filter(opened_at__isnull=False).count() == hours["o"] == 5
    assert campaign.machine_opened_count == logs.filter(machine_opened_at__isnull=False).count() == hours["m"] == 1
    assert campaign.clicked_count == logs.filter(clicked_at__isnull=False).count() == hours["c"] == 3
    clicks = dict(LinkClick.objects.filter(link__campaign=campaign).values("link__url").annotate(n=Count("id"))
                  .values_list("link__url", "n"))
    links = dict(CampaignLink.objects.filter(campaign=campaign).values_list("url", "clickers"))
    assert links == clicks == {LINK_A: 1, LINK_B: 3}
    assert EngagementHour.objects.filter(campaign=campaign).count() == 2  # now, and two hours later
