"""Mail to staff (completion reports, a disabled webhook endpoint), sent through the environment's
providers (campaigns.sending.chain) as a test email is: no delivery log, never counted in a campaign."""

from django.conf import settings

from campaigns.message.rendering import compile_campaign
from campaigns.sending.chain import send_with_fallback
from campaigns.sending.providers.base import Batch, OutgoingMessage, Outcome


def _no_tags(text, html=False):
    """The mail is rendered already: nothing in it (a campaign's name, an error) may read as a merge tag."""
    return text.replace("{", "&#123;") if html else text.replace("{{", "{ {")


def send_to_staff(addresses, subject, text, html="", campaign_id=0, category="staff-notice"):
    """Send one message to each of ADDRESSES; returns (provider, the addresses it was sent to)."""
    compiled = compile_campaign(_no_tags(subject), _no_tags(html, True) if html else "", _no_tags(text))
    batch = Batch(campaign_id=campaign_id, from_email=settings.DEFAULT_FROM_EMAIL, reply_to="", compiled=compiled,
                  messages=[OutgoingMessage(delivery_id=0, email=a, context={"email": a}) for a in addresses],
                  categories=(category,))
    provider, results = send_with_fallback(batch)
    return provider, [m.email for m, r in zip(batch.messages, results) if r.outcome == Outcome.SENT]
