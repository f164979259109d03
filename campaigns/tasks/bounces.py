"""Tasks on the `bounces` queue: the sending accounts' bounce mailboxes, read every minute.

A queue of its own: a slow or unreachable mail server never delays starting a campaign or sending.
"""

from celery import shared_task

from campaigns.engagement.bounce_mail import mailbox


@shared_task
def poll_bounce_mailboxes() -> list:
    return [result.__dict__ for result in mailbox.poll_all()]
