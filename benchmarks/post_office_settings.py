"""Settings for send_bench.py's django-post_office baseline: the project's settings plus `post_office`.

django-post_office is installed into var/pylib (not .venv) by the benchmark when missing; it is not a dependency.
"""

from mailer_project.settings import *  # noqa: F401,F403
from mailer_project.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "post_office"]
# post_office delivers through Django's SMTP backend (EMAIL_HOST / EMAIL_PORT point at the sink).
EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
