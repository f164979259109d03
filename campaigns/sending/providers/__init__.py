"""Mail providers: SendGrid (providers.sendgrid) and SMTP (providers.smtp) on a shared pipeline (providers.base)."""

from campaigns.sending.providers.base import (  # noqa: F401
    Batch,
    DeliveryResult,
    Outcome,
    OutgoingMessage,
    Provider,
    ProviderError,
    ProviderRefused,
    ProviderUnavailable,
    RateLimited,
    RecipientsRejected,
    TemporaryError,
)
