"""localservers/sns_api.py: the two GETs an SNS endpoint makes, answered and recorded; anything else 404."""

import json
import urllib.error
import urllib.request

import pytest

from localservers.serving import running


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.fixture(params=[True, False], ids=["with certificate", "without certificate"])
def server(tmp_path, request):
    certificate = tmp_path / "cert.pem"
    certificate.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    record = tmp_path / "sns.jsonl"
    options = ["--certificate", certificate] if request.param else []
    with running("sns_api", "--record-file", record, *options) as (_, port):
        yield f"http://127.0.0.1:{port}", request.param, lambda: [
            json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []


def test_confirmations_and_certificates_are_answered_and_recorded(server):
    url, has_certificate, recorded = server

    status, body = get(f"{url}/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:us-east-1:1:t&Token=tok")
    assert status == 200 and "<SubscriptionArn>arn:aws:sns:us-east-1:1:t:local-subscription<" in body
    assert get(f"{url}/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:us-east-1:1:t")[0] == 400
    status, body = get(f"{url}/SimpleNotificationService-abc.pem")
    assert (status, body.startswith("-----BEGIN CERTIFICATE-----")) == ((200, True) if has_certificate else (404, False))
    assert get(f"{url}/other")[0] == 404

    assert recorded() == [{"action": "ConfirmSubscription", "topic_arn": "arn:aws:sns:us-east-1:1:t", "token": "tok"}] + (
        [{"action": "certificate", "path": "/SimpleNotificationService-abc.pem"}] if has_certificate else [])
