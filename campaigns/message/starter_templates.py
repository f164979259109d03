"""Loads the starter templates in email_templates/ as EmailTemplate rows (idempotent)."""

import html
import re
from pathlib import Path

from django.conf import settings
from django.db import transaction

from campaigns.message.rendering import html_to_text
from campaigns.models import EmailTemplate

TEMPLATES_DIR = Path(settings.BASE_DIR) / "email_templates"
STARTERS = {
    "welcome_email": ("Welcome email", "Greets a new subscriber with three getting-started steps."),
    "newsletter": ("Newsletter", "A monthly digest: a lead story and a few short items."),
    "promotional": ("Promotional", "A sale announcement with a discount code."),
    "event_invitation": ("Event invitation", "Invites recipients to an event, with date, place and RSVP."),
    "product_update": ("Product update", "Announces new features with a link to the changelog."),
}
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def read_starter(key):
    """Return (subject, html) of the starter template KEY; the subject is the HTML's <title>."""
    body = (TEMPLATES_DIR / f"{key}.html").read_text(encoding="utf-8")
    match = _TITLE.search(body)
    if not match:
        raise ValueError(f"email_templates/{key}.html has no <title>: it holds the subject line.")
    return " ".join(html.unescape(match.group(1)).split()), body


@transaction.atomic
def load_starter_templates():
    """Create or update one EmailTemplate per starter; return (created, updated) counts."""
    created = updated = 0
    for key, (name, description) in STARTERS.items():
        subject, body = read_starter(key)
        _, was_created = EmailTemplate.objects.update_or_create(
            key=key,
            defaults={"name": name, "description": description, "subject": subject, "html_body": body,
                      "text_body": html_to_text(body), "is_starter": True},
        )
        created += was_created
        updated += not was_created
    return created, updated
