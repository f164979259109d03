"""Issue 13, item 11: a Content-Security-Policy on admin and public pages, and pages that need no
inline script or style beyond the nonced ones (the browser journey in tests/browser/ fails on any
violation the policy reports)."""

import re

import pytest
from django.urls import reverse

from campaigns.message import signed_links
from campaigns.models import DeliveryLog
from tests.admin.conftest import add_logs, add_recipients
from tests.support.factories import CampaignFactory, DeliveryLogFactory, UserFactory

pytestmark = pytest.mark.django_db
EMAIL_HTML = '<html><head><style>p{color:red}</style></head><body><p style="margin:0">Hi {{ first_name }}</p></body></html>'


def policy(response):
    header = response["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in header.split("; ")}


def assert_no_inline_code_without_the_nonce(response):
    page = response.content.decode()
    nonce = re.search(r"'nonce-([^']+)'", response["Content-Security-Policy"])
    for tag in re.findall(r"<(?:script|style)\b[^>]*>", page):
        if "src=" in tag or "application/json" in tag:
            continue
        assert nonce and f'nonce="{nonce.group(1)}"' in tag, f"inline code without the nonce: {tag}"
    # Attributes only, not text: srcdoc holds the (escaped) email HTML, whose styles are its own.
    assert not re.findall(r"<[^>]*\s(?:style|on[a-z]+)=\"", page), "inline style or event handler"


@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(is_superuser=True))
    return client


def test_admin_pages_allow_only_their_own_scripts_and_styles(staff_client):
    campaign = CampaignFactory(html_body=EMAIL_HTML)
    add_logs(campaign, ["sent", "failed"])
    pages = [reverse("admin:index"), reverse("admin:campaigns_campaign_changelist"),
             reverse("admin:campaigns_deliverylog_changelist"), reverse("admin:campaigns_suppression_changelist"),
             reverse("admin:campaigns_suppression_import"), reverse("admin:campaigns_campaign_import", args=[campaign.pk])]
    for url in pages:
        response = staff_client.get(url)
        assert response.status_code == 200, url
        directives = policy(response)
        assert directives["default-src"] == ["'self'"]
        assert directives["script-src"][0] == "'self'" and "'unsafe-inline'" not in directives["script-src"]
        assert "'unsafe-inline'" not in directives["style-src"]
        assert directives["object-src"] == directives["base-uri"] == directives["frame-ancestors"] == ["'none'"]
        assert_no_inline_code_without_the_nonce(response)


def test_admin_pages_showing_email_html_keep_the_strict_policy(staff_client):
    """Issue 22 item 11: the relaxed policy the email HTML needs covers its frame, not the admin page."""
    campaign = CampaignFactory(html_body=EMAIL_HTML)
    add_recipients(campaign, 1)
    for url in (reverse("admin:campaigns_campaign_change", args=[campaign.pk]),
                reverse("admin:campaigns_campaign_preview", args=[campaign.pk]),
                reverse("admin:campaigns_campaign_add")):
        response = staff_client.get(url)
        assert response.status_code == 200, url
        directives = policy(response)
        assert "'unsafe-inline'" not in directives["style-src"], url
        assert directives["img-src"] == ["'self'", "data:"], url
        assert "'unsafe-inline'" not in directives["script-src"]
        assert directives["frame-ancestors"] == ["'none'"] and response["X-Frame-Options"] == "DENY"
        assert "srcdoc" not in response.content.decode()  # a srcdoc frame would run under this policy
        assert_no_inline_code_without_the_nonce(response)


def test_only_the_preview_frames_allow_email_html_sandboxed_and_framed_by_this_site_alone(staff_client):
    campaign = CampaignFactory(html_body=EMAIL_HTML)
    add_recipients(campaign, 1)
    frames = (staff_client.get(reverse("admin:campaigns_campaign_preview_frame", args=[campaign.pk])),
              staff_client.post(reverse("admin:campaigns_campaign_live_preview_frame"), {"html_body": EMAIL_HTML}))
    for response in frames:
        assert response.status_code == 200
        directives = policy(response)
        assert directives["sandbox"] == []  # no scripts, no forms, an origin of its own
        assert directives["default-src"] == directives["script-src"] == directives["form-action"] == ["'none'"]
        assert directives["style-src"] == ["'unsafe-inline'"]
        assert directives["img-src"] == ["'self'", "data:", "https:"]
        assert directives["frame-ancestors"] == ["'self'"] and response["X-Frame-Options"] == "SAMEORIGIN"
    assert '<p style="margin:0">Hi First0</p>' in frames[0].content.decode()
    assert frames[1].content.decode() == EMAIL_HTML  # the live preview: merge tags as written


def test_the_admin_login_page_has_the_policy(client):
    response = client.get(reverse("admin:login"))
    assert "'unsafe-inline'" not in response["Content-Security-Policy"]
    assert_no_inline_code_without_the_nonce(response)


def test_public_pages_style_themselves_only_with_the_nonce(client):
    delivery = DeliveryLogFactory(recipient__campaign=CampaignFactory(), status=DeliveryLog.Status.SENT)
    for response in (client.get(f"/u/{signed_links.unsubscribe_token(delivery.pk)}/"), client.get("/u/forged/")):
        assert response.status_code in (200, 404)
        nonce = re.search(r"'nonce-([^']+)'", " ".join(policy(response)["style-src"])).group(1)
        assert f'<style nonce="{nonce}">' in response.content.decode()
        assert_no_inline_code_without_the_nonce(response)
    # Each answer has its own nonce.
    assert policy(client.get("/u/forged/"))["style-src"] != policy(client.get("/u/forged/"))["style-src"]
