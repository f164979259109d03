"""Change-list cells shared by the admin's lists."""

from django.utils.html import format_html


def one_line(css_class, text):
    """TEXT cut to one line by CSS_CLASS (campaign.css), shown whole on hover: the lists fit at 1280 px."""
    return format_html('<span class="{}" title="{}">{}</span>', css_class, text, text)
