"""Mail providers: SendGrid (providers.sendgrid) and SMTP (providers.smtp, with what each SMTP reply
means in providers.smtp_replies) on a shared pipeline (providers.base). Their errors are in
campaigns.exceptions; their events come back through campaigns.engagement.

May import: exceptions, campaigns.sending.ratelimit, campaigns.message.rendering and the security
helpers; never the models, so a provider sends what it is given.
"""

from campaigns.sending.providers.base import (  # noqa: F401
    Batch,
    DeliveryResult,
    Outcome,
    OutgoingMessage,
    Provider,
)
