from django.contrib import admin
from django.urls import path

admin.site.site_header = "Bulk mailer"
admin.site.site_title = "Bulk mailer"
admin.site.index_title = "Campaigns and delivery"

urlpatterns = [
    path("admin/", admin.site.urls),
]
