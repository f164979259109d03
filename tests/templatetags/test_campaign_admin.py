"""The admin index's campaign overview (campaigns/templatetags/campaign_admin.py)."""

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.admin.conftest import add_logs
from tests.support.factories import CampaignFactory


@pytest.mark.django_db
def test_index_overview(admin_client):
    now = timezone.now()
    live = CampaignFactory(name="Live one", status="in_progress", started_at=now - dt.timedelta(days=2),
                           sent_count=8, failed_count=2)
    add_logs(live, ["sent"] * 3, sent_at=now - dt.timedelta(minutes=5))
    add_logs(live, ["sent"] * 5, sent_at=now - dt.timedelta(days=2))
    CampaignFactory.create_batch(2, status="draft")
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert 'id="overview-sent-week">8<' in page
    sent_today = int(page.split('id="overview-sent-today">')[1].split("<")[0])
    assert sent_today in (3, 8) and (sent_today == 8) == (timezone.localtime(now - dt.timedelta(days=2)).date()
                                                          == timezone.localdate())
    assert 'id="overview-failure-rate">20.0%' in page
    by_status = page.split('id="overview-by-status">')[1].split("</tbody>")[0]
    assert "Draft</span></a></th><td>2<" in by_status and "In progress</span></a></th><td>1<" in by_status
    assert "Live one" in page.split('id="overview-recent">')[1]


def test_counts_are_written_with_thousands_separators():
    from campaigns.templatetags.campaign_admin import get_item, thousands

    assert [thousands(v) for v in (49200, 7, 0, None, "—", True)] == ["49,200", "7", "0", None, "—", True]
    assert (get_item({3: "x"}, 3), get_item(None, 3)) == ("x", None)
