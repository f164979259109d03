"""The admin's "Test connection" for a sending account: prove the settings work without mailing anyone.

- SMTP and Amazon SES: connect, EHLO, STARTTLS (or implicit TLS), AUTH, QUIT. Nothing is sent.
- SendGrid: one mail/send in sandbox mode (mail_settings.sandbox_mode), which SendGrid validates,
  key and permission included, and answers 200 without delivering anything.

`check_connection` returns (worked, message); the message never holds the secret.

Staff ask for a check in the admin (`request_checks`); it runs on the scheduler worker (`run_check`),
never in the web request: a check can wait 30 s for an unreachable host, and a dozen of those would
hold every web thread. One check at a time per account: asking again while one is queued or running
says so and queues nothing (a conditional update of `check_requested_at`). A failed check is recorded as
the account's "Last error" (with its time); a check that works clears it.
"""

import datetime as dt
import logging
import smtplib
import urllib.error
from dataclasses import dataclass
from email.utils import parseaddr

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient

from campaigns.exceptions import ProviderRefused
from campaigns.models import SendingAccount, quoted_name
from campaigns.security.logsafe import excerpt
from campaigns.sending.providers.sendgrid import _error_messages
from campaigns.sending.routing import provider_for


logger = logging.getLogger(__name__)

CHECK_TASK = "campaigns.tasks.scheduler.check_account_connection"
# A check asked for longer ago than this is taken as lost (a worker died): it may be asked for again.
CHECK_STALE_AFTER = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class CheckResult:
    worked: bool
    message: str


@dataclass(frozen=True)
class CheckRequests:
    queued: list  # names of the accounts whose check was queued
    busy: list  # names of the accounts already being checked


def request_checks(account_ids, user_id=None) -> CheckRequests:
    """Queue one connection check per account, except for accounts whose check is queued or running."""
    queued, busy = [], []
    now = timezone.now()
    for account_id, name in SendingAccount.objects.filter(pk__in=account_ids).values_list("pk", "name"):
        claimed = SendingAccount.objects.filter(
            Q(check_requested_at__isnull=True) | Q(check_requested_at__lt=now - CHECK_STALE_AFTER), pk=account_id,
        ).update(check_requested_at=now)
        if not claimed:
            busy.append(name)
            continue
        queued.append(name)
        logger.info("Connection check of sending account %s asked for by user %s", account_id, user_id)
        label = f"account {account_id} {quoted_name(name)}"
        transaction.on_commit(lambda account_id=account_id, label=label: current_app.send_task(
            CHECK_TASK, kwargs={"account_id": account_id}, argsrepr=label))
    return CheckRequests(queued, busy)


def run_check(account_id) -> bool | None:
    """The worker's side: check the account, keep the result on it, free it for the next check."""
    account = SendingAccount.objects.filter(pk=account_id).first()
    if account is None:
        return None
    try:
        result = check_connection(account)
    except Exception as error:  # an unexpected failure is a result too, and must free the account
        result = CheckResult(False, f"{account.name}: the check failed: {type(error).__name__}")
        logger.exception("Connection check of sending account %s failed", account_id)
    now = timezone.now()
    # A failed check is the account's last error too, with its time; one that works clears it.
    error = {"last_error": "", "last_error_at": None} if result.worked else {
        "last_error": f"Test connection failed: {result.message}", "last_error_at": now}
    SendingAccount.objects.filter(pk=account_id).update(
        check_requested_at=None, last_check_at=now, last_check_worked=result.worked,
        last_check_message=result.message, **error)
    logger.info("Connection check of sending account %s: %s", account_id, "worked" if result.worked else "failed")
    return result.worked


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
                                  f"{excerpt(exc.smtp_error.decode('utf-8', 'replace'))}")
    except smtplib.SMTPNotSupportedError as exc:
        return CheckResult(False, f"{account.name}: {where}: not done ({excerpt(exc)}); check the security setting "
                                  f"and the port.")
    except (smtplib.SMTPException, OSError) as exc:
        return CheckResult(False, f"{account.name}: could not connect to {where}: {excerpt(exc)}")
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
                                  f"{excerpt(summary) or 'no details'}")
    except urllib.error.URLError as exc:
        return CheckResult(False, f"{account.name}: could not reach SendGrid at {provider.host}: {excerpt(exc.reason)}")
    except OSError as exc:
        return CheckResult(False, f"{account.name}: SendGrid at {provider.host} did not answer: {excerpt(exc)}")
    return CheckResult(True, f"{account.name}: SendGrid at {provider.host} accepted the key (sandbox-mode send "
                             f"answered {response.status_code}). Nothing was delivered.")
