"""Public URLs: links in emails, the web version and archive, the SendGrid Event Webhook and Amazon SNS
(SES events). Included at the site root."""

from django.urls import path

from campaigns.views import sendgrid_webhook, ses_webhook, tracking, unsubscribe, web_version

app_name = "public"

urlpatterns = [
    path("u/<str:token>/", unsubscribe.unsubscribe, name="unsubscribe"),
    path("t/o/<str:token>/", tracking.open_pixel, name="open"),
    path("t/c/<str:token>/<int:index>/", tracking.click, name="click"),
    path("t/c/<str:token>/", tracking.click, name="click-legacy"),  # links mailed before one token per recipient
    path("w/<str:token>/", web_version.web_version, name="web-version"),
    path("archive/", web_version.archive_index, name="archive"),
    path("archive/<int:campaign_id>/", web_version.archive_campaign, name="archive-campaign"),
    path("webhooks/sendgrid/", sendgrid_webhook.sendgrid_webhook, name="sendgrid-webhook"),
    path("webhooks/ses/", ses_webhook.ses_webhook, name="ses-webhook"),
]
