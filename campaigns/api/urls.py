"""The API's URLs: /api/v1/ (the operations), /api/schema/ (OpenAPI 3), /api/docs/ (Swagger UI) and
/api/redoc/ (Redoc), both served from this site (drf-spectacular-sidecar: no CDN)."""

from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from campaigns.api import errors, views

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("campaigns", views.CampaignViewSet, basename="campaign")
router.register("imports", views.ImportViewSet, basename="import")
router.register("suppressions", views.SuppressionViewSet, basename="suppression")
router.register("sending-accounts", views.SendingAccountViewSet, basename="sending-account")
router.register("sending-pools", views.SendingPoolViewSet, basename="sending-pool")
router.register("webhook-endpoints", views.WebhookEndpointViewSet, basename="webhook-endpoint")
router.register("webhook-messages", views.WebhookMessageViewSet, basename="webhook-message")
router.register(r"campaigns/(?P<campaign_pk>\d+)/variants", views.VariantViewSet, basename="variant")

urlpatterns = [
    path("v1/", include(router.urls)),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema", template_name="api/swagger_ui.html"),
         name="api-docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api-schema", template_name="api/redoc.html"),
         name="api-redoc"),
    re_path(r"^", errors.not_found),  # any path, even one with a newline in it
]
