"""Template tags for the admin index: the campaign overview."""

from django import template

from campaigns import stats

register = template.Library()


@register.simple_tag
def campaign_overview():
    overview = stats.overview()
    overview["recent"] = [(c, stats.CampaignStats.of(c)) for c in overview["recent"]]
    return overview
