"""Amazon SES events through SNS, as real HTTP requests against PostgreSQL: signature verification,
subscription confirmation against a local SNS stand-in, de-duplication, matching, counters and
suppressions.

The messages are signed here with the test's own certificate, built from AWS's description of the
string to sign (not from the production code), and trusted through SES_SNS_TRUSTED_CERTIFICATES.
Whatever the production code fetches from sns.<region>.amazonaws.com is served by localservers/sns_api.py:
the one fetching function is wrapped to send those URLs there, its URL checks untouched.
"""

import base64
import datetime as dt
import json
import time
import uuid
from urllib.parse import urlencode, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from django.test import Client

from campaigns.engagement import sns
from campaigns.models import Campaign, DeliveryLog, Suppression
from campaigns.sending.providers.smtp import SmtpProvider
from localservers.serving import running
from tests.sending.conftest import make_batch
from tests.engagement.test_sendgrid_webhook import counters, state
from tests.support.factories import CampaignFactory, DeliveryLogFactory

pytestmark = pytest.mark.django_db

URL = "/webhooks/ses/"
TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-events"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem"
SIGNED_KEYS = {  # AWS: the keys of each Type, in byte order; Subject only when present
    "Notification": ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"],
    "SubscriptionConfirmation": ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"],
    "UnsubscribeConfirmation": ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"],
}


def make_certificate(key, common_name="sns.amazonaws.com"):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
                   .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def iso(epoch):
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class SnsSigner:
    def __init__(self):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.certificate = make_certificate(self.key)
        self.client = Client(enforce_csrf_checks=True)

    def sign(self, message, key=None, version="2"):
        text = "".join(f"{k}\n{message[k]}\n" for k in SIGNED_KEYS[message["Type"]] if k in message)
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = (key or self.key).sign(text.encode(), padding.PKCS1v15(), algorithm)
        return {**message, "SignatureVersion": version, "Signature": base64.b64encode(signature).decode()}

    def envelope(self, kind, timestamp=None, topic=TOPIC, **fields):
        return {"Type": kind, "MessageId": str(uuid.uuid4()), "TopicArn": topic,
                "Timestamp": iso(time.time() if timestamp is None else timestamp), "SigningCertURL": CERT_URL,
                **fields}

    def notification(self, ses_event, key=None, version="2", **fields):
        message = self.envelope("Notification", Message=json.dumps(ses_event), **fields)
        return self.sign(message, key=key, version=version)

    def post(self, message):
        # SNS posts its JSON as text/plain
        return self.client.post(URL, data=json.dumps(message), content_type="text/plain; charset=UTF-8")


@pytest.fixture
def sns_server(tmp_path, monkeypatch):
    """localservers/sns_api.py, and the production fetch sent there; yields the lines it recorded."""
    signer = SnsSigner()
    certificate = tmp_path / "sns.pem"
    certificate.write_text(signer.certificate)
    record = tmp_path / "sns.jsonl"
    record.touch()
    real_get = sns.http_get
    with running("sns_api", "--record-file", record, "--certificate", certificate) as (_, port):
        def local_get(url):
            parts = urlsplit(url)
            return real_get(parts._replace(scheme="http", netloc=f"127.0.0.1:{port}").geturl())
        monkeypatch.setattr(sns, "http_get", local_get)
        sns._fetched_certificate.cache_clear()
        yield signer, lambda: [json.loads(line) for line in record.read_text().splitlines()]
    sns._fetched_certificate.cache_clear()


@pytest.fixture
def signer(sns_server, settings):
    signer, _ = sns_server
    settings.SES_SNS_TOPIC_ARNS = [TOPIC]
    settings.SES_SNS_TRUSTED_CERTIFICATES = [signer.certificate]
    return signer


@pytest.fixture
def recorded(sns_server):
    return sns_server[1]


@pytest.fixture
def smtp_campaign(db):
    """A campaign of five recipients whose messages Amazon SES accepted over SMTP."""
    campaign = CampaignFactory()
    logs = [DeliveryLogFactory(recipient__campaign=campaign, status=DeliveryLog.Status.SENT, provider="smtp",
                               provider_message_id=f"<msg{n}@acme.test>") for n in range(5)]
    return campaign, logs


def ses_event(kind, log, *, headers=True, format="eventType", **objects):
    """An SES event record about LOG's message, as SES publishes it (our SMTP headers echoed back)."""
    mail = {"timestamp": iso(time.time() - 300), "source": "news@acme.test",
            "messageId": "0100018c-ses-assigned-000000", "destination": [log.email], "headersTruncated": False}
    if headers:
        mail["headers"] = [{"name": "From", "value": "news@acme.test"}, {"name": "To", "value": log.email},
                           {"name": "Message-ID", "value": log.provider_message_id},
                           {"name": "X-Campaign-ID", "value": str(log.campaign_id)},
                           {"name": "X-Delivery-ID", "value": str(log.pk)}]
    return {format: kind, "mail": mail, **objects}


def bounce(log, bounce_type="Permanent", subtype="General"):
    return ses_event("Bounce", log, bounce={
        "bounceType": bounce_type, "bounceSubType": subtype, "timestamp": iso(time.time() - 60),
        "feedbackId": "0100-feedback", "reportingMTA": "dsn; mta.example.com",
        "bouncedRecipients": [{"emailAddress": log.email, "action": "failed", "status": "5.1.1",
                               "diagnosticCode": "smtp; 550 5.1.1 user unknown"}]})


def complaint(log, **fields):
    return ses_event("Complaint", log, complaint={
        "complainedRecipients": [{"emailAddress": log.email}], "timestamp": iso(time.time() - 60),
        "feedbackId": "0100-feedback", "complaintFeedbackType": "abuse", **fields})


def delivery(log, at):
    return ses_event("Delivery", log, delivery={
        "timestamp": iso(at), "processingTimeMillis": 546, "recipients": [log.email],
        "smtpResponse": "250 ok: Message accepted", "reportingMTA": "a8-70.smtp-out.amazonses.com"})


def delay(log):
    return ses_event("DeliveryDelay", log, deliveryDelay={
        "timestamp": iso(time.time() - 60), "delayType": "MailboxFull", "expirationTime": iso(time.time() + 3600),
        "delayedRecipients": [{"emailAddress": log.email, "status": "4.2.2",
                               "diagnosticCode": "smtp; 452 4.2.2 mailbox full"}]})


@pytest.mark.parametrize("version", ["1", "2"])
def test_each_event_type_is_applied_and_only_permanent_bounces_and_complaints_suppress(signer, smtp_campaign,
                                                                                          version):
    campaign, (ann, bob, cid, dan, eve) = smtp_campaign
    delivered_at = int(time.time()) - 120
    events = [ses_event("Send", ann, send={}), delivery(ann, delivered_at), delay(bob), bounce(cid),
              bounce(dan, "Transient", "MailboxFull"), complaint(eve)]

    answers = [signer.post(signer.notification(event, version=version)) for event in events]

    assert [a.status_code for a in answers] == [200] * 6
    assert [a.json()["applied"] for a in answers] == [1] * 6
    assert counters(campaign) == {"delivered_count": 1, "opened_count": 0, "clicked_count": 0,
                                  "bounced_count": 2, "complained_count": 1, "unsubscribed_count": 0}
    ann.refresh_from_db()
    assert ann.delivered_at == dt.datetime.fromtimestamp(delivered_at, dt.timezone.utc)
    for log in (bob, cid, dan, eve):
        log.refresh_from_db()
    assert bob.last_error == "Amazon SES delayed (MailboxFull): smtp; 452 4.2.2 mailbox full"
    assert cid.bounced_at and cid.last_error == "Amazon SES Permanent bounce (General): smtp; 550 5.1.1 user unknown"
    assert dan.bounced_at and eve.complained_at
    suppressions = {s.email: (s.reason, s.source, s.campaign_id) for s in Suppression.objects.all()}
    assert suppressions == {cid.email: ("bounced", "amazon ses: Bounce", campaign.pk),
                            eve.email: ("complained", "amazon ses: Complaint", campaign.pk)}


def test_events_find_the_messages_our_smtp_provider_sent_by_the_headers_ses_echoes(signer, smtp_campaign,
                                                                                    smtp_sink_server):
    campaign, logs = smtp_campaign
    SmtpProvider().send_batch(make_batch([(log.pk, log.email, "", "", {}) for log in logs[:2]],
                                         campaign_id=campaign.pk))
    sent = {message["X-Sink-Rcpt-To"]: message for message in smtp_sink_server.messages()}
    events = []
    for log in logs[:2]:
        DeliveryLog.objects.filter(pk=log.pk).update(provider_message_id="SES replaced it")  # no fallback
        event = delivery(log, time.time() - 30)
        # SES lists the headers of the message as it received it.
        event["mail"]["headers"] = [{"name": name, "value": str(value)} for name, value in sent[log.email].items()
                                    if not name.startswith("X-Sink-")]
        events.append(event)

    answers = [signer.post(signer.notification(event)) for event in events]

    assert [a.json()["applied"] for a in answers] == [1, 1]
    assert counters(campaign)["delivered_count"] == 2
    assert DeliveryLog.objects.filter(campaign=campaign, delivered_at__isnull=False).count() == 2


def test_feedback_notifications_without_our_headers_match_by_message_id_and_address(signer, smtp_campaign):
    campaign, (ann, bob, *_) = smtp_campaign
    event = bounce(bob)
    event["notificationType"] = event.pop("eventType")  # an identity's feedback notification
    del event["mail"]["headers"]
    event["mail"]["commonHeaders"] = {"messageId": bob.provider_message_id, "to": [bob.email]}
    event["bounce"]["bouncedRecipients"][0]["emailAddress"] = bob.email.upper()

    assert signer.post(signer.notification(event)).json()["applied"] == 1

    bob.refresh_from_db()
    ann.refresh_from_db()
    assert bob.bounced_at and not ann.bounced_at
    assert counters(campaign)["bounced_count"] == 1


def test_a_replayed_message_changes_nothing(signer, smtp_campaign):
    campaign, (ann, *_) = smtp_campaign
    message = signer.notification(complaint(ann))
    first = signer.post(message)
    before = state()

    replay = signer.post(message)

    assert first.json()["applied"] == 1
    assert replay.status_code == 200 and replay.json()["duplicates"] == 1 and replay.json()["applied"] == 0
    assert state() == before
    assert counters(campaign)["complained_count"] == 1


@pytest.mark.parametrize("tamper", [
    "unsigned", "forged", "message changed", "subject added", "certificate host", "certificate over http",
    "lookalike host", "certificate port", "stale", "future", "other topic", "no topics configured",
    "signature version 3", "garbage signature", "trusted certificate unreadable", "s3 bucket host",
    "region label made up", "certificate query string", "certificate fragment", "empty query string"])
def test_a_refused_message_changes_nothing(signer, smtp_campaign, settings, recorded, tamper):
    _, (ann, *_) = smtp_campaign
    event = complaint(ann)
    message = signer.notification(event)
    if tamper == "unsigned":
        del message["Signature"], message["SignatureVersion"]
    elif tamper == "forged":  # signed with a key nobody trusts
        message = signer.notification(event, key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    elif tamper == "message changed":
        message["Message"] = message["Message"].replace("abuse", "fraud")
    elif tamper == "subject added":
        message["Subject"] = "Amazon SES Email Event Notification"
    elif tamper in ("certificate host", "certificate over http", "lookalike host", "certificate port", "s3 bucket host",
                    "region label made up", "certificate query string", "certificate fragment", "empty query string"):
        url = {"certificate host": "https://sns.us-east-1.evil.test/SimpleNotificationService-0123.pem",
               "certificate over http": CERT_URL.replace("https:", "http:"),
               "lookalike host": CERT_URL.replace(".amazonaws.com/", ".amazonaws.com.evil.test/"),
               "certificate port": CERT_URL.replace(".amazonaws.com/", ".amazonaws.com:8443/"),
               # S3 serves buckets at <bucket>.s3.amazonaws.com: anyone may own a bucket named "sns".
               "s3 bucket host": CERT_URL.replace("sns.us-east-1.", "sns.s3."),
               "region label made up": CERT_URL.replace("sns.us-east-1.", "sns.my-bucket-name."),
               "certificate query string": CERT_URL + "?nonce=1",
               "certificate fragment": CERT_URL + "#x",
               "empty query string": CERT_URL + "?"}[tamper]
        message = signer.sign({**signer.envelope("Notification", Message=json.dumps(event)), "SigningCertURL": url})
    elif tamper == "stale":  # properly signed, but older than any SNS retry: a captured message replayed later
        message = signer.notification(event, timestamp=time.time() - sns.MAX_AGE_SECONDS - 60)
    elif tamper == "future":
        message = signer.notification(event, timestamp=time.time() + 3600)
    elif tamper == "other topic":  # a real SNS signature proves only that *some* topic sent it
        message = signer.sign(signer.envelope("Notification", topic=TOPIC + "-other", Message=json.dumps(event)))
    elif tamper == "no topics configured":
        settings.SES_SNS_TOPIC_ARNS = []
    elif tamper == "signature version 3":
        message["SignatureVersion"] = "3"
    elif tamper == "garbage signature":
        message["Signature"] = "not base64 at all!"
    elif tamper == "trusted certificate unreadable":
        settings.SES_SNS_TRUSTED_CERTIFICATES = ["/nonexistent/sns.pem"]
    before = state()

    response = signer.post(message)

    assert response.status_code == 403
    assert response.json()["error"]
    assert state() == before
    assert not Suppression.objects.exists()
    if tamper not in ("forged", "message changed", "subject added"):  # refused before any certificate is fetched
        assert recorded() == []


def test_the_answer_is_the_same_whatever_the_topic(signer, smtp_campaign, settings):
    _, (ann, *_) = smtp_campaign
    event = json.dumps(complaint(ann))
    other_topic = signer.post(signer.sign(signer.envelope("Notification", topic=TOPIC + "-other", Message=event)))
    forged = signer.post(signer.notification(complaint(ann),
                                             key=rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    settings.SES_SNS_TOPIC_ARNS = ["arn:aws:sns:us-east-1:123456789012:another"]
    ours_unconfigured = signer.post(signer.notification(complaint(ann)))
    answers = {(r.status_code, r.content) for r in (other_topic, forged, ours_unconfigured)}
    assert answers == {(403, b'{"error": "' + sns.REFUSED.encode() + b'"}')}


def test_a_fetched_certificate_whose_subject_is_not_sns_is_refused(smtp_campaign, settings, tmp_path, monkeypatch):
    signer = SnsSigner()
    signer.certificate = make_certificate(signer.key, common_name="attacker.example")
    certificate = tmp_path / "other.pem"
    certificate.write_text(signer.certificate)
    record = tmp_path / "sns.jsonl"
    record.touch()
    settings.SES_SNS_TOPIC_ARNS, settings.SES_SNS_TRUSTED_CERTIFICATES = [TOPIC], []
    real_get = sns.http_get
    _, (ann, *_) = smtp_campaign
    with running("sns_api", "--record-file", record, "--certificate", certificate) as (_, port):
        monkeypatch.setattr(sns, "http_get", lambda url: real_get(
            urlsplit(url)._replace(scheme="http", netloc=f"127.0.0.1:{port}").geturl()))
        sns._fetched_certificate.cache_clear()
        before = state()
        response = signer.post(signer.notification(complaint(ann)))
    sns._fetched_certificate.cache_clear()
    assert response.status_code == 403 and response.json()["error"] == sns.REFUSED
    assert state() == before and not Suppression.objects.exists()


def test_a_certificate_from_sns_is_fetched_once_and_verifies(signer, smtp_campaign, settings, recorded):
    settings.SES_SNS_TRUSTED_CERTIFICATES = []  # only what sns.<region>.amazonaws.com serves
    campaign, (ann, bob, *_) = smtp_campaign

    answers = [signer.post(signer.notification(delivery(log, time.time() - 30))) for log in (ann, bob)]

    assert [a.json()["applied"] for a in answers] == [1, 1]
    assert recorded() == [{"action": "certificate", "path": urlsplit(CERT_URL).path}]  # cached after the first
    assert counters(campaign)["delivered_count"] == 2


def confirmation(signer, subscribe_url=None, topic=TOPIC, token="2336412f37fb687f5d51e6e2425c464de"):
    url = subscribe_url or "https://sns.us-east-1.amazonaws.com/?" + urlencode(
        {"Action": "ConfirmSubscription", "TopicArn": topic, "Token": token})
    return signer.sign(signer.envelope(
        "SubscriptionConfirmation", topic=topic, Token=token, SubscribeURL=url,
        Message=f"You have chosen to subscribe to the topic {topic}.\nTo confirm the subscription, visit the "
                "SubscribeURL included in this message."))


def test_a_subscription_confirmation_is_verified_then_confirmed(signer, recorded):
    response = signer.post(confirmation(signer))

    assert response.status_code == 200 and response.json() == {"confirmed": TOPIC}
    assert recorded() == [{"action": "ConfirmSubscription", "topic_arn": TOPIC,
                           "token": "2336412f37fb687f5d51e6e2425c464de"}]


@pytest.mark.parametrize("tamper", ["forged", "other topic", "subscribe url host", "subscribe url over http",
                                    "subscribe url for another topic"])
def test_a_doubtful_subscription_confirmation_is_not_confirmed(signer, recorded, tamper):
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    message = {
        "forged": lambda: signer.sign(confirmation(signer), key=other_key),
        "other topic": lambda: confirmation(signer, topic=TOPIC + "-other"),
        "subscribe url host": lambda: confirmation(
            signer, "https://attacker.test/?Action=ConfirmSubscription&TopicArn=" + TOPIC + "&Token=x"),
        "subscribe url over http": lambda: confirmation(
            signer, "http://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=" + TOPIC + "&Token=x"),
        "subscribe url for another topic": lambda: confirmation(
            signer, "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=" + TOPIC + "-b&Token=x"),
    }[tamper]()

    response = signer.post(message)

    assert response.status_code in (400, 403) and response.json()["error"]
    assert [line for line in recorded() if line["action"] == "ConfirmSubscription"] == []


def test_a_confirmation_sns_does_not_accept_is_reported_as_an_error(signer, recorded):
    # The local SNS answers 400 to a ConfirmSubscription without a Token, as SNS does.
    response = signer.post(confirmation(
        signer, "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=" + TOPIC))

    assert response.status_code == 502 and "could not be confirmed" in response.json()["error"]
    assert recorded() == []


def test_an_unsubscribe_confirmation_is_verified_and_changes_nothing(signer, smtp_campaign, recorded):
    message = confirmation(signer)
    message = signer.sign({k: v for k, v in message.items() if k not in ("Signature", "SignatureVersion")}
                          | {"Type": "UnsubscribeConfirmation"})
    before = state()

    response = signer.post(message)

    assert response.status_code == 200 and response.json() == {"unsubscribed": TOPIC}
    assert state() == before and recorded() == []


def test_event_types_we_do_not_use_are_ignored_and_a_not_spam_report_is_no_complaint(signer, smtp_campaign):
    campaign, (ann, *_) = smtp_campaign
    opened = signer.post(signer.notification(ses_event("Open", ann, open={"timestamp": iso(time.time())})))
    not_spam = signer.post(signer.notification(complaint(ann, complaintFeedbackType="not-spam")))

    assert opened.json()["ignored"] == 1 and not_spam.json()["ignored"] == 1
    assert counters(campaign)["complained_count"] == 0 and not Suppression.objects.exists()


def test_an_address_on_the_ses_suppression_list_is_suppressed_and_not_counted_as_bounced(signer, smtp_campaign):
    campaign, (ann, *_) = smtp_campaign
    DeliveryLog.objects.filter(pk=ann.pk).update(status=DeliveryLog.Status.UNKNOWN)
    Campaign.objects.filter(pk=campaign.pk).update(unknown_count=1)

    response = signer.post(signer.notification(bounce(ann, "Permanent", "OnAccountSuppressionList")))

    assert response.json()["settled"] == 1
    ann.refresh_from_db()
    assert ann.status == DeliveryLog.Status.FAILED and ann.bounced_at is None
    assert counters(campaign)["bounced_count"] == 0
    assert Suppression.objects.get().email == ann.email


def test_a_signed_message_that_is_not_an_ses_event_is_a_bad_request(signer, smtp_campaign):
    before = state()  # event ids seen are not a model's table: a test with real workers may leave some
    for text in ("{not json", "[1, 2]", '{"mail": {}}'):
        assert signer.post(signer.sign(signer.envelope("Notification", Message=text))).status_code == 400
    assert signer.client.post(URL, data=b"\xff{", content_type="text/plain").status_code == 400
    assert state() == before


def test_only_post_is_accepted(client):
    assert client.get(URL).status_code == 405


@pytest.mark.parametrize("url, accepted", [
    (CERT_URL, True),
    ("https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem", True),
    ("https://sns.us-east-1.amazonaws.com:443/SimpleNotificationService-abc.pem", True),
    ("https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem/../x", False),
    ("https://user:pw@sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem", False),
    ("https://s3.amazonaws.com/SimpleNotificationService-abc.pem", False),
    ("https://sns.us-east-1.amazonaws.com/other.pem", False),
    ("https://sns.us-east-1.amazonaws.com.evil.test/SimpleNotificationService-abc.pem", False),
    ("ftp://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem", False),
    ("https://[::1/SimpleNotificationService-abc.pem", False),
])
def test_signing_certificate_urls(url, accepted):
    assert sns.is_sns_url(url, sns.CERTIFICATE_PATH) is accepted
