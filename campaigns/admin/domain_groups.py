"""Receiving domain groups in the admin: the domains one mailbox provider serves, the limits we keep
towards it and its backoff (campaigns.sending.domain_groups); and which campaigns hold each back now."""

from django import forms
from django.contrib import admin
from django.utils import timezone

from campaigns.models import DomainGroup


class DomainsField(forms.CharField):
    """The domains as one comma- or line-separated text."""

    def prepare_value(self, value):
        return ", ".join(value) if isinstance(value, (list, tuple)) else value

    def to_python(self, value):
        text = super().to_python(value) or ""
        return [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]


class DomainGroupForm(forms.ModelForm):
    domains = DomainsField(widget=forms.Textarea(attrs={"rows": 3}),
                           help_text="Receiving domains, separated by commas or lines, e.g. yahoo.com, aol.com. "
                                     "A domain belongs to one group.")

    class Meta:
        model = DomainGroup
        fields = ("name", "domains", "enabled", "per_second", "per_minute", "per_hour", "backoff_seconds")


class DomainGroupAdmin(admin.ModelAdmin):
    form = DomainGroupForm
    list_display = ("name", "domain_list", "enabled", "per_second", "per_minute", "per_hour", "backoff_seconds",
                    "held_now")
    list_editable = ("enabled",)
    search_fields = ("name", "domains")

    @admin.display(description="Domains")
    def domain_list(self, group):
        return ", ".join(group.domains)

    @admin.display(description="Campaigns holding it back now")
    def held_now(self, group):
        return group.holds.filter(until__gt=timezone.now()).count()
