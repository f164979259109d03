"""A Markdown body made into the HTML body (issue 25, item 10): merge tags kept, raw HTML shown as text."""

import pytest
from django.core.exceptions import ValidationError

from campaigns.message.markdown import markdown_to_html
from campaigns.message.rendering import compile_campaign, recipient_context
from campaigns.models import Campaign
from tests.support.factories import CampaignFactory

SOURCE = """# Hello {{ first_name|default:"there" }}

**{{ plan_name }}** ends soon, {{ first_name }}: *a_b_c* stays as it is.

<b>not HTML</b> & [bad](javascript:alert(1))

[Unsubscribe]({{ unsubscribe_url }})
"""


def test_markdown_becomes_html_with_its_merge_tags_as_written():
    html = markdown_to_html(SOURCE)
    assert '<h1>Hello {{ first_name|default:"there" }}</h1>' in html
    assert "<p><strong>{{ plan_name }}</strong> ends soon, {{ first_name }}: <em>a_b_c</em> stays as it is.</p>" in html
    assert "&lt;b&gt;not HTML&lt;/b&gt; &amp; [bad](javascript:alert(1))" in html  # text, and no javascript: link
    assert '<a href="{{ unsubscribe_url }}">Unsubscribe</a>' in html
    assert html.startswith("<!DOCTYPE html>")

    rendered = compile_campaign("Hi", html).render(recipient_context(
        "ann@example.com", "<Ann>", "", {"plan_name": "Pro & more"}, "https://example.com/u/x?a=1&b=2"))
    assert "<h1>Hello &lt;Ann&gt;</h1>" in rendered.html  # values escaped per recipient, as in any HTML body
    assert "<strong>Pro &amp; more</strong>" in rendered.html
    assert '<a href="https://example.com/u/x?a=1&amp;b=2">Unsubscribe</a>' in rendered.html


@pytest.mark.django_db
def test_a_markdown_campaign_saves_the_html_it_makes_and_is_checked_where_it_is_written():
    campaign = CampaignFactory(body_format=Campaign.BodyFormat.MARKDOWN, markdown_body=SOURCE.replace("plan_name", "email"))
    assert '<a href="{{ unsubscribe_url }}">Unsubscribe</a>' in Campaign.objects.get(pk=campaign.pk).html_body
    campaign.markdown_body = "Now *shorter*. [Unsubscribe]({{ unsubscribe_url }})"
    campaign.save(update_fields=["markdown_body"])  # the HTML follows
    assert "<p>Now <em>shorter</em>." in Campaign.objects.get(pk=campaign.pk).html_body
    campaign.markdown_body = "No way out"
    with pytest.raises(ValidationError) as refused:
        campaign.full_clean()
    assert "must contain an unsubscribe link" in str(refused.value.message_dict["markdown_body"])
