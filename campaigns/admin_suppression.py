"""Suppression list in the admin: addresses that are never mailed again."""

from django.contrib import admin

from campaigns.models import Suppression


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    list_display = ("email", "reason", "source", "created_at")
    list_filter = ("reason",)
    search_fields = ("email",)
    raw_id_fields = ("campaign",)
