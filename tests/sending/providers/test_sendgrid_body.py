"""The SendGrid request body built from its per-batch template (sendgrid.BodyTemplate) is byte for byte
the JSON of the reference object (sendgrid.payload_dict) the provider used to build and encode per
recipient, whatever the recipients' names, addresses and values: quotes, backslashes, control
characters, </script>, %-signs, lone surrogates, non-ASCII domains, non-string imported values."""

import json

from django.test import override_settings
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from campaigns.sending.providers.sendgrid import SendGridProvider, payload_dict
from tests.sending.conftest import HTML, SUBJECT, TEXT, make_batch

# Nasty on purpose, mixed into arbitrary text (surrogates included: exclude_categories=()).
SPECIALS = ['"', "\\", "</script>", "\ud800", "\udfff", "\x00", "\x1f", "\u2028", "é", "Ω", "😀", "%", "%s", "%(x)s",
            "%%", "{{ code }}", "[%code:00000000%]", "\r\n", " ", ""]
nasty_text = st.lists(st.one_of(st.sampled_from(SPECIALS), st.text(st.characters(exclude_categories=()), max_size=6)),
                      max_size=4).map("".join)
value = st.one_of(nasty_text, st.integers(), st.floats(allow_nan=False), st.booleans(), st.none(),
                  st.lists(st.integers(), max_size=2))
domain = st.sampled_from(["example.com", "bücher.example", "xn--bcher-kva.example", "例え.jp"])
recipient = st.tuples(nasty_text, domain, nasty_text, nasty_text, st.dictionaries(st.sampled_from(["code", "city"]),
                                                                                   value, max_size=2),
                      st.booleans())
TEMPLATES = [(SUBJECT, HTML, TEXT), ("Hello", "<p>Hello</p>", ""),  # no merge tags: no substitutions at all
             ("{{ city }} {{ code|default:\"%s\" }}", "<p>{{ email }} {{ code }}</p>", "{{ web_url }}")]


@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recipients=st.lists(recipient, min_size=1, max_size=4), template=st.sampled_from(TEMPLATES),
       mailto=st.sampled_from(["", "unsubscribe@example.com", "un%sub@example.com"]),
       reply_to=st.sampled_from(["", "Help \"Desk\" <help@example.com>"]), tracking=st.booleans(),
       from_email=st.sampled_from(["Acme News <news@example.com>", "news@example.com", "Société <n@example.com>"]),
       campaign_id=st.integers(1, 2 ** 40))
def test_the_body_template_encodes_exactly_what_the_dict_builder_did(recipients, template, mailto, reply_to, tracking,
                                                                     from_email, campaign_id):
    rows = [(pk, f"{local}@{domain}", first, last, data) for pk, (local, domain, first, last, data, _) in
            enumerate(recipients, start=10 ** 9)]
    subject, html, text = template
    batch = make_batch(rows, campaign_id=campaign_id, from_email=from_email, reply_to=reply_to, subject=subject,
                       html=html, text=text)
    for message, (*_, with_url) in zip(batch.messages, recipients):
        if not with_url:  # a test send outside a campaign has no unsubscribe link
            message.context["unsubscribe_url"] = ""
    if tracking:
        batch = batch.__class__(**{**batch.__dict__, "tracking": object()})

    with override_settings(UNSUBSCRIBE_MAILTO=mailto):
        body = SendGridProvider(api_key="key").build_payload(batch)
        expected = payload_dict(batch)

    assert isinstance(body, bytes)
    assert body == json.dumps(expected).encode("ascii")
    # What SendGrid decodes: the reference's own decoding (JSON joins a high and a low surrogate escaped one
    # after the other into one character, so a str holding such a pair does not come back as it was).
    assert json.loads(body) == json.loads(json.dumps(expected))
