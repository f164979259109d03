"""Outbound webhooks in the admin: endpoints (the secret shown once, in the message after adding one),
the messages sent to them with every attempt's status and first bytes of the answer, and replay."""

from django import forms
from django.contrib import admin, messages

from campaigns.models import WebhookAttempt, WebhookEndpoint, WebhookMessage
from campaigns.webhooks import endpoints
from campaigns.webhooks.events import EVENT_TYPES


class WebhookEndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=2000, assume_scheme="https")
    events = forms.MultipleChoiceField(choices=[(t, t) for t in EVENT_TYPES], widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = WebhookEndpoint
        fields = ("url", "description", "events", "enabled")

    def clean(self):
        data = super().clean()
        if data.get("url") and data.get("events"):
            try:
                endpoints.clean(data["url"], data["events"])
            except forms.ValidationError as error:
                raise forms.ValidationError(error.message_dict)
        return data


class WebhookEndpointAdmin(admin.ModelAdmin):
    form = WebhookEndpointForm
    list_display = ("url", "description", "enabled", "failing_since", "disabled_reason")
    list_filter = ("enabled",)
    readonly_fields = ("disabled_reason", "failing_since", "created_by", "created_at")

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if change:
            endpoints.update(obj, url=data["url"], description=data["description"], events=data["events"],
                             enabled=data["enabled"])
            return
        endpoint, secret = endpoints.create(request.user, data["url"], data["events"], data["description"],
                                            data["enabled"])
        obj.pk, obj.secret = endpoint.pk, endpoint.secret
        messages.warning(request, f"The endpoint's signing secret (shown only now, copy it): {secret}")


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    fields = ("at", "status_code", "response_head", "error", "duration_ms")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


class WebhookMessageAdmin(admin.ModelAdmin):
    list_display = ("webhook_id", "endpoint", "status", "event_count", "attempts", "next_attempt_at", "delivered_at")
    list_filter = ("status", "endpoint")
    readonly_fields = ("endpoint", "status", "event_count", "attempts", "next_attempt_at", "created_at",
                       "delivered_at", "body")
    inlines = [WebhookAttemptInline]
    actions = ["replay"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_replay_permission(self, request):
        return request.user.has_perm("campaigns.change_webhookendpoint")

    @admin.action(description="Replay selected messages (send again now)", permissions=["replay"])
    def replay(self, request, queryset):
        count = endpoints.replay(list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"{count} message{'s' * (count != 1)} will be sent again now.", messages.SUCCESS)
