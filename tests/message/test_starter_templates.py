import re

import pytest
from django.core.management import call_command

from campaigns.message.starter_templates import STARTERS
from campaigns.models import EmailTemplate

TAG = re.compile(r"{{\s*([a-z_]+)")


@pytest.mark.django_db
def test_loading_the_starter_templates_twice_creates_each_once(capsys):
    call_command("load_email_templates")
    assert "created=5 updated=0" in capsys.readouterr().out
    first = {t.key: t.pk for t in EmailTemplate.objects.all()}
    call_command("load_email_templates")
    assert "created=0 updated=5" in capsys.readouterr().out
    assert {t.key: t.pk for t in EmailTemplate.objects.all()} == first
    assert set(first) == set(STARTERS)


@pytest.mark.django_db
def test_loading_keeps_staff_templates_and_restores_edited_starters():
    EmailTemplate.objects.create(key="my-own", name="Mine", subject="Hi", html_body="<p>{{ unsubscribe_url }}</p>")
    call_command("load_email_templates")
    EmailTemplate.objects.filter(key="newsletter").update(subject="broken")
    call_command("load_email_templates")
    assert EmailTemplate.objects.get(key="my-own").name == "Mine"
    assert EmailTemplate.objects.get(key="newsletter").subject != "broken"


@pytest.mark.django_db
def test_every_starter_has_a_subject_an_unsubscribe_link_and_only_standard_tags():
    call_command("load_email_templates")
    for template in EmailTemplate.objects.filter(is_starter=True):
        assert template.subject and "<" not in template.subject
        assert "{{ unsubscribe_url }}" in template.html_body
        assert "{{ unsubscribe_url }}" in template.text_body  # both bodies filled (issue 25, item 10)
        tags = set(TAG.findall(template.html_body)) | set(TAG.findall(template.subject))
        assert tags <= {"email", "first_name", "last_name", "unsubscribe_url"}, template.key
        assert 'name="viewport"' in template.html_body
