"""Preflight (campaigns.message.preflight): its findings on campaigns whose problems are known, in chunks, and as
a task run by a real worker on the imports queue."""

import json
import time
from datetime import timedelta

import pytest

from campaigns.audience import segments
from campaigns.deliverability import dkim
from campaigns.message import preflight
from campaigns.models import Campaign, CampaignVariant, PreflightRun, Recipient, Suppression
from tests.support.factories import CampaignFactory, SendingAccountFactory, pool_of

HTML = ('<html><body><p>Hi {{ first_name }} from {{ city }}, {{ bio|default:"-" }}</p>'
        '<p><a href="https://example.com/a?x=1&amp;y=2">A</a> <a href="https://example.com/b">B</a> '
        '<a href="https://example.com/a?x=1&amp;y=2">A again</a> <a href="mailto:help@example.com">help</a> '
        '<a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>')


@pytest.fixture
def campaign(db, settings):
    settings.SENDGRID_API_KEY = ""
    settings.EMAIL_HOST = "127.0.0.1"
    settings.SMTP_RATE_LIMIT_PER_SEC = 2
    settings.ALLOWED_FROM_DOMAINS = []
    campaign = CampaignFactory(subject="News for {{ first_name|default:'you' }}", html_body=HTML,
                               text_body="Hi {{ first_name }}", from_email="Acme <news@acme.example>",
                               track_engagement=False)
    people = [
        ("a@example.com", "Ana", {"city": "Lisbon"}),
        ("b@example.com", "", {"city": "Porto"}),  # no first name
        ("c@example.com", "Cy", {"city": "  "}),  # blank city
        ("d@example.com", "", {"city": "Paris", "bio": "x" * (103 * 1024)}),  # over Gmail's clip
        ("e@example.com", "Ed", {"city": "Rome"}),  # suppressed
        ("f@example.com", "Fay", {}),  # no city at all
    ]
    Recipient.objects.bulk_create(Recipient(campaign=campaign, email=e, first_name=f, data=d) for e, f, d in people)
    Campaign.objects.filter(pk=campaign.pk).update(total_recipients=len(people))
    Suppression.objects.create(email="e@example.com", reason="bounced")
    campaign.refresh_from_db()
    return campaign


def by_code(findings):
    return {finding["code"]: finding for finding in findings}


def test_findings_of_a_campaign_with_known_problems(campaign):
    report = preflight.preflight(campaign)
    assert report["errors"] == []
    warnings = by_code(report["warnings"])
    assert set(warnings) == {"missing_value", "gmail_clip", "text_unsubscribe", "sender_unchecked"}
    missing = {w["tag"]: (w["count"], w["examples"]) for w in report["warnings"] if w["code"] == "missing_value"}
    # The suppressed recipient is not counted: it is not sent.
    assert missing == {"city": (2, ["c@example.com", "f@example.com"]),
                       "first_name": (2, ["b@example.com", "d@example.com"])}
    assert warnings["gmail_clip"]["count"] == 1
    figures = report["figures"]
    assert (figures["recipients"], figures["audience"], figures["rendered"], figures["suppressed"]) == (6, 6, 5, 1)
    assert figures["largest_html_example"] == "d@example.com"
    assert figures["largest_html_bytes"] > preflight.GMAIL_CLIP_BYTES
    assert figures["estimate"]["seconds"] == 3  # 5 to send at 2 a second
    assert figures["estimate"]["provider"] == "this server's SMTP relay"
    assert "About 3 s through this server's SMTP relay if sent now" in figures["estimate"]["text"]
    assert [link["href"] for link in report["links"]] == [
        "https://example.com/a?x=1&y=2", "https://example.com/b", "mailto:help@example.com", "{{ unsubscribe_url }}"]
    assert by_code(report["notes"])["suppressed"]["count"] == 1
    assert report["sender"]["domain"] == "acme.example"
    assert any("_dmarc.acme.example" in step for step in report["sender"]["steps"])
    # It sends over SMTP: no SendGrid steps, and nothing meant for whoever runs the server.
    assert not any("SendGrid" in step for step in report["sender"]["steps"])
    assert not [text for text in json.dumps(report).split('"') if "docs/" in text or "EMAIL_HOST" in text
                or "ALLOWED_FROM_DOMAINS" in text]


def test_blocking_errors_are_kept_apart(campaign, settings):
    settings.ALLOWED_FROM_DOMAINS = ["other.example"]
    Campaign.objects.filter(pk=campaign.pk).update(html_body="<p>Hi {{ nickname }}</p>", text_body="")
    campaign.refresh_from_db()
    report = preflight.preflight(campaign)
    errors = by_code(report["errors"])
    assert set(errors) == {"merge_tags", "sender"}
    assert "Unknown merge tag {{ nickname }}" in errors["merge_tags"]["message"]
    assert "must be one of: other.example" in errors["sender"]["message"]
    assert "rendered" not in report["figures"]  # nothing to render with a template that does not compile


def test_missing_unsubscribe_link_and_empty_text_are_errors(campaign):
    Campaign.objects.filter(pk=campaign.pk).update(html_body="<p></p>", text_body="")
    campaign.refresh_from_db()
    assert set(by_code(preflight.preflight(campaign)["errors"])) == {"unsubscribe", "text_empty"}


def test_an_audience_matching_nobody_is_an_error(campaign):
    segments.save_segment(campaign.pk, {"match": "all", "conditions": [
        {"column": "city", "operator": "equals", "value": "Madrid"}]})
    campaign.refresh_from_db()
    report = preflight.preflight(campaign)
    assert [e["code"] for e in report["errors"]] == ["empty_segment"]


def test_only_the_segment_is_rendered_in_chunks_with_progress(campaign, monkeypatch):
    monkeypatch.setattr(preflight, "CHUNK", 2)
    segments.save_segment(campaign.pk, {"match": "any", "conditions": [
        {"column": "city", "operator": "in", "value": ["lisbon", "porto", "rome"]},
        {"column": "city", "operator": "empty", "value": None}]})
    campaign.refresh_from_db()
    progress, totals = [], []
    report = preflight.preflight(campaign, progress.append, totals.append)
    assert (totals, progress) == ([5], [2, 4, 5])
    assert (report["figures"]["audience"], report["figures"]["rendered"], report["figures"]["suppressed"]) == (5, 4, 1)
    missing = {w["tag"]: w["examples"] for w in report["warnings"] if w["code"] == "missing_value"}
    assert missing == {"city": ["c@example.com", "f@example.com"], "first_name": ["b@example.com"]}


def test_tracking_links_count_in_the_size(campaign):
    without = preflight.preflight(campaign)["figures"]["largest_html_bytes"]
    Campaign.objects.filter(pk=campaign.pk).update(track_engagement=True)
    campaign.refresh_from_db()
    report = preflight.preflight(campaign)
    assert report["figures"]["largest_html_bytes"] > without
    assert [link["tracked"] for link in report["links"]] == [True, True, False, False]


def test_no_rate_limit_gives_no_estimate(campaign, settings):
    settings.SMTP_RATE_LIMIT_PER_SEC = 0
    estimate = preflight.preflight(campaign)["figures"]["estimate"]
    assert estimate["seconds"] is None
    assert estimate["text"] == ("No estimate: no sending limit is set for this server's SMTP relay, so the time "
                                "depends on the servers and the sending workers.")


def test_a_run_happens_once(campaign):
    segments.save_segment(campaign.pk, {"match": "all", "conditions": [
        {"column": "city", "operator": "not_empty", "value": None}]})  # 4 of 6: c and f have no city
    campaign.refresh_from_db()
    run = PreflightRun.objects.create(campaign=campaign, rows_total=6, campaign_updated_at=campaign.updated_at)
    assert preflight.run_preflight(run.pk) == {"errors": 0, "warnings": 4}  # first_name missing for b and d
    assert preflight.run_preflight(run.pk) is None  # a redelivery does nothing
    run.refresh_from_db()
    assert (run.status, run.rows_done, run.rows_total) == ("succeeded", 4, 4)
    assert preflight.is_current(run, campaign)
    campaign.save()  # any edit moves updated_at
    assert not preflight.is_current(run, campaign)


@pytest.mark.slow
def test_the_task_runs_on_the_imports_worker(start_worker, transactional_db, settings):
    settings.SENDGRID_API_KEY = ""
    campaign = CampaignFactory(html_body=HTML, text_body="")
    Recipient.objects.bulk_create(Recipient(campaign=campaign, email=f"p{i}@example.com", first_name="P",
                                            data={"city": "Lisbon", "bio": ""}) for i in range(30))
    start_worker(["imports"], concurrency=1)
    run = preflight.start_preflight(campaign)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.status in ("succeeded", "failed"):
            break
        time.sleep(0.2)
    assert (run.status, run.error) == ("succeeded", "")
    assert run.report["errors"] == []
    assert run.report["figures"]["rendered"] == 30
    assert run.rows_done == 30


def test_an_ab_tests_variants_are_checked_like_the_campaigns_own_content(campaign):
    Campaign.objects.filter(pk=campaign.pk).update(ab_test_percent=20)
    campaign.refresh_from_db()
    CampaignVariant.objects.create(campaign=campaign, letter="A", subject="Hello {{ city }}")
    CampaignVariant.objects.create(campaign=campaign, letter="B", subject="{{ first_name|upper }}",
                                   html_body="<p>No way out</p>")
    errors = [f for f in preflight.preflight(campaign)["errors"] if f["code"] == "variant_content"]
    assert [(f["variant"], f["field"]) for f in errors] == [("B", "subject"), ("B", "html_body")]
    assert 'the filter "upper" is not supported' in errors[0]["message"]
    assert "unsubscribe link" in errors[1]["message"]


def test_a_campaign_of_the_default_pool_is_not_looked_up_and_says_so(campaign):
    report = preflight.preflight(campaign)
    assert "dns_unchecked" in by_code(report["notes"]) and report["sender"]["dns"] == []


def test_the_dns_of_each_pool_account_that_may_send_the_from_domain_is_checked(campaign, dns_server):
    """SPF not authorising the relay and a DKIM key not published block; a missing DMARC policy and
    MX only warn. An account that may not send the From domain is not checked."""
    relay = SendingAccountFactory(name="acme-relay", host="203.0.113.25", from_domains="acme.example",
                                  dkim_domain="acme.example", dkim_selector="s1")
    dkim.generate_key(relay)
    other = SendingAccountFactory(name="other-relay", host="198.51.100.1", from_domains="other.example")
    campaign.pool = pool_of(relay, other)
    campaign.save()
    dns_server.txt("acme.example", "v=spf1 ip4:192.0.2.1 -all")

    report = preflight.preflight(campaign)

    errors, warnings = by_code(report["errors"]), by_code(report["warnings"])
    assert set(errors) == {"dns_spf", "dns_dkim"}
    assert errors["dns_spf"]["message"].startswith("acme-relay: ")
    assert errors["dns_spf"]["record"] == 'acme.example. TXT "v=spf1 ip4:192.0.2.1 ip4:203.0.113.25 -all"'
    assert errors["dns_dkim"]["record"].startswith('s1._domainkey.acme.example. TXT "v=DKIM1; k=rsa; p=')
    assert {"dns_dmarc", "dns_mx"} <= set(warnings)
    assert {row["account"] for row in report["sender"]["dns"]} == {"acme-relay"}

    dns_server.clear()
    dns_server.txt("acme.example", "v=spf1 ip4:203.0.113.0/24 -all")
    dns_server.txt("s1._domainkey.acme.example", dkim.record_value(relay.dkim_private_key))
    dns_server.txt("_dmarc.acme.example", "v=DMARC1; p=reject")
    dns_server.add("acme.example. 300 IN MX 10 mx.acme.example.")
    report = preflight.preflight(campaign)
    assert not [f for f in report["errors"] + report["warnings"] if f["code"].startswith("dns_")]


def test_seconds_to_send_keeps_every_limit_of_every_account():
    assert preflight.seconds_to_send(0, []) == 0
    assert preflight.seconds_to_send(5, []) is None  # no account
    assert preflight.seconds_to_send(5, [{1: 20}, {}]) is None  # one account without limits
    assert preflight.seconds_to_send(100, [{1: 20}]) == 5
    assert preflight.seconds_to_send(100, [{1: 20}, {1: 5}]) == 4  # 25 a second together
    assert preflight.seconds_to_send(100, [{1: 20, 3600: 50}]) == 3601  # 50 now, 50 in the next hour
    assert preflight.seconds_to_send(30, [{60: 30}]) == 1


@pytest.fixture
def on_a_pool(campaign, dns_server):
    """The campaign on a pool of two SMTP accounts (20 and 5 a second, the second also 1,000 an hour), an
    A/B test of 40 % with two variants, B with its own content."""
    relays = [SendingAccountFactory(name="relay-1", per_second=20),
              SendingAccountFactory(name="relay-2", per_second=5, per_hour=1000),
              SendingAccountFactory(name="relay-off", enabled=False)]
    Campaign.objects.filter(pk=campaign.pk).update(pool=pool_of(*relays, name="EU relays"), ab_test_percent=40,
                                                   ab_wait=timedelta(hours=2))
    CampaignVariant.objects.create(campaign=campaign, letter="A", subject="Spring is here, {{ first_name|default:'you' }}")
    CampaignVariant.objects.create(campaign=campaign, letter="B", subject="Your spring discount", from_name="Ana",
                                   html_body='<p>{{ nickname }}</p><a href="{{ unsubscribe_url }}">U</a>')
    campaign.refresh_from_db()
    return campaign


def test_a_pools_estimate_and_an_ab_tests_plan(on_a_pool):
    report = preflight.preflight(on_a_pool)
    figures = report["figures"]
    estimate = figures["estimate"]
    # 5 to send: 2 to test (40 %), then 2 hours, then 3; 25 a second together: a second each.
    assert estimate["seconds"] == 1 + 7200 + 1
    assert estimate["provider"] == ("the pool “EU relays” (relay-1: 20 a second; relay-2: 5 a second, "
                                    "1,000 an hour)")
    assert estimate["text"].startswith(
        "About 1 s to send the test to 2, the A/B wait of 2 h, then about 1 s to send the winner to the other 3, "
        "through the pool “EU relays”")
    ab = figures["ab_test"]
    assert ab["text"] == ("A/B test: 40 % of the audience (2 of 5 recipients) get one of 2 variants (A: 1, B: 1); "
                          "after 2 h the variant with the most opens by people (machine opens left out) goes to "
                          "the other 3.")
    assert [(v["letter"], v["own_content"], v["rendered"], v["unsubscribe"]) for v in ab["variants"]] == [
        ("A", False, 5, True), ("B", True, 5, True)]
    # Variant B's own tag is checked for every recipient too (nobody has a nickname).
    missing = {w["tag"]: w["count"] for w in report["warnings"] if w["code"] == "missing_value"}
    assert missing["nickname"] == 5
    steps = " ".join(report["sender"]["steps"])
    assert "SendGrid" not in steps and "your SMTP server" in steps


def test_a_pool_of_sendgrid_accounts_gets_the_sendgrid_steps_and_no_estimate_without_limits(on_a_pool):
    from campaigns.models import SendingAccount

    SendingAccount.objects.filter(name="relay-1").update(kind="sendgrid", per_second=0)
    report = preflight.preflight(on_a_pool)
    assert report["figures"]["estimate"]["text"].startswith(
        "No estimate: an account of the pool “EU relays” (relay-1: no limit; relay-2: 5 a second, 1,000 an hour) "
        "has no sending limit")
    assert "the A/B wait of 2 h comes on top" in report["figures"]["estimate"]["text"]
    steps = " ".join(report["sender"]["steps"])
    assert "in SendGrid, Settings → Sender Authentication" in steps and "your SMTP server" in steps


def test_an_ab_test_with_one_variant_is_an_error(campaign):
    Campaign.objects.filter(pk=campaign.pk).update(ab_test_percent=20)
    campaign.refresh_from_db()
    CampaignVariant.objects.create(campaign=campaign, letter="A", subject="Only one")
    errors = by_code(preflight.preflight(campaign)["errors"])
    assert errors["variant_count"]["message"] == ("The A/B test share is 20 % but the campaign has 1 variant: add two "
                                                  "to four, or set the share to 0.")
