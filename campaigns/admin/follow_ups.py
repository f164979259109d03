"""The campaign's follow-up page: how many recipients each group has, and "New campaign to…" buttons.

The page counts (campaigns.audience.follow_ups.audiences); a button posts the group, and
campaigns.audience.follow_ups.create_follow_up makes the draft. Both refuse a campaign that never started sending.
"""

from django import forms
from django.template.response import TemplateResponse

from campaigns import stats
from campaigns.admin.staff_actions import change_url, done
from campaigns.audience import follow_ups
from campaigns.exceptions import CampaignError
from campaigns.models import Campaign


class FollowUpForm(forms.Form):
    segment = forms.ChoiceField(choices=follow_ups.Segment.choices)
    link = forms.IntegerField(required=False, min_value=1)

    def clean(self):
        data = super().clean()
        if data.get("segment") == follow_ups.Segment.LINK_CLICKERS and not data.get("link"):
            raise forms.ValidationError("Choose the link whose clickers the follow-up goes to.")
        return data


def follow_up_page(request, campaign: Campaign, *, admin_context, can_create, form=None):
    context = {**admin_context, "opts": Campaign._meta, "title": f"Follow up “{campaign}”", "campaign": campaign,
               "can_create": can_create, "form": form,
               # The groups named after a campaign page figure carry its explanation (campaigns.stats.FIGURES).
               "figure_help": {follow_ups.Segment.OPENERS: stats.figure_help("opened"),
                               follow_ups.Segment.CLICKERS: stats.figure_help("clicked")}}
    try:
        found = follow_ups.audiences(campaign)
    except CampaignError as refusal:
        context["refusal"] = str(refusal)
    else:
        context["audiences"] = [a for a in found if a.link is None]
        context["link_audiences"] = [a for a in found if a.link is not None]
    return TemplateResponse(request, "admin/campaigns/campaign/follow_up.html", context)


def create(user, campaign: Campaign, segment, link=None):
    made = follow_ups.create_follow_up(campaign.pk, segment, link_id=link, created_by=user)
    left_out = f" {made.suppressed} suppressed address{'es' * (made.suppressed != 1)} left out." \
        if made.suppressed else ""
    after_ab = ""
    if made.campaign.subject == follow_ups.AB_SUBJECT_TAG:
        after_ab = (" After the A/B test its subject is each recipient's own ({{ ab_subject }}), and its content "
                    "the winner's.")
    elif campaign.ab_test_percent > 0 and campaign.ab_winner_id is not None:
        after_ab = " After the A/B test its subject and content are the winner's."
    return done(f"Follow-up draft “{made.campaign.name}” created with {made.recipients} "
                f"recipient{'s' * (made.recipients != 1)}.{left_out}{after_ab} Edit its content, then send it.",
                url=change_url(made.campaign.pk))
