"""Mail providers: SendGrid (providers.sendgrid, its Event Webhook in providers.sendgrid_webhook) and SMTP
(providers.smtp) on a shared pipeline (providers.base). Their errors are in campaigns.exceptions."""

from campaigns.sending.providers.base import (  # noqa: F401
    Batch,
    DeliveryResult,
    Outcome,
    OutgoingMessage,
    Provider,
)
