"""Messages from the bounce mailboxes (or process_bounce_mail) that could not be read as a bounce, a complaint
or an auto-reply: listed for staff to look at, never guessed (campaigns.engagement.bounce_mail). Read-only;
staff delete them once looked at."""

from django.contrib import admin
from django.utils.html import format_html

from campaigns.models import UnreadBounce

SHOWN_BYTES = 64 * 1024


class UnreadBounceAdmin(admin.ModelAdmin):
    list_display = ("received_at", "subject", "sender", "reason", "source")
    search_fields = ("subject", "sender", "reason")
    list_filter = ("source",)
    fields = ("received_at", "source", "sender", "subject", "reason", "message")
    readonly_fields = fields
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="Message as it arrived")
    def message(self, unread):
        raw = bytes(unread.raw)
        more = f"\n… ({len(raw) - SHOWN_BYTES:,} more bytes)" if len(raw) > SHOWN_BYTES else ""
        return format_html("<pre class='unread-bounce'>{}{}</pre>", raw[:SHOWN_BYTES].decode("utf-8", "replace"), more)
