"""Issue 13, item 8: link signing with its own rotating key, opaque tokens, an https SITE_URL.

Also issue 14, item 5: one keyed hash per recipient serves all its signed_links.
"""

import base64
import hashlib
import hmac
import re

import pytest
from django.core import signing
from django.test import Client

from campaigns.message import click_tracking, signed_links
from campaigns.models import DeliveryLog, Suppression
from tests.mailer_project.test_settings import PRODUCTION, load_settings
from tests.support.factories import CampaignFactory, DeliveryLogFactory

ONE_CLICK = "List-Unsubscribe=One-Click"
HTML = '<html><body><a href="https://shop.acme.test/sale">Sale</a><a href="https://acme.test/b">B</a></body></html>'


def path_of(url):
    return "/" + url.split("/", 3)[3]


def one_click(url):
    return Client(enforce_csrf_checks=True).post(path_of(url), data=ONE_CLICK,
                                                 content_type="application/x-www-form-urlencoded")


# --- SITE_URL ------------------------------------------------------------------------------------

@pytest.mark.parametrize("site_url", ["http://mail.example.com", "mail.example.com", "ftp://mail.example.com"])
def test_production_refuses_a_site_url_that_is_not_https(site_url):
    result = load_settings({**PRODUCTION, "SITE_URL": site_url})
    assert result.returncode != 0
    assert "SITE_URL must be an https:// URL in production" in result.stderr


def test_production_without_site_url_refuses_the_http_default():
    result = load_settings({k: v for k, v in PRODUCTION.items() if k != "SITE_URL"})
    assert result.returncode != 0
    assert "SITE_URL must be an https:// URL" in result.stderr


def test_production_accepts_an_https_site_url_and_development_any():
    assert load_settings({**PRODUCTION, "SITE_URL": "https://mail.example.com/"}).returncode == 0
    assert load_settings({"DEBUG": "True", "SITE_URL": "http://127.0.0.1:8000"}).returncode == 0


def test_link_signing_key_is_required_in_production_and_derived_in_development():
    missing = load_settings({k: v for k, v in PRODUCTION.items() if k != "LINK_SIGNING_KEY"})
    assert missing.returncode != 0 and "Set the LINK_SIGNING_KEY environment variable" in missing.stderr
    assert load_settings({"DEBUG": "True"}).returncode == 0


def test_blank_fallback_entries_are_dropped_so_an_empty_key_never_verifies():
    import json
    import os
    import subprocess
    import sys

    from tests.mailer_project.test_settings import ROOT
    probe = ("import json, django; django.setup(); from django.conf import settings as s; "
             "print(json.dumps([s.LINK_SIGNING_KEY_FALLBACKS, s.SECRET_KEY_FALLBACKS]))")
    env = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "mailer_project.settings", **PRODUCTION,
           "LINK_SIGNING_KEY_FALLBACKS": "old-key, , ,", "SECRET_KEY_FALLBACKS": ","}
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [["old-key"], []]


# --- Rotation ------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_an_unsubscribe_link_signed_with_the_old_key_still_works_after_rotation(settings):
    log = DeliveryLogFactory(status=DeliveryLog.Status.SENT)
    settings.LINK_SIGNING_KEY, settings.LINK_SIGNING_KEY_FALLBACKS = "old-link-key", []
    mailed = signed_links.unsubscribe_url(log.pk)

    settings.LINK_SIGNING_KEY, settings.LINK_SIGNING_KEY_FALLBACKS = "new-link-key", ["old-link-key"]
    assert signed_links.unsubscribe_url(log.pk) != mailed  # new mail gets new-key links
    response = one_click(mailed)

    assert response.status_code == 200
    assert Suppression.objects.get().email == log.email
    assert DeliveryLog.objects.get(pk=log.pk).unsubscribed_at is not None


@pytest.mark.django_db
def test_a_link_signed_with_a_key_in_neither_setting_is_refused_and_changes_nothing(settings):
    log = DeliveryLogFactory(recipient__campaign=CampaignFactory(html_body=HTML), status=DeliveryLog.Status.SENT)
    settings.LINK_SIGNING_KEY, settings.LINK_SIGNING_KEY_FALLBACKS = "retired-link-key", []
    stale = [signed_links.unsubscribe_url(log.pk), signed_links.open_url(log.pk), signed_links.click_url(log.pk, 0)]

    settings.LINK_SIGNING_KEY, settings.LINK_SIGNING_KEY_FALLBACKS = "new-link-key", ["old-link-key"]
    assert one_click(stale[0]).status_code == 404
    assert Client().get(path_of(stale[0])).status_code == 404
    assert Client().get(path_of(stale[1])).status_code == 404
    assert Client().get(path_of(stale[2])).status_code == 404

    assert not Suppression.objects.exists()
    log.refresh_from_db()
    assert (log.unsubscribed_at, log.opened_at, log.clicked_at) == (None, None, None)
    log.campaign.refresh_from_db()
    assert (log.campaign.unsubscribed_count, log.campaign.opened_count, log.campaign.clicked_count) == (0, 0, 0)


@pytest.mark.django_db
def test_tracking_links_signed_with_the_old_key_still_count_after_rotation(settings):
    log = DeliveryLogFactory(recipient__campaign=CampaignFactory(html_body=HTML), status=DeliveryLog.Status.SENT)
    settings.LINK_SIGNING_KEY, settings.LINK_SIGNING_KEY_FALLBACKS = "old-link-key", []
    pixel, click = signed_links.open_url(log.pk), signed_links.click_url(log.pk, 1)
    settings.LINK_SIGNING_KEY, settings.LINK_SIGNING_KEY_FALLBACKS = "new-link-key", ["old-link-key"]

    assert Client().get(path_of(pixel)).status_code == 200
    assert Client().get(path_of(click))["Location"] == "https://acme.test/b"
    log.refresh_from_db()
    assert log.opened_at is not None and log.clicked_at is not None


@pytest.mark.django_db
def test_rotating_the_link_key_leaves_secret_key_alone_and_vice_versa(settings):
    log = DeliveryLogFactory(status=DeliveryLog.Status.SENT)
    url = signed_links.unsubscribe_url(log.pk)
    settings.SECRET_KEY = "a-rotated-secret-key-" + "x" * 40
    assert Client().get(path_of(url)).status_code == 200  # link tokens do not depend on SECRET_KEY


@pytest.mark.django_db
def test_links_mailed_before_this_scheme_still_work(settings):
    """Legacy tokens (django.core.signing with SECRET_KEY, one salt per purpose) keep working."""
    log = DeliveryLogFactory(recipient__campaign=CampaignFactory(html_body=HTML), status=DeliveryLog.Status.SENT)
    legacy_unsubscribe = signing.dumps(log.pk, salt=signed_links.UNSUBSCRIBE_SALT)
    legacy_open = signing.Signer(salt=signed_links.OPEN_SALT).sign(str(log.pk))
    legacy_click = signing.Signer(salt=signed_links.CLICK_SALT).sign(f"{log.pk}.1")

    assert Client().get(f"/t/o/{legacy_open}/").status_code == 200
    assert Client().get(f"/t/c/{legacy_click}/")["Location"] == "https://acme.test/b"
    assert one_click(f"https://x/u/{legacy_unsubscribe}/").status_code == 200
    assert Suppression.objects.get().email == log.email


# --- Opaque tokens -------------------------------------------------------------------------------

def _raw(token):
    return base64.urlsafe_b64decode(token + "==")


def test_tokens_do_not_expose_the_sequential_delivery_id():
    ids = range(1000, 1064)
    tokens = [signed_links.unsubscribe_token(i) for i in ids] + [signed_links.tracking_token(i) for i in ids]
    for delivery_id, token in zip(list(ids) * 2, tokens):
        assert re.fullmatch(r"[A-Za-z0-9_-]{38}", token)
        assert str(delivery_id) not in token
        raw = _raw(token)
        assert delivery_id.to_bytes(8, "big") not in raw and delivery_id.to_bytes(2, "big") not in raw[:2]
    # Neighbouring ids give unrelated handles: no shared prefix beyond chance, about half the bits differ.
    handles = [_raw(t)[:16] for t in tokens[:64]]
    assert len(set(handles)) == 64
    for a, b in zip(handles, handles[1:]):
        differing = bin(int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).count("1")
        assert 32 < differing < 96


def test_purposes_are_kept_apart_and_tokens_do_not_verify_across_them():
    unsubscribe, track = signed_links.recipient_tokens(77)
    assert unsubscribe[:21] == track[:21] and unsubscribe != track  # one handle, two tags
    assert signed_links.delivery_id_from_unsubscribe_token(unsubscribe) == 77
    assert signed_links.delivery_id_from_open_token(track) == 77
    assert signed_links.click_from_token(track, 3) == (77, 3)
    for call in (lambda: signed_links.delivery_id_from_unsubscribe_token(track),
                 lambda: signed_links.delivery_id_from_open_token(unsubscribe),
                 lambda: signed_links.click_from_token(unsubscribe, 0),
                 lambda: signed_links.click_from_token(track)):
        with pytest.raises(signing.BadSignature):
            call()


@pytest.mark.parametrize("bad", ["", "A" * 38, "A" * 37 + "=", "A" * 39, "~" * 38, "é" * 38])
def test_malformed_tokens_are_bad_signatures(bad):
    with pytest.raises(signing.BadSignature):
        signed_links.delivery_id_from_unsubscribe_token(bad)
    with pytest.raises(signing.BadSignature):
        signed_links.delivery_id_from_open_token(bad)


def test_a_non_canonical_encoding_of_a_genuine_token_is_refused():
    token = signed_links.tracking_token(5)
    # The last base64 character carries 4 unused bits: flipping them must not give a second valid token.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(token[-1])
    twin = token[:-1] + alphabet[last ^ 1]
    with pytest.raises(signing.BadSignature):
        signed_links.delivery_id_from_open_token(twin)


# --- One keyed hash per recipient (issue 14, item 5) --------------------------------------------

def test_one_hmac_and_one_aes_block_per_recipient_serve_all_its_links(monkeypatch):
    campaign = {"id": 990001, "updated_at": "v1", "subject": "s", "html_body": HTML, "text_body": ""}
    track = click_tracking.tracking_for(campaign)
    signed_links.recipient_tokens(1)  # derive the keys once (per key, per process)
    calls = []
    real_tags, real_aes = signed_links._tags, signed_links._aes
    monkeypatch.setattr(signed_links, "_tags", lambda *a: calls.append("hmac") or real_tags(*a))
    monkeypatch.setattr(signed_links, "_aes", lambda *a, **k: calls.append("aes") or real_aes(*a, **k))
    signed_links._recipient_tokens.cache_clear()

    unsubscribe = signed_links.unsubscribe_url(424242)   # build_batch
    values = track.values(424242)                 # the SMTP provider's tracking values

    assert sorted(calls) == ["aes", "hmac"]
    token = signed_links.tracking_token(424242)
    assert values == {"_t_open": f"{signed_links.open_url(424242)}", "_t_click_0": signed_links.click_url(424242, 0),
                      "_t_click_1": signed_links.click_url(424242, 1)}
    assert all(f"/{token}/" in url for url in values.values())
    assert f"/u/{signed_links.unsubscribe_token(424242)}/" in unsubscribe
    assert sorted(calls) == ["aes", "hmac"]


@pytest.mark.django_db
def test_legacy_links_survive_a_secret_key_rotation_only_with_the_old_key_in_the_fallbacks(settings):
    log = DeliveryLogFactory(status=DeliveryLog.Status.SENT)
    settings.SECRET_KEY = "old-secret-key-" + "s" * 50
    legacy = f"/u/{signing.dumps(log.pk, salt=signed_links.UNSUBSCRIBE_SALT)}/"

    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "new-secret-key-" + "n" * 50, []
    assert Client().get(legacy).status_code == 404
    settings.SECRET_KEY_FALLBACKS = ["old-secret-key-" + "s" * 50]
    assert Client().get(legacy).status_code == 200


# --- The web version's link kind (issue 16, item 7) --------------------------------------------

def test_the_web_token_is_the_same_hashs_last_tag_and_leaves_the_other_tokens_as_they_were(settings):
    handle_bytes = _raw(signed_links.unsubscribe_token(77))[:16]
    mac_key = hmac.new(settings.LINK_SIGNING_KEY.encode(), b"campaigns.links.mac", hashlib.sha256).digest()
    tags = hmac.new(mac_key, handle_bytes, hashlib.sha256).digest()
    b64 = lambda data: base64.urlsafe_b64encode(data).rstrip(b"=").decode()  # noqa: E731
    # The unsubscribe and tracking tokens mailed before this link kind existed are unchanged.
    assert signed_links.recipient_tokens(77) == (b64(handle_bytes + tags[:12]), b64(handle_bytes + tags[12:24]))
    assert signed_links.web_token(77) == b64(handle_bytes + tags[24:32])
    assert signed_links.web_url(77) == f"{settings.SITE_URL}/w/{signed_links.web_token(77)}/"
    assert signed_links.delivery_id_from_web_token(signed_links.web_token(77)) == 77


def test_web_tokens_do_not_verify_as_other_kinds_nor_others_as_web_tokens():
    unsubscribe, track = signed_links.recipient_tokens(78)
    web = signed_links.web_token(78)
    for call in (lambda: signed_links.delivery_id_from_web_token(unsubscribe),
                 lambda: signed_links.delivery_id_from_web_token(track),
                 lambda: signed_links.delivery_id_from_web_token(unsubscribe[:32]),
                 lambda: signed_links.delivery_id_from_unsubscribe_token(web),
                 lambda: signed_links.delivery_id_from_open_token(web)):
        with pytest.raises(signing.BadSignature):
            call()


def test_a_tampered_web_token_is_refused():
    token = signed_links.web_token(79)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for position in (0, 10, 21, 25, 31):
        flipped = alphabet[alphabet.index(token[position]) ^ 1]
        with pytest.raises(signing.BadSignature):
            signed_links.delivery_id_from_web_token(token[:position] + flipped + token[position + 1:])


def test_the_web_link_costs_no_extra_keyed_work(monkeypatch):
    signed_links.recipient_tokens(1)
    calls = []
    real_tags = signed_links._tags
    monkeypatch.setattr(signed_links, "_tags", lambda *a: calls.append("hmac") or real_tags(*a))
    signed_links._recipient_tokens.cache_clear()
    signed_links.unsubscribe_url(515151)
    signed_links.web_url(515151)
    signed_links.tracking_token(515151)
    assert calls == ["hmac"]
