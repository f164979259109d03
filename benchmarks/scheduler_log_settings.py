"""The project's settings, plus one log line per finished task (Celery's own "Task ... succeeded in"
line), for the benchmark's scheduler worker only: send_bench.py reads when start_campaign finished
(delivery rows created and every batch dispatched). The sender workers keep the project's settings."""

from mailer_project.settings import *  # noqa: F401,F403
from mailer_project.settings import LOGGING

LOGGING = {**LOGGING, "loggers": {**LOGGING["loggers"],
                                  "celery.app.trace": {"handlers": ["console"], "level": "INFO",
                                                       "propagate": False}}}
