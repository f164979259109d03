"""The error summary at the top of the admin's change forms (the GOV.UK error summary pattern): every error
of the form and of its inline formsets, each linking to its field."""

from django import template
from django.forms.forms import NON_FIELD_ERRORS
from django.forms.widgets import MultiWidget

register = template.Library()


def form_errors(form, prefix=""):
    """(anchor, text) for each error of FORM: "#<field id>" and "Label: error", or "" and the error alone."""
    for name, errors in form.errors.items():
        field = form[name] if name != NON_FIELD_ERRORS and name in form.fields else None
        for error in errors:
            if field is None:
                yield "", f"{prefix}{error}"
            else:
                yield f"#{field_id(field)}", f"{prefix}{field.label}: {error}"


def field_id(field):
    """The id of the input to focus: a date-and-time field's is its first part's (the date)."""
    if isinstance(field.field.widget, MultiWidget):
        return f"{field.auto_id}_0"
    return field.id_for_label or field.auto_id


@register.simple_tag
def error_summary(adminform=None, inline_admin_formsets=()):
    """Every error on the page, in the order of the page: the form's, then each inline formset's."""
    items = []
    if adminform is not None:
        items.extend(form_errors(adminform.form))
    for inline in inline_admin_formsets or ():
        formset = inline.formset
        if formset.is_valid():  # also a formset the form was posted without (VariantFormSet)
            continue
        name = str(inline.opts.verbose_name)
        name = name[:1].upper() + name[1:]
        items.extend(("", f"{name}: {error}") for error in formset.non_form_errors())
        for number, form in enumerate(formset.forms, 1):
            items.extend(form_errors(form, prefix=f"{name} {number}, "))
    return items
