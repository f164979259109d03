import random
import re

import pytest

from campaigns.exceptions import MergeTagError
from campaigns.message.rendering import (
    STANDARD_TAGS,
    available_tags,
    compile_campaign,
    find_tags,
    html_to_text,
    recipient_context,
    validate_merge_tags,
)
from campaigns.message.starter_templates import STARTERS, read_starter


def context(**values):
    base = {"email": "sam@example.com", "first_name": "Sam", "last_name": "Lee",
            "unsubscribe_url": "https://mail.example.com/u/abc"}
    return {**base, **values}


def render(subject="", html="", text="", **values):
    return compile_campaign(subject, html, text).render(context(**values))


# --- parsing and validation ---------------------------------------------------------------

def test_find_tags_accepts_optional_spaces_and_defaults():
    text = ("{{email}} {{  first_name  }} {{ last_name|default:\"x\" }} {{ city | default : 'Lisbon' }} "
            "{{ company_name }}")
    assert find_tags(text) == {"email", "first_name", "last_name", "city", "company_name"}


def test_find_tags_ignores_single_braces_and_css():
    assert find_tags("<style>.a{color:red}} @media{.b{x:y}}</style> {not a tag}") == set()


def test_available_tags_are_the_standard_ones_plus_imported_columns_sorted():
    assert available_tags(["city", "company_name"]) == sorted([*STANDARD_TAGS, "city", "company_name"])
    assert available_tags() == sorted(STANDARD_TAGS)


def test_unknown_tag_is_rejected_with_the_available_tags_listed():
    with pytest.raises(MergeTagError) as caught:
        validate_merge_tags("Hi {{ first_name }}", "<p>{{ compnay }}</p>", available=available_tags(["city"]))
    assert str(caught.value) == (
        "Unknown merge tag {{ compnay }}. Available tags: {{ city }}, {{ email }}, {{ first_name }}, "
        "{{ last_name }}, {{ unsubscribe_url }}, {{ web_url }}"
    )
    assert caught.value.unknown == ["compnay"]
    assert caught.value.available == ["city", "email", "first_name", "last_name", "unsubscribe_url", "web_url"]


def test_every_unknown_tag_is_named_once():
    with pytest.raises(MergeTagError, match=r"^Unknown merge tags \{\{ a \}\}, \{\{ b \}\}\. Available") as caught:
        validate_merge_tags("{{ b }} {{ a }}", "{{ b|default:'x' }}", available=STANDARD_TAGS)
    assert caught.value.unknown == ["a", "b"]


def test_known_tags_pass_validation():
    validate_merge_tags('Hi {{ first_name|default:"there" }}', "{{ city }} {{ unsubscribe_url }}", "",
                        available=available_tags(["city"]))


def test_tag_names_are_case_sensitive():
    with pytest.raises(MergeTagError, match="First_Name"):
        validate_merge_tags("{{ First_Name }}", available=STANDARD_TAGS)


@pytest.mark.parametrize("text, message", [
    ("Hi {{ first name }}", "Malformed merge tag {{ first name }}: a tag name is made of letters"),
    ("{{ first_name|upper }}", 'Malformed merge tag {{ first_name|upper }}: the filter "upper" is not supported'),
    ("{{ first_name|default:there }}", "malformed default: write it as {{ name|default:\"text\" }}"),
    ('{{ first_name|default:"there\' }}', "malformed default"),
    ("{{ }}", "an empty merge tag"),
    ("Hi {{ first_name, welcome", "Unclosed merge tag starting '{{ first_name, welco'"),
    ("Hi {{ first_name and {{ email }}", "Unclosed merge tag starting '{{ first_name and {{'"),
    ("{{{ email }}}", "Malformed merge tag {{{ email }}"),
    ("{% if first_name %}Hi{% endif %}", "Template tags like {% if first_name %} are not supported"),
])
def test_malformed_tags_are_rejected_with_a_clear_message(text, message):
    for check in (find_tags, lambda t: compile_campaign("Subject", t), lambda t: compile_campaign(t, "<p></p>"),
                  lambda t: validate_merge_tags(t, available=STANDARD_TAGS)):
        with pytest.raises(MergeTagError) as caught:
            check(text)
        assert message in str(caught.value)


def test_malformed_tag_in_a_long_html_body_gives_its_line():
    html = "<p>one</p>\n<p>two</p>\n<p>{{ first name }}</p>"
    with pytest.raises(MergeTagError, match=r"\{\{ first name \}\} \(line 3\)"):
        compile_campaign("Subject", html)


def test_compiled_campaign_knows_every_tag_used_in_any_part():
    compiled = compile_campaign("{{ first_name }}", "<p>{{ city|default:'x' }}</p>", "{{ unsubscribe_url }}")
    assert compiled.tags == {"first_name", "city", "unsubscribe_url"}


# --- values and defaults ------------------------------------------------------------------

@pytest.mark.parametrize("first_name", [None, "", "   ", "\n"])
def test_default_is_used_when_value_is_missing_or_blank(first_name):
    compiled = compile_campaign('Hi {{ first_name|default:"there" }}', "<p>Hi {{ first_name|default:'you' }}</p>",
                                "Hi {{ first_name }}!")
    message = compiled.render(context(first_name=first_name))
    assert (message.subject, message.html, message.text) == ("Hi there", "<p>Hi you</p>", "Hi !")
    missing = {k: v for k, v in context().items() if k != "first_name"}
    assert compiled.render(missing).subject == "Hi there"


def test_present_value_wins_over_default():
    assert render(subject='Hi {{ first_name|default:"there" }}', first_name="Ana").subject == "Hi Ana"


def test_default_may_hold_the_other_quote_and_closing_braces():
    message = render(subject="""{{ a|default:"it's }}" }} {{ b|default:'say "hi"' }}""")
    assert message.subject == """it's }} say "hi\""""


def test_imported_columns_and_numbers_render_and_standard_fields_win():
    ctx = recipient_context("sam@example.com", "Sam", "", {"city": "Porto", "seats": 3, "email": "forged@x.com"},
                            "https://u.example.com/1")
    compiled = compile_campaign("{{ email }}", "<p>{{ city }} {{ seats }} {{ unsubscribe_url }}</p>")
    message = compiled.render(ctx)
    assert message.subject == "sam@example.com"
    assert message.html == "<p>Porto 3 https://u.example.com/1</p>"


def test_literal_braces_in_the_template_are_kept():
    html = "<style>.a{color:red} .b { x: {0} }</style><p>{{ first_name }} {} {0} {x}</p>"
    assert render(html=html).html == "<style>.a{color:red} .b { x: {0} }</style><p>Sam {} {0} {x}</p>"


# --- escaping -----------------------------------------------------------------------------

def test_values_and_defaults_are_html_escaped_in_html_only():
    compiled = compile_campaign(
        "Hi {{ first_name }}", '<p title="{{ first_name }}">{{ first_name }} {{ last_name|default:"Tom & Jerry" }}</p>',
        "Hi {{ first_name }} {{ last_name|default:\"Tom & Jerry\" }}",
    )
    message = compiled.render(context(first_name='<script>alert(1)</script>" onmouseover="x', last_name=""))
    assert message.html == (
        '<p title="&lt;script&gt;alert(1)&lt;/script&gt;&quot; onmouseover=&quot;x">'
        "&lt;script&gt;alert(1)&lt;/script&gt;&quot; onmouseover=&quot;x Tom &amp; Jerry</p>"
    )
    assert message.subject == 'Hi <script>alert(1)</script>" onmouseover="x'
    assert message.text == 'Hi <script>alert(1)</script>" onmouseover="x Tom & Jerry'


def test_line_breaks_in_subject_values_collapse_to_spaces_but_stay_in_text():
    compiled = compile_campaign("Hi {{ first_name }}", "<p>{{ first_name }}</p>", "Hi {{ first_name }}")
    message = compiled.render(context(first_name="Sam\r\nBcc: victim@example.com\n\u2028x"))
    assert message.subject == "Hi Sam Bcc: victim@example.com x"
    assert message.text == "Hi Sam\r\nBcc: victim@example.com\n\u2028x"


def test_line_breaks_in_the_subject_template_itself_collapse_too():
    assert render(subject="Hello\r\n{{ first_name }}").subject == "Hello Sam"


# --- plain-text part ----------------------------------------------------------------------

def test_given_text_part_is_used_as_written():
    compiled = compile_campaign("S", "<p>Hello {{ first_name }}</p>", "Plain {{ first_name }}\n\n-- \nAcme")
    assert compiled.text_template == "Plain {{ first_name }}\n\n-- \nAcme"
    assert compiled.render(context()).text == "Plain Sam\n\n-- \nAcme"


@pytest.mark.parametrize("text", ["", "  \n "])
def test_blank_text_part_is_generated_from_html_with_its_tags(text):
    html = '<p>Hello {{ first_name|default:"there" }},</p><p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>'
    compiled = compile_campaign("S", html, text)
    assert compiled.text_template == 'Hello {{ first_name|default:"there" }},\n\nUnsubscribe ({{ unsubscribe_url }})'
    assert compiled.render(context(first_name="")).text == (
        "Hello there,\n\nUnsubscribe (https://mail.example.com/u/abc)")


# --- SendGrid substitutions ---------------------------------------------------------------

HOSTILE_PIECES = [
    "", " ", "\n", "\r\n", "Sam", "O'Brien", '"quoted"', "<b>bold</b>", "<script>alert(1)</script>", "&amp;", "&",
    "{{ x }}", "{{ first_name }}", "{0}", "{}", "{", "}", "[%", "%]", "[%email%]", "[%first_name|h%]",
    "[%first_name|d1|h%]", "[%first_name|s%]", "%", "|h", ":", "ünïcödé", "日本語", "😀", "\u2028", "\x00", "\\",
    "https://example.com/?a=1&b=2",
]
EQUIVALENCE_SUBJECT = '{{ first_name|default:"there" }}, news for {{ city }} [%email%] {0}'
EQUIVALENCE_HTML = (
    "<style>.a{color:red}</style><p>Hi {{ first_name|default:\"there\" }} {{ first_name|default:'you' }} "
    '{{ first_name }} {{ last_name }}</p><p title="{{ city|default:\'?\' }}">{{ email }} [%email%]</p>'
    '<a href="{{ unsubscribe_url }}">Unsubscribe</a>'
)


def hostile_value(rng):
    return "".join(rng.choice(HOSTILE_PIECES) for _ in range(rng.randint(0, 4)))


def hostile_context(rng):
    ctx = {name: hostile_value(rng) for name in ("email", "first_name", "last_name", "city", "unsubscribe_url")}
    for name in rng.sample(sorted(ctx), rng.randint(0, 2)):
        ctx[name] = rng.choice([None, ctx[name]]) if rng.random() < 0.5 else ctx.pop(name)
    return ctx


def sendgrid_replace(template, substitutions, order):
    for key in order:
        template = template.replace(key, substitutions[key])
    return template


@pytest.mark.parametrize("text", ["", "Text {{ first_name|default:\"there\" }} {{ city }}\n{{ unsubscribe_url }}"])
def test_sendgrid_substitution_gives_exactly_the_rendered_message_in_any_order(text):
    compiled = compile_campaign(EQUIVALENCE_SUBJECT, EQUIVALENCE_HTML, text)
    templates = compiled.sendgrid_templates()
    rng = random.Random(20240611)
    for _ in range(2000):
        ctx = hostile_context(rng)
        substitutions = compiled.substitutions(ctx)
        order = list(substitutions)
        rng.shuffle(order)
        expected = compiled.render(ctx)
        for keys in (order, order[::-1]):
            sent = tuple(sendgrid_replace(template, substitutions, keys) for template in templates)
            assert sent == (expected.subject, expected.html, expected.text), ctx


def test_substitution_keys_are_distinct_per_escaping_and_default_and_all_are_used():
    compiled = compile_campaign(EQUIVALENCE_SUBJECT, EQUIVALENCE_HTML, "{{ first_name }}")
    subject, html, text = compiled.sendgrid_templates()
    substitutions = compiled.substitutions(context(first_name="<Ana>\nB"))
    used = set(re.findall(r"\[%[^%]*%\]", subject + html + text)) - {"[%email%]"}
    assert used == set(substitutions)
    first_name_values = sorted(v for k, v in substitutions.items() if k.startswith("[%first_name"))
    # html: default "there", default "you", none; subject: default "there" (line break collapsed); text: raw.
    assert first_name_values == sorted(["&lt;Ana&gt;\nB"] * 3 + ["<Ana> B", "<Ana>\nB"])
    assert len(substitutions) == 10
    assert "[%email%]" in subject and "[%email%]" in html  # literal text is never taken for a key


def test_substitution_values_apply_the_default_and_are_strings():
    compiled = compile_campaign('{{ first_name|default:"there" }}', "<p>{{ seats }}</p>", "Plain")
    substitutions = compiled.substitutions({"first_name": None, "seats": 3})
    assert sorted(substitutions.values()) == ["3", "there"]


# --- html_to_text -------------------------------------------------------------------------

def test_html_to_text_drops_head_style_script_comments_and_hidden_elements():
    html = """<!DOCTYPE html><html><head><title>Subject {{ first_name }}</title>
    <style>body { color: red; }</style><!--[if mso]><xml><o:OfficeDocumentSettings/></xml><![endif]--></head>
    <body><div style="DISPLAY: None; max-height:0">Preheader filler&#8199;&#847;<div>nested</div> still hidden</div>
    <span hidden>also hidden</span><img src="x.png" style="display:none" alt="">
    <!-- a comment --><!--[if mso]><table><tr><td><![endif]-->
    <script>var a = "<p>";</script><p>Visible {{ first_name }}</p><!--[if mso]></td></tr></table><![endif]-->
    </body></html>"""
    assert html_to_text(html) == "Visible {{ first_name }}"


def test_html_to_text_keeps_content_that_only_outlook_hides():
    html = ("<!--[if !mso]><!--><p>For everyone else</p><!--<![endif]-->"
            "<![if !mso]><p>Also here</p><![endif]><div>a<br></div><div>b</div>")
    assert html_to_text(html) == "For everyone else\n\nAlso here\n\na\nb"


def test_html_to_text_shows_link_urls_once():
    html = ('<p><a href="https://example.com/a">Read more</a> or <a href="https://example.com/b">https://example.com/b</a>'
            ' or <a href="mailto:help@example.com">help@example.com</a> or <a href="https://example.com/">example.com</a>'
            ' or <a href="#top">top</a> or <a href="https://example.com/img"><img src="i.png" alt="Logo"></a>'
            ' or <a href="{{ unsubscribe_url }}">Unsubscribe</a></p>')
    assert html_to_text(html) == (
        "Read more (https://example.com/a) or https://example.com/b or help@example.com or example.com or top "
        "or Logo (https://example.com/img) or Unsubscribe ({{ unsubscribe_url }})"
    )


def test_html_to_text_breaks_lines_at_blocks_and_collapses_whitespace():
    html = """<h1>Title</h1>
    <p>First   paragraph
       spans lines&nbsp;&amp; has &lt;entities&gt; &rsquo;</p>
    <p>Line one<br>Line two<br/><br><br>Line three</p>
    <table><tr><td>9:00</td><td>Keynote</td></tr><tr><td>10:30</td><td>Talks</td></tr></table>
    <ul><li>One</li><li>Two</li></ul>"""
    assert html_to_text(html) == (
        "Title\n\nFirst paragraph spans lines & has <entities> \u2019\n\n"
        "Line one\nLine two\n\nLine three\n\n9:00 Keynote\n10:30 Talks\n\n- One\n- Two"
    )


def test_html_to_text_keeps_merge_tags_written_across_source_lines():
    assert html_to_text('<p>Hi {{\n   first_name|default:"there" }}</p>') == 'Hi {{ first_name|default:"there" }}'


# --- starter templates --------------------------------------------------------------------

@pytest.mark.parametrize("key", sorted(STARTERS))
def test_starter_templates_compile_and_render_every_tag(key):
    subject, html = read_starter(key)
    compiled = compile_campaign(subject, html)
    assert compiled.tags <= set(STANDARD_TAGS)
    assert {"email", "unsubscribe_url"} <= compiled.tags

    text = compiled.text_template
    assert "Unsubscribe ({{ unsubscribe_url }})" in text
    assert "{{ email }}" in text
    assert "{" not in text.replace("{{", "").replace("}}", "")  # no CSS
    assert "@media" not in text and "mso" not in text
    preheader = re.search(r'<div style="display:none[^>]*>([^&<]+)', html).group(1)
    assert preheader.strip() not in text
    assert "\u034f" not in text and "\u2007" not in text

    message = compiled.render(context(first_name="Zoë <b>", email="zoe@example.com"))
    for part in message.subject, message.html, message.text:
        assert "{{" not in part and "}}" not in part
    assert "https://mail.example.com/u/abc" in message.html and "https://mail.example.com/u/abc" in message.text
    assert "zoe@example.com" in message.html and "zoe@example.com" in message.text
    assert "<b>" not in message.html.split("<body", 1)[1]
    if "first_name" in compiled.tags:
        assert "Zoë &lt;b&gt;" in message.html and "Zoë <b>" in message.text
