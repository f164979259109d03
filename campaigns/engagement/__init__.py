"""What happens after sending: opens (a person's or a machine's) and clicks (opens_and_clicks), and
every provider's events (provider_events), received through SendGrid's Event Webhook
(sendgrid_webhook) and Amazon SES through SNS (ses_webhook, sns): delivered, bounced, complained,
unsubscribed.

May import: the models, exceptions, campaigns.audience (suppression) and the sending ledger (an
event settles a delivery that was in flight). Sending never imports engagement.
"""
