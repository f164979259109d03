"""Merge tags: parsing, validation, per-recipient rendering, SendGrid substitutions, HTML → text.

A template is compiled once per batch into a plan: its literal pieces, with holes for "slots"
(tag name, default, part). Rendering a recipient resolves each slot's value once, drops the values
into the holes and joins (no parsing or regex per recipient); the SendGrid body is the same plan filled with substitution keys instead, so the two
paths cannot drift apart.

Substitution keys look like ``[%first_name|d1|h:3fa9c2e1%]``: the tag name, which default (d1,
d2, …), the part's escaping (``h`` HTML-escaped, ``s`` subject, none for text) and a random
nonce drawn when the campaign is compiled. SendGrid replaces keys by plain string replacement
in an order it does not document; the nonce is what keeps that order irrelevant. Recipient data
is stored before the nonce exists, so no value (and no literal text of the template) can contain
a key, even across the boundary between a value and the text next to it — a value such as
``[%email%]`` is sent as it is and never re-substituted.
"""

import html
import re
import secrets
from dataclasses import dataclass
from html.parser import HTMLParser

from django.core.exceptions import ValidationError

from campaigns.exceptions import MergeTagError

STANDARD_TAGS = ("email", "first_name", "last_name", "unsubscribe_url", "web_url")
# Tags every recipient has a value for: links the sending path signs for each of them.
LINK_TAGS = ("unsubscribe_url", "web_url")
# What an imported column name becomes (campaigns.audience.importing.headers.merge_tag_name). A data key of any
# other shape (planted by hand, or from an old import) is never offered, accepted or rendered as a tag.
MERGE_TAG_NAME = re.compile(r"[a-z][a-z0-9_]*")

_TAG = re.compile(
    r"""\{\{\s*(?P<name>\w+)\s*(?:\|\s*default\s*:\s*(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)')\s*)?\}\}"""
)
# Every character Python treats as a line break; any of them in a header could start a new one.
_LINE_BREAKS = re.compile(r"[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]+")
_SNIPPET_MAX = 60
# The most HTML or text a campaign, variant or template may hold, checked where it is entered (model
# validation, so the admin's forms and the API say so). Real newsletters are tens of KB; the cap keeps
# every scan of the content (links, tags, preflight) small.
MAX_CONTENT_BYTES = 512 * 1024


def refuse_oversized_content(value):
    """Validator: content over MAX_CONTENT_BYTES (UTF-8) is refused with its size and the limit."""
    size = len(value.encode("utf-8", "surrogatepass")) if len(value) * 4 > MAX_CONTENT_BYTES else len(value)
    if size > MAX_CONTENT_BYTES:
        raise ValidationError(f"This is {size / 1024:,.0f} KB; the limit is {MAX_CONTENT_BYTES // 1024} KB. "
                              "Move images and long sections to the web, and link to them.")


def _tag_list(names):
    return ", ".join(f"{{{{ {name} }}}}" for name in names)


# --- parsing -------------------------------------------------------------------------------

def _parse(text):
    """Split TEXT into literal strings and (name, default) tuples; raise MergeTagError if malformed."""
    parts = []
    pos = 0
    while True:
        start = text.find("{{", pos)
        literal = text[pos:] if start == -1 else text[pos:start]
        if "{%" in literal:
            _raise_block_tag(text, pos + literal.index("{%"))
        if literal:
            parts.append(literal)
        if start == -1:
            return parts
        match = _TAG.match(text, start)
        if not match:
            _raise_malformed(text, start)
        default = match["dq"] if match["dq"] is not None else match["sq"]
        parts.append((match["name"], default or None))
        pos = match.end()


def _where(text, index):
    line = text.count("\n", 0, index) + 1
    return f" (line {line})" if "\n" in text else ""


def _raise_block_tag(text, start):
    end = text.find("%}", start)
    snippet = text[start:end + 2] if end != -1 and end - start < _SNIPPET_MAX else text[start:start + 20] + "…"
    raise MergeTagError(
        f"Template tags like {snippet}{_where(text, start)} are not supported: "
        "only merge tags such as {{ first_name }} or {{ first_name|default:\"there\" }}."
    )


def _raise_malformed(text, start):
    end = text.find("}}", start + 2)
    next_open = text.find("{{", start + 2)
    where = _where(text, start)
    if end == -1 or (next_open != -1 and next_open < end) or end - start > _SNIPPET_MAX:
        raise MergeTagError(
            f"Unclosed merge tag starting {text[start:start + 20]!r}{where}: every {{{{ needs a matching }}}}."
        )
    snippet = text[start:end + 2]
    inner = snippet[2:-2].strip()
    name, bar, tag_filter = inner.partition("|")
    if not inner:
        problem = "an empty merge tag"
    elif bar and tag_filter.strip().startswith("default"):
        problem = 'a malformed default: write it as {{ name|default:"text" }}, with double or single quotes'
    elif bar:
        problem = f'the filter "{tag_filter.strip()}" is not supported, only |default:"text" is'
    else:
        problem = "a tag name is made of letters, digits and underscores only, e.g. {{ first_name }}"
    raise MergeTagError(f"Malformed merge tag {snippet}{where}: {problem}.")


def find_tags(text: str) -> set[str]:
    """Names of the merge tags used in TEXT; raises MergeTagError on a malformed tag."""
    return {part[0] for part in _parse(text) if isinstance(part, tuple)}


def available_tags(data_keys=()) -> list[str]:
    """The tags a campaign may use: the standard ones plus those of its recipients' data keys that are tag names."""
    return sorted(set(STANDARD_TAGS).union(key for key in data_keys if MERGE_TAG_NAME.fullmatch(key)))


def validate_merge_tags(*texts: str, available) -> None:
    """Raise MergeTagError if any of TEXTS has a malformed tag or one not in AVAILABLE."""
    available = set(available)
    used = set()
    for text in texts:
        used |= find_tags(text or "")
    unknown = sorted(used - available)
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        raise MergeTagError(
            f"Unknown merge tag{plural} {_tag_list(unknown)}. Available tags: {_tag_list(sorted(available))}",
            unknown=unknown, available=available,
        )


def unknown_tags(*texts: str, available) -> list[str]:
    """The tags TEXTS use that are not in AVAILABLE, sorted (malformed ones are content_problems' business)."""
    used = set()
    for text in texts:
        try:
            used |= find_tags(text or "")
        except MergeTagError:
            pass
    return sorted(used - set(available))


def unknown_tags_note(unknown) -> str:
    """What staff read about a saved draft's tags that no recipient has yet."""
    plural = len(unknown) > 1
    return (f"{_tag_list(unknown)} {'are not merge tags' if plural else 'is not a merge tag'} of this campaign yet: "
            f"no recipient has {'those columns' if plural else 'that column'}. Import the file that has "
            f"{'them' if plural else 'it'} (or remove {'them' if plural else 'it'}) before sending: scheduling, "
            "Send now and preflight refuse unknown merge tags.")


NO_UNSUBSCRIBE_LINK = ("The HTML body must contain an unsubscribe link, {{ unsubscribe_url }}, e.g. "
                       '<a href="{{ unsubscribe_url }}">Unsubscribe</a>.')


def content_problems(available, subject="", html_body="", text_body="", unknown_ok=False) -> dict[str, str]:
    """What stops a campaign's (or an A/B variant's) content from being sent, by field: unknown or
    malformed merge tags, and HTML with no unsubscribe link. Empty when it can be sent. UNKNOWN_OK
    leaves unknown tags out (a draft may use a column the import that defines it has not brought yet;
    scheduling and preflight refuse them)."""
    problems = {}
    for field, text in (("subject", subject), ("html_body", html_body), ("text_body", text_body)):
        try:
            validate_merge_tags(text or "", available=available)
        except MergeTagError as error:
            # A name no column can become (e.g. {{ City }}: imported columns are lower case) is refused always.
            if not (unknown_ok and error.unknown and all(MERGE_TAG_NAME.fullmatch(name) for name in error.unknown)):
                problems[field] = str(error)
    if "html_body" not in problems and html_body and "unsubscribe_url" not in find_tags(html_body):
        problems["html_body"] = NO_UNSUBSCRIBE_LINK
    return problems


# --- compiling and rendering --------------------------------------------------------------

HTML, SUBJECT, TEXT = "h", "s", "t"
_ESCAPE = {
    HTML: lambda value: html.escape(value, quote=True),
    SUBJECT: lambda value: _LINE_BREAKS.sub(" ", value),
    TEXT: lambda value: value,
}


@dataclass(frozen=True)
class RenderedMessage:
    subject: str
    html: str
    text: str


class CompiledCampaign:
    """A campaign's subject, HTML and text parsed once, then rendered per recipient."""

    def __init__(self, subject: str, html_body: str, text: str = ""):
        self.subject_template = subject
        self.html_template = html_body
        self.text_template = text if text and text.strip() else html_to_text(html_body)
        self._slots = []  # (name, default, part), one per distinct value a recipient needs
        self._slot_index = {}
        self._defaults = {}  # name -> {default: 1-based number}, for readable keys
        self._subject_plan = self._plan(_parse(_LINE_BREAKS.sub(" ", subject)), SUBJECT)
        self._html_plan = self._plan(_parse(html_body), HTML)
        self._text_plan = self._plan(_parse(self.text_template), TEXT)
        self.tags = frozenset(name for name, _, _ in self._slots)
        # Tags used somewhere with no default: a recipient without a value gets nothing there.
        self.tags_without_default = frozenset(name for name, default, _ in self._slots if default is None)
        nonce = secrets.token_hex(4)
        self._keys = [self._key(slot, nonce) for slot in self._slots]

    def _plan(self, parts, part):
        """(pieces, holes): the literal pieces, and (position in pieces, slot index) for each tag."""
        pieces, holes = [], []
        for piece in parts:
            if isinstance(piece, str):
                pieces.append(piece)
                continue
            name, default = piece
            slot = (name, default, part)
            if slot not in self._slot_index:
                self._slot_index[slot] = len(self._slots)
                self._slots.append(slot)
                if default is not None:
                    numbers = self._defaults.setdefault(name, {})
                    numbers.setdefault(default, len(numbers) + 1)
            holes.append((len(pieces), self._slot_index[slot]))
            pieces.append("")
        return pieces, holes

    def _key(self, slot, nonce):
        name, default, part = slot
        key = name
        if default is not None:
            key += f"|d{self._defaults[name][default]}"
        if part != TEXT:
            key += f"|{part}"
        return f"[%{key}:{nonce}%]"

    def _values(self, context):
        values = []
        for name, default, part in self._slots:
            value = context.get(name)
            if value is None:
                value = ""
            elif not isinstance(value, str):
                value = str(value)
            if not value.strip():
                value = default or ""
            values.append(_ESCAPE[part](value))
        return values

    def render(self, context: dict) -> RenderedMessage:
        values = self._values(context)
        return RenderedMessage(
            _fill(self._subject_plan, values), _fill(self._html_plan, values), _fill(self._text_plan, values)
        )

    def sendgrid_templates(self) -> tuple[str, str, str]:
        """(subject, html, text) to send once per batch, with a substitution key in place of each tag."""
        keys = self._keys
        return _fill(self._subject_plan, keys), _fill(self._html_plan, keys), _fill(self._text_plan, keys)

    def substitutions(self, context: dict) -> dict[str, str]:
        """One recipient's SendGrid substitutions: key -> value, escaped for the part the key is in."""
        return dict(zip(self._keys, self._values(context)))

    @property
    def substitution_keys(self) -> list[str]:
        """The substitution keys, in the order substitution_values gives their values."""
        return list(self._keys)

    def substitution_values(self, context: dict) -> list[str]:
        """One recipient's substitution values, in substitution_keys' order (substitutions without the dict)."""
        return self._values(context)


def _fill(plan, values):
    pieces, holes = plan
    out = pieces.copy()
    for position, slot in holes:
        out[position] = values[slot]
    return "".join(out)


def compile_campaign(subject: str, html: str, text: str = "") -> CompiledCampaign:
    """Parse a campaign's parts once; raises MergeTagError on a malformed tag."""
    return CompiledCampaign(subject, html, text)


def recipient_context(email, first_name, last_name, data: dict, unsubscribe_url: str, web_url: str = "") -> dict:
    """The values a recipient's tags render from; the standard fields win over imported columns."""
    context = dict(data or {})
    context.update(email=email, first_name=first_name, last_name=last_name, unsubscribe_url=unsubscribe_url,
                   web_url=web_url)
    return context


# --- HTML to plain text -------------------------------------------------------------------

_SKIPPED = {"head", "title", "style", "script", "noscript", "template", "xml"}
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
         "track", "wbr"}
# Block boundaries are marked, then resolved together: nested blocks make one break, not several.
_PARAGRAPH, _LINE = "\x02", "\x01"
_BREAKS = re.compile(r"[ \n\x01\x02]*[\x01\x02][ \n\x01\x02]*")
_PARAGRAPHS = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol", "blockquote", "pre", "hr"}
_LINES = {"div", "tr", "li", "dd", "dt", "section", "article", "header", "footer", "center", "address"}
_CELLS = {"td", "th"}
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none", re.IGNORECASE)
# Invisible filler that preheaders and some editors sprinkle in; meaningless in plain text.
_INVISIBLE = re.compile("[\u034f\u00ad\u200b\u2060\ufeff]")
_WHITESPACE = re.compile(r"\s+")
_SCHEME = re.compile(r"^(?:mailto:|tel:|https?://)", re.IGNORECASE)


class _TextExtractor(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.chunks = []
        self._skip_tag = None
        self._skip_depth = 0
        self._link = None  # (href, index of the first chunk inside the link)

    def handle_starttag(self, tag, attrs):
        if self._skip_tag:
            self._skip_depth += tag == self._skip_tag
            return
        attrs = dict(attrs)
        hidden = "hidden" in attrs or _HIDDEN_STYLE.search(attrs.get("style") or "")
        if tag in _SKIPPED or hidden:
            if tag not in _VOID:
                self._skip_tag, self._skip_depth = tag, 1
            return
        self._break(tag)
        if tag == "li":
            self.chunks.append("- ")
        elif tag == "img" and (attrs.get("alt") or "").strip():
            self.chunks.append(f" {attrs['alt']} ")
        elif tag == "a":
            self._link = (attrs.get("href") or "").strip(), len(self.chunks)

    def handle_endtag(self, tag):
        if self._skip_tag:
            if tag == self._skip_tag:
                self._skip_depth -= 1
                if not self._skip_depth:
                    self._skip_tag = None
            return
        if tag == "a" and self._link:
            self._end_link()
        self._break(tag)

    def handle_data(self, data):
        if not self._skip_tag:
            # Source line breaks are just whitespace in HTML; only elements make lines.
            self.chunks.append(_WHITESPACE.sub(" ", data))

    def _break(self, tag):
        if tag == "br":
            self.chunks.append("\n")
        elif tag in _PARAGRAPHS:
            self.chunks.append(_PARAGRAPH)
        elif tag in _LINES:
            self.chunks.append(_LINE)
        elif tag in _CELLS:
            self.chunks.append(" ")

    def _end_link(self):
        href, first = self._link
        self._link = None
        if not href or href.startswith("#") or href.lower().startswith("javascript:"):
            return
        label = " ".join("".join(self.chunks[first:]).split())
        if not label:
            self.chunks.append(href)
        elif _SCHEME.sub("", label).rstrip("/") != _SCHEME.sub("", href).rstrip("/"):
            self.chunks.append(f" ({href})")


def _resolve_breaks(match):
    """A run of breaks: a blank line if it holds a paragraph or several <br>, else one line break."""
    run = match.group()
    wanted = 2 if _PARAGRAPH in run else 1
    return "\n" * max(wanted, run.count("\n"))


def html_to_text(html: str) -> str:
    """A readable plain-text version of an email's HTML, keeping its merge tags as they are."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    text = _BREAKS.sub(_resolve_breaks, _INVISIBLE.sub("", "".join(parser.chunks)))
    lines = []
    for raw_line in text.split("\n"):
        line = " ".join(raw_line.split())
        if line or (lines and lines[-1]):
            lines.append(line)
    return "\n".join(lines).strip()
