"""Bounce messages for the bounce mail tests: an RFC 3464 DSN and an RFC 5965 ARF report built around a
returned message (as Postfix and the mailbox providers write them), and the real samples in
tests/engagement/bounce_mail/samples/ with their failed address changed to one of ours."""

from pathlib import Path

SAMPLES = Path(__file__).resolve().parent.parent / "engagement" / "bounce_mail" / "samples"


def returned(to, token="", message_id="<original@example.com>"):
    lines = [f"From: Acme <news@example.com>", f"To: {to}", "Subject: News", f"Message-ID: {message_id}"]
    if token:
        lines.append(f"X-Mailer-Delivery: {token}")
    return "\r\n".join(lines) + "\r\n"


def dsn(to, status="5.1.1", diagnostic="smtp; 550 5.1.1 <{to}>: Recipient address rejected: User unknown",
        action="failed", token="", message_id="<original@example.com>", envelope_to="news@example.com",
        bounce_id="<bounce-1@mx.example.net>"):
    diagnostic = diagnostic.format(to=to)
    return (
        f"Return-Path: <>\r\nDelivered-To: {envelope_to}\r\nFrom: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\n"
        f"To: {envelope_to}\r\nSubject: Undelivered Mail Returned to Sender\r\nMessage-ID: {bounce_id}\r\n"
        "Date: Mon, 7 Dec 2026 10:00:00 +0000\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you that your message could not\r\n"
        "be delivered to one or more recipients.\r\n\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n"
        f"Final-Recipient: rfc822; {to}\r\nOriginal-Recipient: rfc822;{to}\r\nAction: {action}\r\n"
        f"Status: {status}\r\nDiagnostic-Code: {diagnostic}\r\n\r\n"
        f"--B\r\nContent-Type: text/rfc822-headers\r\n\r\n{returned(to, token, message_id)}\r\n--B--\r\n"
    ).encode()


def arf(to, token="", feedback_type="abuse", bounce_id="<arf-1@feedback.example.net>"):
    return (
        "From: feedback@feedback.example.net\r\nTo: fbl@example.com\r\nSubject: Complaint\r\n"
        f"Message-ID: {bounce_id}\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="F"\r\n\r\n'
        "--F\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n\r\n"
        "--F\r\nContent-Type: message/feedback-report\r\n\r\n"
        f"Feedback-Type: {feedback_type}\r\nUser-Agent: Example-FBL/1.0\r\nVersion: 1\r\nOriginal-Rcpt-To: {to}\r\n\r\n"
        f"--F\r\nContent-Type: message/rfc822\r\n\r\n{returned(to, token)}\r\nHello\r\n\r\n--F--\r\n"
    ).encode()


def sample(name, address=None):
    """A real sample's bytes; with ADDRESS, its failed recipient (per expected.jsonl) replaced by it."""
    import json

    raw = (SAMPLES / name).read_bytes()
    if address:
        for line in (SAMPLES / "expected.jsonl").read_text().splitlines():
            entry = json.loads(line)
            if entry["file"] == name:
                for result in entry["results"]:
                    raw = raw.replace(result["recipient"].encode(), address.encode())
    return raw
