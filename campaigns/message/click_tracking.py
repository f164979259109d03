"""Open and click tracking on the SMTP path (SendGrid does its own).

The campaign's HTML is rewritten once per version: each trackable link's href becomes a merge tag
({{ _t_click_0 }}, {{ _t_click_1 }}, ...) and an open pixel ({{ _t_open }}) goes before </body>. Each
recipient's values are signed URLs (campaigns.message.signed_links). A click token names a link by its index in
`campaign_links(html_body)`, which the redirect recomputes from the campaign itself, so the redirect
can only lead to a URL that the campaign's HTML contains.

Trackable: absolute http(s) hrefs of <a> tags without merge tags. Links built from recipient data
(e.g. "...?ref={{ email }}"), the unsubscribe link, mailto: and anchors are left as written.

The HTML is scanned once, left to right (`_anchor_hrefs`): each character is read a bounded number of
times, so the time is linear in the HTML's length. A backtracking pattern such as `<a\b[^>]*?\bhref`
rescans the rest of the document from every `<a`, which is quadratic: `<a <a <a …` (hidden in a comment)
would hold a worker, or the public click redirect, for hours.
"""

import html
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

from campaigns.message import signed_links
from campaigns.message.rendering import CompiledCampaign, compile_campaign, html_to_text

_A_TAG_START = re.compile(r"<a(?=[\s/>])", re.IGNORECASE)
# One attribute (or stray slashes) of a start tag, from where the previous one ended. Its name cannot
# start with a quote, so an unclosed quote ends the tag; a quoted value that finds no closing quote
# fails once per quote kind (there is none further on), which keeps the whole scan linear.
_ATTRIBUTE = re.compile(r"""[\s/]*(?:([^\s"'>/=]+)(?:\s*=\s*(?:("[^"]*"|'[^']*')|[^\s"'>]*))?)?""")
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)
OPEN_TAG = "_t_open"
PIXEL = ('<img src="{{ %s }}" width="1" height="1" alt="" '
         'style="display:block;width:1px;height:1px;border:0;margin:0;padding:0">' % OPEN_TAG)


def click_tag(index):
    return f"_t_click_{index}"


def _target(raw_href):
    """The URL a raw href attribute value leads to, if it is trackable; else None."""
    if "{{" in raw_href or "{%" in raw_href:
        return None
    url = html.unescape(raw_href).strip()
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url


def _anchor_hrefs(html_body: str):
    """(start, end) of each <a> tag's quoted href value, quotes included, in document order; linear time."""
    position, length = 0, len(html_body)
    while position < length:
        tag = _A_TAG_START.search(html_body, position)
        if tag is None:
            return
        at, found = tag.end(), False
        while True:
            attribute = _ATTRIBUTE.match(html_body, at)
            if attribute.end() == at:  # the tag's ">", the end of the HTML, or an unclosed quote
                break
            name, value = attribute.group(1), attribute.group(2)
            if not found and value and name.lower() == "href":
                found = True  # the first href counts, as in a browser
                yield attribute.start(2), attribute.end(2)
            at = attribute.end()
        position = at + 1


def hrefs(html_body: str) -> list[str]:
    """Every <a> href of the HTML as written (merge tags and all), in document order."""
    return [html_body[start + 1:end - 1] for start, end in _anchor_hrefs(html_body)]


def campaign_links(html_body: str) -> list[str]:
    """The trackable link targets of a campaign's HTML, in document order (index = click token's index)."""
    targets = (_target(raw) for raw in hrefs(html_body))
    return [url for url in targets if url is not None]


_links_cache = {}


def links_for_version(campaign_id, updated_at, load_html_body) -> list[str]:
    """campaign_links() of one campaign version, computed once per process.

    A click redirect calls this on every hit: only a new version (updated_at changes on every save)
    loads the HTML (load_html_body()) and runs the regex again.
    """
    key = (campaign_id, updated_at)
    cached = _links_cache.get(key)
    if cached is None:
        if len(_links_cache) > 256:
            _links_cache.clear()
        cached = _links_cache[key] = campaign_links(load_html_body() or "")
    return cached


def tracked_html(html_body: str) -> tuple[str, int]:
    """(HTML with click tags in trackable hrefs and an open pixel, number of trackable links)."""
    count, pieces, copied = 0, [], 0
    for start, end in _anchor_hrefs(html_body):
        if _target(html_body[start + 1:end - 1]) is None:
            continue
        pieces += [html_body[copied:start], f'"{{{{ {click_tag(count)} }}}}"']
        copied, count = end, count + 1
    rewritten = "".join(pieces) + html_body[copied:]
    ends = list(_BODY_END.finditer(rewritten))
    if ends:
        at = ends[-1].start()
        rewritten = rewritten[:at] + PIXEL + rewritten[at:]
    else:
        rewritten += PIXEL
    return rewritten, count


@dataclass(frozen=True)
class Tracking:
    """A campaign's tracked HTML, compiled, and the per-recipient values its tags need."""

    compiled: CompiledCampaign
    link_count: int

    def values(self, delivery_id) -> dict:
        # One tracking token per recipient (campaigns.message.signed_links) serves the pixel and every click link.
        base = f"{settings.SITE_URL}/t/"
        token = signed_links.tracking_token(delivery_id)
        values = {OPEN_TAG: f"{base}o/{token}/"}
        for index in range(self.link_count):
            values[click_tag(index)] = f"{base}c/{token}/{index}/"
        return values


_cache = {}


def tracking_for(campaign: dict) -> Tracking:
    """Tracking for a campaign row (id, updated_at, subject, html_body, text_body), once per version."""
    key = (campaign["id"], campaign["updated_at"], campaign.get("variant"))  # an A/B variant has its own
    cached = _cache.get(key)
    if cached is None:
        if len(_cache) > 64:
            _cache.clear()
        body, count = tracked_html(campaign["html_body"])
        # The plain-text part stays untracked: it is the HTML's text, from the untracked HTML.
        text = campaign["text_body"] if (campaign["text_body"] or "").strip() else html_to_text(campaign["html_body"])
        cached = _cache[key] = Tracking(compile_campaign(campaign["subject"], body, text), count)
    return cached
