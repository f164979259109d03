"""Staff's own API tokens in the admin: make one (shown once, in the message after saving), see when each
was last used, revoke. A superuser sees everyone's; others only their own."""

from django import forms
from django.contrib import admin, messages

from campaigns.api import tokens
from campaigns.models import ApiToken
from campaigns.security import permissions


class ApiTokenForm(forms.ModelForm):
    expires_in_days = forms.IntegerField(required=False, min_value=1, max_value=3650,
                                         help_text="Empty: never expires.")

    class Meta:
        model = ApiToken
        fields = ("name",)


class ApiTokenAdmin(admin.ModelAdmin):
    form = ApiTokenForm
    list_display = ("name", "prefix", "user", "created_at", "expires_at", "last_used_at", "state")
    readonly_fields = ("prefix", "user", "created_at", "expires_at", "last_used_at", "revoked_at")
    actions = ["revoke_selected"]

    @admin.display(description="State")
    def state(self, row):
        if row.revoked_at:
            return "revoked"
        return "active" if tokens.is_active(row) else "expired"

    def get_queryset(self, request):
        rows = super().get_queryset(request).select_related("user")
        return rows if request.user.is_superuser else rows.filter(user=request.user)

    def get_fields(self, request, obj=None):
        return ("name", "expires_in_days") if obj is None else ("name", *self.readonly_fields)

    # Every active staff user manages their own tokens (what a token may do is its user's permissions).
    def has_module_permission(self, request):
        return permissions.is_staff(request.user)

    def has_view_permission(self, request, obj=None):
        return permissions.is_staff(request.user) and (obj is None or obj.user_id == request.user.pk
                                                       or request.user.is_superuser)

    def has_add_permission(self, request):
        return permissions.is_staff(request.user)

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # revoked, never deleted: the list keeps when each was used

    def save_model(self, request, obj, form, change):
        row, token = tokens.create_token(request.user, form.cleaned_data["name"], form.cleaned_data["expires_in_days"])
        obj.pk, obj.prefix, obj.user, obj.created_at = row.pk, row.prefix, row.user, row.created_at
        messages.warning(request, f"Your new API token (shown only now, copy it): {token}")

    def log_addition(self, request, obj, message):
        return None  # the row was made by tokens.create_token

    @admin.action(description="Revoke selected tokens")
    def revoke_selected(self, request, queryset):
        ids = [row.pk for row in queryset if row.user_id == request.user.pk or request.user.is_superuser]
        count = sum(tokens.revoke(token_id) for token_id in ids)
        self.message_user(request, f"Revoked {count} token{'s' * (count != 1)}.", messages.SUCCESS)

