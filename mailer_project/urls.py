from django.contrib import admin
from django.urls import include, path

from campaigns.views import health

admin.site.site_header = "Bulk mailer"
admin.site.site_title = "Bulk mailer"
admin.site.index_title = "Campaigns and delivery"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("campaigns.api.urls")),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("", include("campaigns.urls")),
]
