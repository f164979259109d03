"""The admin, moved into a package; the next commit makes this module the only place that registers."""

from campaigns.admin import campaigns  # noqa: F401  (registers every ModelAdmin)
