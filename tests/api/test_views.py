"""Issue 23, item 1: the API's operations do what the admin's do. The whole flow on real workers and the
local SMTP sink (create, import, preflight, send, poll stats, export), then each part on its own."""

import csv
import io

import openpyxl
import pytest

from campaigns.models import Campaign, Recipient, SendingAccount, Suppression
from tests.admin.conftest import add_logs, add_recipients
from tests.audience.importing.conftest import media_root  # noqa: F401  (autouse: a temporary MEDIA_ROOT)
from tests.sending.test_pipeline import wait_for
from tests.support.factories import CampaignFactory

HTML = '<p>Hi {{ first_name }}</p><a href="{{ unsubscribe_url }}">Unsubscribe</a>'


def finished(client, import_id):
    body = client.get(f"/api/v1/imports/{import_id}/").json()
    return body if body["status"] in ("succeeded", "failed") else None


@pytest.mark.slow
def test_the_whole_flow_create_import_preflight_send_poll_export(api_client, start_worker, smtp_sink_server,
                                                                 media_root):
    start_worker(["imports"], concurrency=1, MEDIA_ROOT=str(media_root), wait=False)
    start_worker(["scheduler", "senders"], concurrency=2)
    created = api_client.post("/api/v1/campaigns/", {"name": "Spring", "subject": "Hello {{ first_name }}",
                                                     "html_body": HTML, "from_email": "news@example.com"})
    assert created.status_code == 201, created.content
    campaign_id = created.json()["id"]

    body = "email,first_name,city\nana@example.com,Ana,Lisbon\nbob@example.com,Bob,Porto\nnot-an-address,X,Y\n"
    imported = api_client.post(f"/api/v1/campaigns/{campaign_id}/recipients/", body, content_type="text/csv")
    assert imported.status_code == 202, imported.content
    report = wait_for(lambda: finished(api_client, imported.json()["id"]), timeout=60)
    assert (report["status"], report["imported"], report["invalid"]) == ("succeeded", 2, 1)
    rejected = api_client.get(report["rejected_rows"])
    assert rejected.status_code == 200 and "not-an-address" in b"".join(rejected.streaming_content).decode()

    started = api_client.post(f"/api/v1/campaigns/{campaign_id}/preflight/")
    assert started.status_code == 202
    run = wait_for(lambda: (lambda r: r if r["status"] in ("succeeded", "failed") else None)(
        api_client.get(f"/api/v1/campaigns/{campaign_id}/preflight/").json()), timeout=60)
    assert run["status"] == "succeeded" and run["report"]["errors"] == []

    sent = api_client.post(f"/api/v1/campaigns/{campaign_id}/send-now/")
    assert sent.status_code == 200, sent.content
    stats = wait_for(lambda: (lambda s: s if s["status"] == "completed" else None)(
        api_client.get(f"/api/v1/campaigns/{campaign_id}/stats/").json()), timeout=120)
    assert (stats["total"], stats["sent"], stats["failed"], stats["delivery_rate"]) == (2, 2, 0, 100.0)
    # The campaign's mail; the completion report to whoever sent it may arrive too (it is no recipient's).
    campaign_mail = [to for to in smtp_sink_server.recipients() if to != api_client.user.email]
    assert sorted(campaign_mail) == ["ana@example.com", "bob@example.com"]

    export = api_client.get(f"/api/v1/campaigns/{campaign_id}/delivery-logs/", HTTP_ACCEPT="text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert export["Content-Type"].startswith("text/csv")
    assert sorted((r["email"], r["status"]) for r in rows) == [("ana@example.com", "sent"), ("bob@example.com", "sent")]


@pytest.mark.slow
def test_json_rows_and_xlsx_bodies_run_the_same_import(api_client, start_worker, media_root):
    start_worker(["imports"], concurrency=1, MEDIA_ROOT=str(media_root), wait=False)
    campaign = CampaignFactory()
    rows = api_client.post(f"/api/v1/campaigns/{campaign.pk}/recipients/",
                           {"rows": [{"email": "Ana@Example.com", "first_name": "Ana", "plan": "gold"},
                                     {"email": "ana@example.com"}, {"email": "=bad"}]})
    assert rows.status_code == 202
    report = wait_for(lambda: finished(api_client, rows.json()["id"]), timeout=60)
    assert (report["imported"], report["duplicates_in_file"], report["invalid"]) == (1, 1, 1)
    assert Recipient.objects.get(campaign=campaign).data == {"plan": "gold"}

    workbook = openpyxl.Workbook()
    workbook.active.append(["Email", "First name"])
    workbook.active.append(["carla@example.com", "Carla"])
    data = io.BytesIO()
    workbook.save(data)
    xlsx = api_client.post(f"/api/v1/campaigns/{campaign.pk}/recipients/", data.getvalue(),
                           content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    assert xlsx.status_code == 202
    assert wait_for(lambda: finished(api_client, xlsx.json()["id"]), timeout=60)["imported"] == 1
    assert Recipient.objects.filter(campaign=campaign).count() == 2


def test_recipients_cannot_be_added_once_sending_started(api_client):
    campaign = CampaignFactory(status="in_progress")
    response = api_client.post(f"/api/v1/campaigns/{campaign.pk}/recipients/", {"rows": [{"email": "a@example.com"}]})
    assert response.status_code == 409
    assert not campaign.imports.exists()


def test_campaigns_are_listed_filtered_and_searched(api_client):
    CampaignFactory(name="Spring sale", status="draft")
    CampaignFactory(name="Autumn sale", status="completed")
    CampaignFactory(name="Newsletter", status="draft")
    names = lambda query: sorted(c["name"] for c in api_client.get(f"/api/v1/campaigns/{query}").json()["results"])
    assert names("?status=draft") == ["Newsletter", "Spring sale"]
    assert names("?search=sale") == ["Autumn sale", "Spring sale"]
    assert names("?search=sale&status=completed") == ["Autumn sale"]


def test_recipients_and_delivery_logs_are_cursor_paginated_and_filtered(api_client):
    campaign = CampaignFactory(status="completed")
    add_logs(campaign, ["sent"] * 3 + ["failed"] * 2)
    first = api_client.get(f"/api/v1/campaigns/{campaign.pk}/recipients/?page_size=3").json()
    second = api_client.get(first["next"]).json()
    assert len(first["results"]) == 3 and len(second["results"]) == 2 and second["next"] is None
    failed = api_client.get(f"/api/v1/campaigns/{campaign.pk}/delivery-logs/?status=failed").json()["results"]
    assert [row["status"] for row in failed] == ["failed", "failed"]
    csv_failed = api_client.get(f"/api/v1/campaigns/{campaign.pk}/delivery-logs/?status=failed", HTTP_ACCEPT="text/csv")
    assert b"".join(csv_failed.streaming_content).decode().count("\n") == 3  # the header and two rows


def test_stats_hold_every_figure_of_the_campaign_page(api_client):
    campaign = CampaignFactory(status="completed")
    add_logs(campaign, ["sent"] * 8 + ["failed", "unknown"])
    Campaign.objects.filter(pk=campaign.pk).update(sent_count=8, failed_count=1, unknown_count=1, opened_count=4,
                                                   clicked_count=2, bounced_count=1, complained_count=1,
                                                   unsubscribed_count=1)
    stats = api_client.get(f"/api/v1/campaigns/{campaign.pk}/stats/").json()
    assert {k: stats[k] for k in ("status", "total", "sent", "failed", "unknown", "skipped", "opened", "clicked",
                                  "bounced", "complained", "unsubscribed", "delivery_rate")} == {
        "status": "completed", "total": 10, "sent": 8, "failed": 1, "unknown": 1, "skipped": 0, "opened": 4,
        "clicked": 2, "bounced": 1, "complained": 1, "unsubscribed": 1, "delivery_rate": 80.0}
    assert stats["rates"]["opened"] == 50.0 and stats["rates"]["clicked"] == 25.0


def test_suppressions_are_added_and_removed(api_client):
    added = api_client.post("/api/v1/suppressions/", {"email": " Gone@Example.com "})
    assert added.status_code == 201 and added.json()["email"] == "gone@example.com"
    assert api_client.post("/api/v1/suppressions/", {"email": "gone@example.com"}).status_code == 400
    assert api_client.post("/api/v1/suppressions/", {"email": "not an address"}).status_code == 400
    assert api_client.delete(f"/api/v1/suppressions/{added.json()['id']}/").status_code == 204
    assert not Suppression.objects.exists()


def test_a_sending_accounts_secret_is_written_never_read(api_client):
    made = api_client.post("/api/v1/sending-accounts/", {"name": "Gmail", "kind": "smtp", "host": "smtp.gmail.com",
                                                         "username": "me", "secret": "app-password-123"})
    assert made.status_code == 201, made.content
    assert "secret" not in made.json() and made.json()["has_secret"] is True
    assert SendingAccount.objects.get().secret == "app-password-123"
    listed = api_client.get("/api/v1/sending-accounts/")
    assert b"app-password-123" not in listed.content and b"app-password-123" not in api_client.get(
        f"/api/v1/sending-accounts/{made.json()['id']}/").content


def test_variants_change_only_while_the_campaign_is_editable(api_client):
    campaign = CampaignFactory()
    assert api_client.post(f"/api/v1/campaigns/{campaign.pk}/variants/", {"letter": "A", "subject": "A"}).status_code == 201
    assert api_client.post(f"/api/v1/campaigns/{campaign.pk}/variants/", {"letter": "A", "subject": "B"}).status_code == 400
    Campaign.objects.filter(pk=campaign.pk).update(status="in_progress")
    assert api_client.post(f"/api/v1/campaigns/{campaign.pk}/variants/", {"letter": "B", "subject": "B"}).status_code == 409
    assert [v["letter"] for v in api_client.get(f"/api/v1/campaigns/{campaign.pk}/variants/").json()] == ["A"]


def test_a_follow_up_is_made_for_a_group(api_client):
    campaign = CampaignFactory(status="completed", started_at="2026-01-01T00:00:00Z")
    add_logs(campaign, ["sent", "failed", "failed"])
    response = api_client.post(f"/api/v1/campaigns/{campaign.pk}/follow-up/", {"group": "failed"})
    assert response.status_code == 201
    assert response.json()["total_recipients"] == 2 and response.json()["status"] == "draft"
    assert api_client.post(f"/api/v1/campaigns/{campaign.pk}/follow-up/", {"group": "nope"}).status_code == 400


def test_a_test_send_takes_the_recipient_whose_data_it_uses(api_client, smtp_sink_server, no_sendgrid):
    campaign = CampaignFactory(subject="Hello {{ first_name }}")
    add_recipients(campaign, 2)
    url = f"/api/v1/campaigns/{campaign.pk}/test-send/"
    answer = api_client.post(url, {"addresses": ["qa@example.com"], "recipient": "r0001@example.com"},
                             content_type="application/json")
    assert answer.status_code == 200, answer.content
    assert answer.json()["message"] == "Test email sent to 1 of 1 addresses via smtp (the data of r0001@example.com)."
    assert [m["Subject"] for m in smtp_sink_server.messages()] == ["[TEST] Hello First1"]
    refused = api_client.post(url, {"addresses": ["qa@example.com"], "recipient": "nobody@example.com"},
                              content_type="application/json")
    assert refused.status_code >= 400 and "is not a recipient of this campaign" in refused.json()["message"]


def test_schedule_reads_its_time_and_records_who_scheduled(api_client):
    campaign = CampaignFactory()
    add_recipients(campaign, 1)
    for bad in ({}, {"at": "tomorrow"}, {"at": None}):
        assert api_client.post(f"/api/v1/campaigns/{campaign.pk}/schedule/", bad).status_code == 400
    response = api_client.post(f"/api/v1/campaigns/{campaign.pk}/schedule/", {"at": "2030-01-01T09:00:00+01:00"})
    assert response.status_code == 200 and response.json()["campaign"]["status"] == "scheduled"
    assert Campaign.objects.get(pk=campaign.pk).scheduled_by == api_client.user


def test_the_schema_and_its_pages_are_served_from_this_site(api_client):
    schema = api_client.get("/api/schema/?format=json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert "/api/v1/campaigns/{id}/send-now/" in paths and "/api/v1/campaigns/{id}/delivery-logs/" in paths
    from django.test import Client

    from tests.support.factories import UserFactory
    browser = Client()
    browser.force_login(UserFactory(is_superuser=True, username="docs-reader"))
    for page in ("/api/docs/", "/api/redoc/"):
        html = browser.get(page)
        assert html.status_code == 200
        text = html.content.decode()
        assert "https://" not in text.replace(html.wsgi_request.build_absolute_uri("/"), "")  # no CDN
        assert "/static/drf_spectacular_sidecar/" in text
        assert "unsafe-inline" not in html["Content-Security-Policy"].split("script-src")[1].split(";")[0]
    assert browser.get("/api/docs/?script=").status_code == 200
    assert Client().get("/api/docs/").status_code in (401, 403)


def test_a_markdown_body_is_written_and_read_through_the_api(api_client):
    """The API speaks the campaign form's body format: a Markdown body makes the HTML, as on the form."""
    created = api_client.post("/api/v1/campaigns/", {
        "name": "Notes", "subject": "Hello", "from_email": "news@example.com", "body_format": "markdown",
        "markdown_body": "**Sale** in {{ city }}\n\n[Unsubscribe]({{ unsubscribe_url }})"}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["body_format"] == "markdown" and "<strong>Sale</strong>" in body["html_body"]
    assert '<a href="{{ unsubscribe_url }}">Unsubscribe</a>' in body["html_body"]
    changed = api_client.patch(f"/api/v1/campaigns/{body['id']}/", {"markdown_body": "Bye\n\n[Unsubscribe]({{ "
                                                                    "unsubscribe_url }})"}, format="json")
    assert changed.status_code == 200, changed.content
    assert "<p>Bye</p>" in changed.json()["html_body"]
