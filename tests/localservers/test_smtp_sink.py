import smtplib
from email.message import EmailMessage

import pytest

from localservers.serving import running
from localservers.smtp_sink import count_messages, read_messages, write_control


@pytest.fixture(scope="module")
def sink(tmp_path_factory):
    base = tmp_path_factory.mktemp("sink")
    maildir = base / "mail"
    with running("smtp_sink", "--maildir", maildir, "--reject-rcpt", "bounce.*@",
                 log_path=base / "sink.log") as (_, port):
        yield {"port": port, "maildir": maildir, "control": base / "sink-control.json"}


@pytest.fixture
def smtp(sink):
    # Every test starts from an empty maildir and the command-line faults only.
    for path in sink["maildir"].glob("*.eml"):
        path.unlink()
    sink["control"].unlink(missing_ok=True)
    with smtplib.SMTP("127.0.0.1", sink["port"], timeout=10) as client:
        yield client


def make_message(subject, body, to="reader@example.com"):
    message = EmailMessage()
    message["From"] = "Sender <sender@example.com>"
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    return message


def test_each_message_is_stored_with_its_envelope_and_body(sink, smtp):
    smtp.send_message(make_message("Plain", "Hello there.\n.A line starting with a dot\n"))
    smtp.send_message(make_message("Grüße aus Köln", "Ünïcödé body: 東京 ✓\n"))
    smtp.send_message(make_message("Team news", "For all of you.\n", to="a@example.com"),
                      to_addrs=["a@example.com", "b@example.org", "c@example.net"])

    assert count_messages(sink["maildir"]) == 3
    plain, unicode, team = read_messages(sink["maildir"])

    assert plain["X-Sink-Mail-From"] == "sender@example.com"
    assert plain["X-Sink-Rcpt-To"] == "reader@example.com"
    assert plain.get_content() == "Hello there.\n.A line starting with a dot\n"

    assert unicode["Subject"] == "Grüße aus Köln"
    assert unicode.get_content() == "Ünïcödé body: 東京 ✓\n"

    assert team["X-Sink-Rcpt-To"] == "a@example.com, b@example.org, c@example.net"
    assert team["Subject"] == "Team news"


def test_any_credentials_are_accepted(sink, smtp):
    smtp.login("whoever", "whatever")
    smtp.send_message(make_message("After login", "Logged in.\n"))

    [message] = read_messages(sink["maildir"])
    assert message.get_content() == "Logged in.\n"


def test_reject_flag_refuses_only_matching_recipients_with_550(sink, smtp):
    refused = smtp.sendmail("sender@example.com", ["ok@example.com", "bounce-1@example.com"],
                            make_message("Mixed", "Hi\n").as_bytes())

    assert list(refused) == ["bounce-1@example.com"]
    assert refused["bounce-1@example.com"][0] == 550
    [message] = read_messages(sink["maildir"])
    assert message["X-Sink-Rcpt-To"] == "ok@example.com"

    with pytest.raises(smtplib.SMTPRecipientsRefused) as excinfo:
        smtp.sendmail("sender@example.com", ["bounce-2@example.com"], b"Subject: x\r\n\r\nx\r\n")
    assert excinfo.value.recipients["bounce-2@example.com"][0] == 550
    assert count_messages(sink["maildir"]) == 1


def test_control_file_defers_matching_recipients_with_451_until_removed(sink, smtp):
    write_control(sink["control"], defer_rcpt="^later@")

    refused = smtp.sendmail("sender@example.com", ["now@example.com", "later@example.com"],
                            b"Subject: x\r\n\r\nx\r\n")
    assert {rcpt: code for rcpt, (code, _) in refused.items()} == {"later@example.com": 451}

    sink["control"].unlink()
    refused = smtp.sendmail("sender@example.com", ["later@example.com"], b"Subject: y\r\n\r\ny\r\n")
    assert refused == {}
    assert [m["X-Sink-Rcpt-To"] for m in read_messages(sink["maildir"])] == [
        "now@example.com", "later@example.com"]


def test_control_file_replaces_the_reject_flag(sink, smtp):
    write_control(sink["control"], reject_rcpt="vip@")

    assert smtp.sendmail("s@example.com", ["bounce-3@example.com"], b"Subject: x\r\n\r\nx\r\n") == {}
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        smtp.sendmail("s@example.com", ["vip@example.com"], b"Subject: x\r\n\r\nx\r\n")


def test_control_file_drops_each_connection_after_n_messages(sink, smtp):
    write_control(sink["control"], drop_after=2)

    smtp.sendmail("s@example.com", ["one@example.com"], b"Subject: 1\r\n\r\n1\r\n")
    smtp.sendmail("s@example.com", ["two@example.com"], b"Subject: 2\r\n\r\n2\r\n")
    with pytest.raises(smtplib.SMTPServerDisconnected):
        smtp.sendmail("s@example.com", ["three@example.com"], b"Subject: 3\r\n\r\n3\r\n")
    assert count_messages(sink["maildir"]) == 2

    with smtplib.SMTP("127.0.0.1", sink["port"], timeout=10) as fresh:
        fresh.sendmail("s@example.com", ["three@example.com"], b"Subject: 3\r\n\r\n3\r\n")
    assert count_messages(sink["maildir"]) == 3


# The chaos run's faults (tests/chaos): refusals of the sender, 421 and cut connections at each phase.

@pytest.mark.parametrize("refuse, code, text", [
    ("relay", 554, "5.7.1"), ("sender", 550, "5.1.0 <s@example.com>: Sender address rejected")])
def test_control_file_refuses_every_recipient_with_a_refusal_of_us(sink, smtp, refuse, code, text):
    write_control(sink["control"], refuse=refuse)

    with pytest.raises(smtplib.SMTPRecipientsRefused) as excinfo:
        smtp.sendmail("s@example.com", ["ok@example.com"], b"Subject: x\r\n\r\nx\r\n")
    answer_code, answer = excinfo.value.recipients["ok@example.com"]
    assert answer_code == code and text in answer.decode()
    assert count_messages(sink["maildir"]) == 0


def test_control_file_refuses_authentication_with_535(sink, smtp):
    write_control(sink["control"], refuse="auth")

    with pytest.raises(smtplib.SMTPAuthenticationError) as excinfo:
        smtp.login("user", "any password")
    assert excinfo.value.smtp_code == 535


def test_a_421_at_rcpt_closes_the_connection_for_matching_recipients_only(sink, smtp):
    write_control(sink["control"], fault_rcpt="^flaky@", fault_at="rcpt", fault_reply="421")

    smtp.sendmail("s@example.com", ["fine@example.com"], b"Subject: 1\r\n\r\n1\r\n")
    with pytest.raises((smtplib.SMTPRecipientsRefused, smtplib.SMTPServerDisconnected)):
        smtp.sendmail("s@example.com", ["flaky@example.com"], b"Subject: 2\r\n\r\n2\r\n")
    assert [m["X-Sink-Rcpt-To"] for m in read_messages(sink["maildir"])] == ["fine@example.com"]


def test_a_421_after_the_content_stores_nothing_and_a_drop_after_it_stores_the_message(sink, smtp):
    write_control(sink["control"], fault_rcpt="^flaky@", fault_at="data", fault_reply="421")
    with pytest.raises((smtplib.SMTPDataError, smtplib.SMTPServerDisconnected)):
        smtp.sendmail("s@example.com", ["flaky@example.com"], b"Subject: 1\r\n\r\n1\r\n")
    assert count_messages(sink["maildir"]) == 0

    write_control(sink["control"], fault_rcpt="^flaky@", fault_at="data", fault_reply="drop")
    with smtplib.SMTP("127.0.0.1", sink["port"], timeout=10) as fresh:
        with pytest.raises(smtplib.SMTPServerDisconnected):
            fresh.sendmail("s@example.com", ["flaky@example.com"], b"Subject: 2\r\n\r\n2\r\n")
    # The server has the message; the client never heard so.
    assert [m["X-Sink-Rcpt-To"] for m in read_messages(sink["maildir"])] == ["flaky@example.com"]


def test_a_hang_after_the_content_times_the_client_out_with_the_message_stored(sink, smtp):
    write_control(sink["control"], fault_rcpt="^slow@", fault_at="data", fault_reply="hang", hang_seconds=3)

    with smtplib.SMTP("127.0.0.1", sink["port"], timeout=0.5) as impatient:
        with pytest.raises((TimeoutError, smtplib.SMTPServerDisconnected)):
            impatient.sendmail("s@example.com", ["slow@example.com"], b"Subject: 1\r\n\r\n1\r\n")
    assert count_messages(sink["maildir"]) == 1


def test_every_nth_mail_from_gets_421(sink, smtp):
    write_control(sink["control"], mail_421_every=2)
    smtp.sendmail("s@example.com", ["one@example.com"], b"Subject: 1\r\n\r\n1\r\n")  # the count starts anew
    outcomes = []
    for n in range(4):
        try:
            with smtplib.SMTP("127.0.0.1", sink["port"], timeout=10) as fresh:
                fresh.sendmail("s@example.com", [f"n{n}@example.com"], b"Subject: n\r\n\r\nn\r\n")
            outcomes.append("stored")
        except (smtplib.SMTPSenderRefused, smtplib.SMTPServerDisconnected):
            outcomes.append("421")
    assert sorted(outcomes) == ["421", "421", "stored", "stored"]


def test_a_throttled_domain_gets_421_tss04_the_first_n_times_then_its_mail_is_taken(sink, smtp):
    write_control(sink["control"], throttle_rcpt=r"@yahoo\.com$", throttle_times=2)
    smtp.sendmail("s@example.com", ["other@example.com"], b"Subject: 0\r\n\r\n0\r\n")  # another domain: taken
    replies = []
    for n in range(3):
        with smtplib.SMTP("127.0.0.1", sink["port"], timeout=10) as fresh:
            fresh.ehlo()
            fresh.mail("s@example.com")
            replies.append(fresh.rcpt(f"y{n}@yahoo.com"))
    assert [code for code, _ in replies] == [421, 421, 250]
    assert b"4.7.0 [TSS04]" in replies[0][1]
