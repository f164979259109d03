"""Template tags for the admin: the campaign overview (index), and numbers with thousands separators."""

from django import template

from campaigns import stats

register = template.Library()


@register.simple_tag
def campaign_overview():
    overview = stats.overview()
    overview["recent"] = [(c, stats.CampaignStats.of(c)) for c in overview["recent"]]
    return overview


@register.filter
def thousands(value):
    """12345 -> "12,345" (whatever the locale: the admin writes every count this way); other values as they are."""
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else value


@register.filter
def get_item(mapping, key):
    """mapping[key], or None (a template cannot index a dict by a variable)."""
    return (mapping or {}).get(key)
