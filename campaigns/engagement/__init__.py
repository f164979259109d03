"""What happens after sending: opens (a person's or a machine's) and clicks (opens_and_clicks), and
every provider's events (provider_events), received through SendGrid's Event Webhook
(sendgrid_webhook) and Amazon SES through SNS (ses_webhook, sns): delivered, bounced, complained,
unsubscribed; and bounces and complaints that come back by mail (bounce_mail/).

May import: the models, exceptions, campaigns.audience (suppression) and the sending ledger (an
event settles a delivery that was in flight); bounce_mail also campaigns.message.signed_links (the signed
bounce token). Sending never imports engagement.
"""
