"""Celery tasks, one module per queue (routes in mailer_project/celery.py go by module).

Each task is a thin shell over one plain function.
"""

from campaigns.tasks import bounces, imports, scheduler, senders, webhooks  # noqa: F401  # noqa: F401
