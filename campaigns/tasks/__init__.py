"""Celery tasks, one module per queue (routes in mailer_project/celery.py go by module).

Each task is a thin shell over one plain function.
"""

from campaigns.tasks import scheduler, senders  # noqa: F401
from campaigns.tasks import imports, webhooks  # noqa: F401
