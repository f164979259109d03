import email.utils
import json
import re
import time

import pytest
from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import CustomArg, Mail, Personalization, Substitution, To

from localservers.serving import running
from localservers.sendgrid_api import get_stats, read_records, reset, set_fault

API_KEY = "SG.test-key"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("sendgrid")
    record_file = base / "sendgrid.jsonl"
    with running("sendgrid_api", "--record-file", record_file, "--api-key", API_KEY, "--render",
                 log_path=base / "sendgrid.log") as (_, port):
        yield {"url": f"http://127.0.0.1:{port}", "record_file": record_file}


@pytest.fixture
def sendgrid(server):
    reset(server["url"])
    server["record_file"].write_text("")  # the server appends, so truncating is safe
    return SendGridAPIClient(api_key=API_KEY, host=server["url"])


def build_mail(recipients):
    """A batch the way the product sends it: body once, one personalization each, the campaign id in
    each personalization's custom_args (the top-level one must be a string, see test_top_level_...)."""
    mail = Mail(from_email="news@example.com", subject="Hello -first-",
                plain_text_content="Hi -first-, your code is -code-.",
                html_content="<p>Hi <b>-first-</b>, your code is -code-.</p>")
    for i, (address, first_name) in enumerate(recipients):
        personalization = Personalization()
        personalization.add_to(To(address))
        personalization.add_substitution(Substitution("-first-", first_name))
        personalization.add_substitution(Substitution("-code-", f"C{i}"))
        personalization.add_custom_arg(CustomArg("campaign_id", "42"))
        personalization.add_custom_arg(CustomArg("delivery_id", str(i)))
        mail.add_personalization(personalization)
    return mail


def payload_for(count):
    return build_mail([(f"user{i}@example.com", f"User{i}") for i in range(count)]).get()


def send_expecting_error(sendgrid, payload, **kwargs):
    with pytest.raises(HTTPError) as excinfo:
        sendgrid.client.mail.send.post(request_body=payload, **kwargs)
    return excinfo.value


def test_accepts_official_library_batch_and_records_each_personalization(server, sendgrid):
    response = sendgrid.send(build_mail([("ann@example.com", "Ann"), ("bob@example.org", "Bob")]))

    assert response.status_code == 202
    assert response.body == b""
    message_id = response.headers["X-Message-Id"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", message_id)

    records = {r["to"][0]: r for r in read_records(server["record_file"])}
    assert set(records) == {"ann@example.com", "bob@example.org"}
    ann = records["ann@example.com"]
    assert ann["message_id"] == message_id
    assert ann["custom_args"]["campaign_id"] == "42"
    assert ann["subject"] == "Hello -first-"
    assert ann["substitutions"]["-first-"] == "Ann"
    assert ann["rendered"]["subject"] == "Hello Ann"
    assert ann["rendered"]["html"] == f"<p>Hi <b>Ann</b>, your code is {ann['substitutions']['-code-']}.</p>"
    bob = records["bob@example.org"]
    assert bob["rendered"]["text"] == f"Hi Bob, your code is {bob['substitutions']['-code-']}."
    assert {ann["custom_args"]["delivery_id"], bob["custom_args"]["delivery_id"]} == {"0", "1"}

    stats = get_stats(server["url"])
    assert sorted(stats.pop("seen_recipients")) == sorted(records)
    assert stats == {"requests_by_status": {"202": 1}, "personalizations_accepted": 2, "hung_recipients": []}


def test_accepts_a_full_thousand_personalizations(server, sendgrid):
    assert sendgrid.send(payload_for(1000)).status_code == 202
    assert len(read_records(server["record_file"])) == 1000


def test_wrong_api_key_gets_401(server, sendgrid):
    wrong = SendGridAPIClient(api_key="SG.wrong", host=server["url"])
    error = send_expecting_error(wrong, payload_for(1))

    assert error.status_code == 401
    assert error.to_dict["errors"][0]["message"] == (
        "The provided authorization grant is invalid, expired, or revoked")
    assert read_records(server["record_file"]) == []


def error_fields(error):
    return [e["field"] for e in error.to_dict["errors"]]


def test_more_than_1000_personalizations_is_refused(server, sendgrid):
    error = send_expecting_error(sendgrid, payload_for(1001))

    assert error.status_code == 400
    assert error_fields(error) == ["personalizations"]
    assert read_records(server["record_file"]) == []


def test_repeated_address_is_refused_case_insensitively(server, sendgrid):
    payload = build_mail([("ann@example.com", "Ann"), ("ANN@Example.com", "Ann again")]).get()

    error = send_expecting_error(sendgrid, payload)

    assert error.status_code == 400
    [detail] = error.to_dict["errors"]
    assert detail["field"] in {"personalizations.0.to", "personalizations.1.to"}
    assert "first duplicate instance of [" in detail["message"]
    assert detail["help"] is None
    assert read_records(server["record_file"]) == []


def test_address_that_is_not_an_address_is_refused_with_its_field(server, sendgrid):
    payload = payload_for(3)
    payload["personalizations"][2]["to"][0]["email"] = "not-an-address"

    error = send_expecting_error(sendgrid, payload)

    assert error.status_code == 400
    assert error_fields(error) == ["personalizations.2.to.0.email"]


@pytest.mark.parametrize("remove, field", [
    ("personalizations", "personalizations"),
    ("from", "from.email"),
    ("subject", "subject"),
    ("content", "content"),
])
def test_missing_required_part_is_refused(server, sendgrid, remove, field):
    payload = payload_for(1)
    del payload[remove]

    error = send_expecting_error(sendgrid, payload)

    assert error.status_code == 400
    assert field in error_fields(error)


def test_html_before_plain_text_is_refused(server, sendgrid):
    payload = payload_for(1)
    payload["content"].reverse()

    assert error_fields(send_expecting_error(sendgrid, payload)) == ["content"]


@pytest.mark.parametrize("mode, status", [("500", 500), ("503", 503), ("401", 401), ("403", 403)])
def test_fault_answers_count_requests_then_recovers(server, sendgrid, mode, status):
    set_fault(server["url"], mode, count=2)

    for _ in range(2):
        assert send_expecting_error(sendgrid, payload_for(1)).status_code == status
    assert sendgrid.send(payload_for(1)).status_code == 202

    assert get_stats(server["url"])["requests_by_status"] == {mode: 2, "202": 1}
    assert len(read_records(server["record_file"])) == 1


def test_429_carries_a_reset_time_in_the_future(server, sendgrid):
    set_fault(server["url"], "429", count=1, reset_after=30)

    error = send_expecting_error(sendgrid, payload_for(1))

    assert error.status_code == 429
    assert error.headers["X-RateLimit-Remaining"] == "0"
    assert int(error.headers["X-RateLimit-Limit"]) > 0
    assert int(error.headers["X-RateLimit-Reset"]) > time.time() + 20
    assert sendgrid.send(payload_for(1)).status_code == 202


def test_hang_times_the_client_out_then_recovers(server, sendgrid):
    set_fault(server["url"], "hang", count=1, hang_seconds=3)

    with pytest.raises(TimeoutError):
        sendgrid.client.mail.send.post(request_body=payload_for(1), timeout=0.5)
    assert sendgrid.send(payload_for(1)).status_code == 202
    assert get_stats(server["url"])["requests_by_status"] == {"hang": 1, "202": 1}
    # The held request's recipients are what the server had in flight.
    assert get_stats(server["url"])["hung_recipients"] == ["user0@example.com"]


def test_fault_without_count_lasts_until_changed(server, sendgrid):
    set_fault(server["url"], "503")
    for _ in range(3):
        assert send_expecting_error(sendgrid, payload_for(1)).status_code == 503

    set_fault(server["url"], "ok")
    assert sendgrid.send(payload_for(1)).status_code == 202


def test_reset_clears_faults_and_stats(server, sendgrid):
    set_fault(server["url"], "500")
    send_expecting_error(sendgrid, payload_for(1))

    reset(server["url"])

    assert get_stats(server["url"]) == {"requests_by_status": {}, "personalizations_accepted": 0,
                                        "hung_recipients": [], "seen_recipients": []}
    assert sendgrid.send(payload_for(1)).status_code == 202


def test_top_level_custom_args_object_is_refused_as_the_published_description_types_it_a_string(server, sendgrid):
    mail = build_mail([("ann@example.com", "Ann")])
    mail.add_custom_arg(CustomArg("campaign_id", "42"))  # the library's top-level object

    error = send_expecting_error(sendgrid, mail.get())

    assert error.status_code == 400
    assert error_fields(error) == ["custom_args"]
    assert 'is not of type "string"' in error.to_dict["errors"][0]["message"]
    assert read_records(server["record_file"]) == []


def test_whatever_else_the_description_refuses_is_refused_with_its_field(server, sendgrid):
    payload = payload_for(1)
    payload["categories"] = [f"category-{i}" for i in range(11)]  # maxItems: 10
    payload["personalizations"][0]["send_at"] = "tomorrow"  # an integer

    error = send_expecting_error(sendgrid, payload)

    assert error.status_code == 400
    assert sorted(error_fields(error)) == ["categories", "personalizations.0.send_at"]


@pytest.mark.parametrize("mode", ["400", "413"])
def test_request_level_fault_answers_with_sendgrids_error_body(server, sendgrid, mode):
    set_fault(server["url"], mode, count=1)

    error = send_expecting_error(sendgrid, payload_for(1))

    assert error.status_code == int(mode)
    assert error.to_dict["errors"][0]["field"] is None


@pytest.mark.parametrize("mode", ["502", "504"])
def test_gateway_fault_answers_html_and_after_accepting_records_the_request_first(server, sendgrid, mode):
    set_fault(server["url"], mode, count=2, after_accepting=True)

    for _ in range(2):
        error = send_expecting_error(sendgrid, payload_for(1))
        assert error.status_code == int(mode)
        assert error.headers["Content-Type"] == "text/html" and b"Gateway" in error.body

    assert len(read_records(server["record_file"])) == 2  # SendGrid took both; the client never heard
    assert get_stats(server["url"]) == {"requests_by_status": {f"{mode} after accepting": 2},
                                        "personalizations_accepted": 2, "hung_recipients": [],
                                        "seen_recipients": ["user0@example.com"] * 2}


def test_429_can_name_its_headers_in_lower_case_and_run_on_a_skewed_clock(server, sendgrid):
    set_fault(server["url"], "429", count=1, reset_after=2, header_case="lower", clock_offset=3600)

    error = send_expecting_error(sendgrid, payload_for(1))

    raw_names = [name for name, _ in error.headers.items()]
    assert "x-ratelimit-reset" in raw_names and "X-RateLimit-Reset" not in raw_names
    date = email.utils.parsedate_to_datetime(error.headers["Date"]).timestamp()
    assert date > time.time() + 3500
    assert 2 <= int(error.headers["x-ratelimit-reset"]) - date <= 3


def test_reject_to_answers_400_naming_each_matching_personalization_and_records_nothing(server, sendgrid):
    set_fault(server["url"], "ok", reject_to="^dead-")
    payload = build_mail([("ann@example.com", "Ann"), ("dead-1@example.com", "X"), ("dead-2@example.com", "Y")]).get()

    error = send_expecting_error(sendgrid, payload)

    assert error.status_code == 400
    fields = [e["field"] for e in json.loads(error.body)["errors"]]
    dead = [i for i, p in enumerate(payload["personalizations"]) if p["to"][0]["email"].startswith("dead-")]
    assert fields == [f"personalizations.{i}.to.0.email" for i in dead] and len(dead) == 2
    assert read_records(server["record_file"]) == []
    # The request reached the API, though: its addresses were seen (the chaos run's unknown rows may be them).
    assert sorted(get_stats(server["url"])["seen_recipients"]) == sorted(p["to"][0]["email"]
                                                                         for p in payload["personalizations"])
    assert sendgrid.send(payload_for(1)).status_code == 202  # other requests go through
