"""The error summary of the app's change forms (campaigns/templatetags/error_summary.py): each error with its
field's label and a link to the field's id; an error of no field without a link; inline formsets' errors too."""

from types import SimpleNamespace

from django import forms
from django.core.exceptions import ValidationError

from campaigns.templatetags.error_summary import error_summary


class Form(forms.Form):
    name = forms.CharField(label="Name")
    when = forms.SplitDateTimeField(label="Send at", required=False)

    def clean(self):
        raise ValidationError("An import into this campaign is still running.")


class VariantForm(forms.Form):
    subject = forms.CharField(label="Subject", max_length=5)


VariantFormSet = forms.formset_factory(VariantForm, max_num=4, validate_max=True)


def test_every_error_links_to_its_field_in_the_order_of_the_page():
    form = Form({"name": "", "when_0": "not a date", "when_1": "10:00"})
    formset = VariantFormSet({"variants-TOTAL_FORMS": "2", "variants-INITIAL_FORMS": "0",
                              "variants-0-subject": "Hi", "variants-1-subject": "Hello there"}, prefix="variants")
    inline = SimpleNamespace(formset=formset, opts=SimpleNamespace(verbose_name="A/B variant"))
    assert error_summary(SimpleNamespace(form=form), [inline]) == [
        ("#id_name", "Name: This field is required."),
        ("#id_when_0", "Send at: Enter a valid date."),
        ("", "An import into this campaign is still running."),
        ("#id_variants-1-subject",
         "A/B variant 2, Subject: Ensure this value has at most 5 characters (it has 11)."),
    ]


def test_a_valid_form_has_nothing_to_sum_up():
    form = VariantForm({"subject": "Hi"})
    assert error_summary(SimpleNamespace(form=form)) == []
