"""Forms of the campaign admin: the campaign itself, scheduling and the test send."""

from email.utils import parseaddr

from django import forms
from django.conf import settings
from django.contrib.admin import widgets as admin_widgets
from django.core.exceptions import ValidationError
from django.db import OperationalError, transaction
from django.utils import timezone
from django.utils.html import escape, format_html

from campaigns.audience.validators import validate_email_address
from campaigns.message.markdown import markdown_to_html
from campaigns.models import Campaign, EmailTemplate

MAX_TEST_ADDRESSES = 5


def zone_name():
    return settings.TIME_ZONE


def tag_list(names):
    return ", ".join(f"{{{{ {name} }}}}" for name in names)


AB_FIELDS = ("ab_test_percent", "ab_metric", "ab_wait")


class CampaignForm(forms.ModelForm):
    start_from = forms.ModelChoiceField(
        queryset=EmailTemplate.objects.all(), required=False, label="Start from template",
        help_text="Fills in the subject and both bodies; edit them afterwards.",
    )
    schedule_for = forms.SplitDateTimeField(
        required=False, label="Send at", widget=admin_widgets.AdminSplitDateTime,
        help_text="Optional. Leave empty to keep it a draft; use the Send now button to start at once.",
    )

    class Meta:
        model = Campaign
        fields = ("name", "start_from", "subject", "from_email", "reply_to", "body_format", "html_body",
                  "markdown_body", "text_body", "batch_size", "track_engagement", "public_archive", "completion_report",
                  "pool", "ab_test_percent", "ab_metric", "ab_wait")
        widgets = {
            "subject": forms.TextInput(attrs={"class": "vLargeTextField"}),
            "body_format": forms.RadioSelect(attrs={"class": "campaign-body-format"}),
            "html_body": forms.Textarea(attrs={"rows": 18, "class": "vLargeTextField campaign-html-body",
                                               "spellcheck": "false"}),
            "markdown_body": forms.Textarea(attrs={"rows": 14, "class": "vLargeTextField campaign-markdown-body"}),
            "text_body": forms.Textarea(attrs={"rows": 6, "class": "vLargeTextField"}),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "from_email" in self.fields:
            # Admin help texts are HTML: the example address must be escaped to show.
            self.fields["from_email"].help_text = escape(self.fields["from_email"].help_text)
        if "schedule_for" in self.fields:
            self.fields["schedule_for"].help_text = (
                f"Date and time in {zone_name()}. " + self.fields["schedule_for"].help_text)
        if "html_body" in self.fields:
            # Admin help texts are HTML and the tag names come from recipient data: escape them.
            self.fields["html_body"].help_text = format_html(
                "Must contain {{{{ unsubscribe_url }}}}. Available merge tags: {}.",
                tag_list(self.instance.available_merge_tags()))
        if "html_body" in self.fields and "body_format" in self.fields:
            self.fields["html_body"].required = False  # a Markdown body makes it (clean)
            self.fields["body_format"].required = False  # not posted (an older client): the format it had
        if self.instance.pk and "start_from" in self.fields:
            del self.fields["start_from"]
        for name in AB_FIELDS:
            if name in self.fields:
                self.fields[name].required = False  # left empty: no A/B test, or the setting it had

    def _clean_ab(self, name):
        value = self.cleaned_data.get(name)
        return getattr(self.instance, name) if value in (None, "") else value

    def clean_body_format(self):
        return self.cleaned_data.get("body_format") or self.instance.body_format or Campaign.BodyFormat.HTML

    def clean_ab_test_percent(self):
        return self._clean_ab("ab_test_percent")

    def clean_ab_metric(self):
        return self._clean_ab("ab_metric")

    def clean_ab_wait(self):
        return self._clean_ab("ab_wait")

    def clean(self):
        cleaned = super().clean()
        template = cleaned.get("start_from")
        if template:
            # Server-side prefill for browsers without JavaScript: empty content comes from the template.
            for field in ("subject", "html_body", "text_body"):
                if not cleaned.get(field):
                    cleaned[field] = getattr(template, field)
                    self.errors.pop(field, None)
            self.instance.template = template
        self._clean_body(cleaned)
        when = cleaned.get("schedule_for")
        if when and when <= timezone.now():
            self.add_error("schedule_for", "Choose a time in the future, or use Send now.")
        pool = cleaned.get("pool")
        if pool is not None and "from_email" not in self.errors:
            domain = parseaddr(cleaned.get("from_email") or settings.DEFAULT_FROM_EMAIL)[1].rpartition("@")[2]
            if not any(account.may_send_from(domain) for account in pool.accounts.filter(enabled=True)):
                self.add_error("pool", f"No enabled account of the pool {pool} may send From {domain}: choose "
                                       f"another pool, or allow the domain in one of its accounts.")
        if self.instance.pk and not lock_without_waiting(self.instance.pk):
            raise ValidationError(IMPORT_HOLDS_CAMPAIGN)
        return cleaned


    def _clean_body(self, cleaned):
        """The body staff wrote in the chosen format; a Markdown one makes the HTML body."""
        if "html_body" not in self.fields or "html_body" in self.errors:
            return
        if cleaned.get("body_format") == Campaign.BodyFormat.MARKDOWN:
            if not (cleaned.get("markdown_body") or "").strip():
                self.add_error("markdown_body", "Write the Markdown body, or choose the HTML format.")
            else:
                cleaned["html_body"] = markdown_to_html(cleaned["markdown_body"])
        elif not (cleaned.get("html_body") or "").strip():
            self.add_error("html_body", forms.Field.default_error_messages["required"])


IMPORT_HOLDS_CAMPAIGN = ("An import into this campaign is still running, so the campaign cannot be saved until it "
                         "finishes; your changes are still in the form: save again then.")


def lock_without_waiting(campaign_id) -> bool:
    """Lock the campaign row for the save under way, or return False at once if an import holds it (until the
    import commits), instead of waiting minutes for it."""
    if not transaction.get_connection().in_atomic_block:
        return True  # no transaction to hold the lock in: the save itself will take it
    try:
        with transaction.atomic():  # a savepoint: the refused lock leaves the request's transaction usable
            list(Campaign.objects.select_for_update(nowait=True).filter(pk=campaign_id).values_list("pk"))
    except OperationalError:
        return False
    return True


class ScheduleForm(forms.Form):
    when = forms.DateTimeField(
        label="Send at", widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"],
    )

    def clean_when(self):
        when = self.cleaned_data["when"]
        if when <= timezone.now():
            raise ValidationError("Choose a time in the future, or use Send now.")
        return when


class TestEmailForm(forms.Form):
    addresses = forms.CharField(
        label="Send a test to", widget=forms.TextInput(attrs={"placeholder": "you@example.com, colleague@example.com",
                                                              "size": 40}),
        help_text=f"Up to {MAX_TEST_ADDRESSES} addresses, separated by commas or spaces.",
    )
    recipient = forms.CharField(
        label="With the data of", required=False, max_length=320,
        widget=forms.TextInput(attrs={"placeholder": "the first recipient of the audience", "size": 30}),
        help_text="The address of one of the campaign's recipients; empty: the first recipient of the audience "
                  "(its segment applied, suppressed addresses left out). An A/B test sends one message per variant.",
    )

    def clean_recipient(self):
        recipient = self.cleaned_data["recipient"].strip()
        if not recipient or recipient.lower() in ("first", "first in audience", "first in the audience"):
            return ""
        try:
            return validate_email_address(recipient).normalized
        except ValidationError:
            raise ValidationError(f"Not an email address: {recipient}.") from None

    def clean_addresses(self):
        raw = self.cleaned_data["addresses"].replace(";", ",").replace(",", " ").split()
        addresses = list(dict.fromkeys(a.strip().lower() for a in raw if a.strip()))
        if not addresses:
            raise ValidationError("Give at least one address.")
        if len(addresses) > MAX_TEST_ADDRESSES:
            raise ValidationError(f"At most {MAX_TEST_ADDRESSES} addresses, please; you gave {len(addresses)}.")
        valid, bad = [], []
        for address in addresses:
            try:
                valid.append(validate_email_address(address).normalized)
            except ValidationError:
                bad.append(address)
        if bad:
            raise ValidationError(f"Not an email address: {', '.join(bad)}.")
        return list(dict.fromkeys(valid))
