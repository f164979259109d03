"""The admin's "Test connection" for a sending account: prove the settings work without mailing anyone.

- SMTP and Amazon SES: connect, EHLO, STARTTLS (or implicit TLS), AUTH, QUIT. Nothing is sent.
- SendGrid: one mail/send in sandbox mode (mail_settings.sandbox_mode), which SendGrid validates,
  key and permission included, and answers 200 without delivering anything.

`check_connection` returns (worked, message); the message never holds the secret.
"""

import smtplib
import urllib.error
from dataclasses import dataclass
from email.utils import parseaddr

from django.conf import settings
from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient

from campaigns.exceptions import ProviderRefused
from campaigns.models import SendingAccount
from campaigns.sending.providers.sendgrid import _error_messages
from campaigns.sending.routing import provider_for


@dataclass(frozen=True)
class CheckResult:
    worked: bool
    message: str


def check_connection(account: SendingAccount) -> CheckResult:
    try:
        provider = provider_for(account)
    except ProviderRefused as refused:
        return CheckResult(False, f"{account.name}: {refused}")
    if account.kind == SendingAccount.Kind.SENDGRID:
        return _check_sendgrid(account, provider)
    return _check_smtp(account, provider)


def _check_smtp(account, provider):
    where = f"{provider.host}:{provider.port}"
    steps = {"starttls": "EHLO, STARTTLS, EHLO", "tls": "implicit TLS, EHLO", "none": "EHLO (no TLS)"}[
        provider.security]
    try:
        conn = provider.connect_and_log_in()
    except smtplib.SMTPAuthenticationError as exc:
        return CheckResult(False, f"{account.name}: {where} refused the user name and password: {exc.smtp_code} "
                                  f"{exc.smtp_error.decode('utf-8', 'replace')}")
    except smtplib.SMTPNotSupportedError as exc:
        return CheckResult(False, f"{account.name}: {where} does not support what this account needs ({exc}); "
                                  f"check the security setting and the port.")
    except (smtplib.SMTPException, OSError) as exc:
        return CheckResult(False, f"{account.name}: could not connect to {where}: {exc}")
    try:
        conn.quit()
    except (smtplib.SMTPException, OSError):
        pass
    auth = f", AUTH as {account.username}" if account.username else " (no AUTH: no user name set)"
    return CheckResult(True, f"{account.name}: {where} answered: connected, {steps}{auth}, QUIT. Nothing was sent.")


def _check_sendgrid(account, provider):
    domains = sorted(account.domains())
    sender = f"check@{domains[0]}" if domains else parseaddr(settings.DEFAULT_FROM_EMAIL)[1]
    payload = {
        "personalizations": [{"to": [{"email": sender}]}],
        "from": {"email": sender},
        "subject": "Connection test (sandbox mode: not delivered)",
        "content": [{"type": "text/plain", "value": "Connection test."}],
        "mail_settings": {"sandbox_mode": {"enable": True}},
    }
    client = SendGridAPIClient(api_key=provider.api_key, host=provider.host)
    try:
        response = client.client.mail.send.post(request_body=payload, timeout=provider.timeout)
    except HTTPError as exc:
        _errors, summary = _error_messages(exc.body)
        hint = " (the API key is wrong or lacks the Mail Send permission)" if exc.status_code in (401, 403) else ""
        return CheckResult(False, f"{account.name}: SendGrid at {provider.host} answered {exc.status_code}{hint}: "
                                  f"{summary or 'no details'}")
    except urllib.error.URLError as exc:
        return CheckResult(False, f"{account.name}: could not reach SendGrid at {provider.host}: {exc.reason}")
    except OSError as exc:
        return CheckResult(False, f"{account.name}: SendGrid at {provider.host} did not answer: {exc}")
    return CheckResult(True, f"{account.name}: SendGrid at {provider.host} accepted the key (sandbox-mode send "
                             f"answered {response.status_code}). Nothing was delivered.")
