"""A campaign's Markdown body made into its HTML body (markdown-it-py, CommonMark with tables and strikethrough).

The HTML is made when the campaign is saved (Campaign.save), so sending, preflight and the previews only
ever read the HTML body. Merge tags pass through unchanged: each is swapped for a random placeholder of
letters and digits (which Markdown leaves alone, in text and in link addresses alike) and put back after,
so [Unsubscribe]({{ unsubscribe_url }}) is a link and {{ first_name|default:"there" }} keeps its quotes;
their values are escaped per recipient when rendered, as in any HTML body. Raw HTML in the Markdown is
shown as text, not passed through (choose the HTML format to write HTML), and markdown-it refuses
javascript: and similar link addresses.
"""

import re
import secrets

from markdown_it import MarkdownIt

_TAG = re.compile(r"\{\{.*?\}\}", re.DOTALL)
_PARSER = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(
    ["table", "strikethrough"])
_PAGE = ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
         '<meta name="viewport" content="width=device-width, initial-scale=1">\n</head>\n'
         '<body style="margin: 0; padding: 24px 16px; font-family: -apple-system, \'Segoe UI\', Helvetica, Arial, '
         'sans-serif; font-size: 16px; line-height: 1.5; color: #1f2933;">\n'
         '<div style="max-width: 600px; margin: 0 auto;">\n{body}</div>\n</body>\n</html>\n')


def markdown_to_html(source: str) -> str:
    """The email HTML of the Markdown SOURCE, its merge tags kept as written."""
    nonce = secrets.token_hex(4)
    tags = []

    def hide(match):
        tags.append(match.group())
        return f"mergetag{nonce}n{len(tags) - 1}x"

    body = _PARSER.render(_TAG.sub(hide, source or ""))
    body = re.sub(f"mergetag{nonce}n(\\d+)x", lambda match: tags[int(match.group(1))], body)
    return _PAGE.format(body=body)
