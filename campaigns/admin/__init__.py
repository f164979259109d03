"""The staff product: every model's admin, registered here and only here.

One module per admin area; each ModelAdmin names its own URLs in get_urls, its pages and actions are its
methods, and every staff action runs through staff_actions.perform.
"""

from django.contrib import admin

from campaigns.admin.api_tokens import ApiTokenAdmin
from campaigns.admin.campaigns import CampaignAdmin, EmailTemplateAdmin
from campaigns.admin.delivery_logs import DeliveryLogAdmin, RecipientAdmin
from campaigns.admin.domain_groups import DomainGroupAdmin
from campaigns.admin.imports import RecipientImportAdmin
from campaigns.admin.sending_accounts import SendingAccountAdmin, SendingPoolAdmin
from campaigns.admin.suppression import SuppressionAdmin
from campaigns.admin.unread_bounces import UnreadBounceAdmin
from campaigns.admin.webhooks import WebhookEndpointAdmin, WebhookMessageAdmin
from campaigns.models import (
    ApiToken,
    Campaign,
    DeliveryLog,
    DomainGroup,
    EmailTemplate,
    Recipient,
    RecipientImport,
    SendingAccount,
    SendingPool,
    Suppression,
    UnreadBounce,
    WebhookEndpoint,
    WebhookMessage,
)

admin.site.register(EmailTemplate, EmailTemplateAdmin)
admin.site.register(Campaign, CampaignAdmin)
admin.site.register(Recipient, RecipientAdmin)
admin.site.register(DeliveryLog, DeliveryLogAdmin)
admin.site.register(RecipientImport, RecipientImportAdmin)
admin.site.register(Suppression, SuppressionAdmin)
admin.site.register(SendingAccount, SendingAccountAdmin)
admin.site.register(SendingPool, SendingPoolAdmin)
admin.site.register(DomainGroup, DomainGroupAdmin)
admin.site.register(UnreadBounce, UnreadBounceAdmin)
admin.site.register(ApiToken, ApiTokenAdmin)
admin.site.register(WebhookEndpoint, WebhookEndpointAdmin)
admin.site.register(WebhookMessage, WebhookMessageAdmin)
