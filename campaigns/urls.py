"""Public URLs: links in emails and the SendGrid Event Webhook. Included at the site root."""

from django.urls import path

from campaigns import views

app_name = "public"

urlpatterns = [
    path("u/<str:token>/", views.unsubscribe, name="unsubscribe"),
    path("t/o/<str:token>/", views.open_pixel, name="open"),
    path("t/c/<str:token>/<int:index>/", views.click, name="click"),
    path("t/c/<str:token>/", views.click, name="click-legacy"),  # links mailed before one token per recipient
    path("webhooks/sendgrid/", views.sendgrid_webhook, name="sendgrid-webhook"),
]
