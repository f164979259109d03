"""The preflight page (campaigns/admin/preflight.py): start, progress, findings, permissions."""

import pytest
from django.urls import reverse

from campaigns.message import preflight
from campaigns.models import Campaign, PreflightRun
from tests.admin.conftest import add_recipients


def page_url(campaign):
    return reverse("admin:campaigns_campaign_preflight", args=[campaign.pk])


@pytest.fixture
def audience(campaign):
    Campaign.objects.filter(pk=campaign.pk).update(
        html_body='<p>{{ city }}</p><a href="https://shop.example/?a=<b>">Shop</a> '
                  '<a href="{{ unsubscribe_url }}">U</a>')
    campaign.refresh_from_db()
    add_recipients(campaign, 2, data={"city": ""})
    return campaign


def test_starting_a_run_queues_it_and_shows_its_progress(staff_client, audience, django_capture_on_commit_callbacks):
    assert "No preflight has run" in staff_client.get(page_url(audience)).content.decode()
    with django_capture_on_commit_callbacks() as callbacks:
        response = staff_client.post(page_url(audience))
    run = PreflightRun.objects.get(campaign=audience)
    assert len(callbacks) == 1  # the task, sent once the run is committed
    assert response.url == reverse("admin:campaigns_campaign_preflight_run", args=[audience.pk, run.pk])
    page = staff_client.get(response.url).content.decode()
    assert 'id="preflight-progress"' in page and "0 of 2 recipients rendered" in page
    status = staff_client.get(reverse("admin:campaigns_campaign_preflight_status_json", args=[run.pk])).json()
    assert (status["finished"], status["rows_total"]) == (False, 2)


@pytest.mark.parametrize("status", ["queued", "running"])
def test_a_second_preflight_while_one_is_queued_or_running_gives_the_same_run(
        staff_client, audience, status, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as first_queued:
        first = staff_client.post(page_url(audience))
    PreflightRun.objects.update(status=status)
    with django_capture_on_commit_callbacks() as second_queued:
        second = staff_client.post(page_url(audience))
    assert second.url == first.url and PreflightRun.objects.count() == 1
    assert (len(first_queued), len(second_queued)) == (1, 0)
    PreflightRun.objects.update(status="succeeded")  # once it finished, staff may run another
    assert staff_client.post(page_url(audience)).url != first.url and PreflightRun.objects.count() == 2


def test_the_findings_are_shown_escaped(staff_client, audience):
    run = PreflightRun.objects.create(campaign=audience, rows_total=2)
    preflight.run_preflight(run.pk)
    page = staff_client.get(page_url(audience)).content.decode()
    assert "2 recipients have no value for {{ city }}" in page
    assert "For example: r0000@example.com, r0001@example.com." in page
    assert "<code>https://shop.example/?a=&lt;b&gt;</code>" in page
    assert "Errors: 0" in page
    change = staff_client.get(reverse("admin:campaigns_campaign_change", args=[audience.pk])).content.decode()
    assert "Preflight: <strong>0 errors</strong>, 2 warnings." in " ".join(change.split())  # city, sender


def test_a_viewer_sees_counts_but_cannot_start_or_see_addresses(viewer_client, audience, django_user_model):
    run = PreflightRun.objects.create(campaign=audience, rows_total=2)
    preflight.run_preflight(run.pk)
    viewer = django_user_model.objects.get(pk=viewer_client.session["_auth_user_id"])
    viewer.user_permissions.remove(*viewer.user_permissions.filter(codename="view_recipient"))
    page = viewer_client.get(page_url(audience)).content.decode()
    assert "2 recipients have no value" in page and "r0000@example.com" not in page
    assert 'id="preflight-start"' not in page
    assert viewer_client.post(page_url(audience)).status_code == 403
    assert PreflightRun.objects.filter(campaign=audience).count() == 1


def test_a_started_campaign_is_not_preflighted(staff_client, audience):
    Campaign.objects.filter(pk=audience.pk).update(status="in_progress")
    assert staff_client.post(page_url(audience)).status_code == 403


def test_the_send_now_confirmation_shows_the_preflight(staff_client, audience):
    Campaign.objects.filter(pk=audience.pk).update(html_body="<p>{{ nickname }}</p>")
    run = PreflightRun.objects.create(campaign=audience, rows_total=2)
    preflight.run_preflight(run.pk)
    page = staff_client.post(reverse("admin:campaigns_campaign_action", args=[audience.pk, "send_now"]))
    text = " ".join(page.content.decode().split())
    assert "Preflight: <strong>1 error</strong>" in text
    assert "Unknown merge tag {{ nickname }}" in text
