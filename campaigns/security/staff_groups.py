"""The staff groups of the product and what each may do (docs/security.md, "What the permissions allow")."""

from django.contrib.auth.models import Group, Permission

VIEW = ["campaigns.view_campaign", "campaigns.view_emailtemplate", "campaigns.view_recipient",
        "campaigns.view_deliverylog", "campaigns.view_recipientimport", "campaigns.view_suppression",
        # Sending accounts and pools: their limits, usage and last error, never their secrets (adding
        # and changing them is for superusers, the operators).
        "campaigns.view_sendingaccount", "campaigns.view_sendingpool",
        # A/B variants are part of a campaign: whoever sees a campaign sees its variants.
        "campaigns.view_campaignvariant"]
# Write content, import recipients, test-send with sample data, delete drafts (and their recipients).
EDIT = ["campaigns.add_campaign", "campaigns.change_campaign", "campaigns.delete_campaign",
        "campaigns.add_emailtemplate", "campaigns.change_emailtemplate", "campaigns.delete_recipient",
        "campaigns.delete_recipientimport",
        # A/B variants are the campaign's content: whoever writes content writes its variants.
        "campaigns.add_campaignvariant", "campaigns.change_campaignvariant", "campaigns.delete_campaignvariant"]
SEND = ["campaigns.send_campaign", "campaigns.export_recipients", "campaigns.manage_suppressions"]

STAFF_GROUPS = {
    "Viewer": VIEW,
    "Campaign editor": VIEW + EDIT,
    "Campaign sender": VIEW + EDIT + SEND,
}


def ensure_staff_groups():
    """Create or update each group so it has exactly its permissions; returns [(name, created)].

    Idempotent: running it again changes nothing, and puts back a group someone edited by hand.
    """
    wanted = {codename for codenames in STAFF_GROUPS.values() for codename in codenames}
    found = {f"{p.content_type.app_label}.{p.codename}": p
             for p in Permission.objects.select_related("content_type").filter(
                 content_type__app_label="campaigns", codename__in=[c.split(".")[1] for c in wanted])}
    missing = sorted(wanted - set(found))
    if missing:
        raise LookupError(f"Permissions missing (run migrate first): {', '.join(missing)}")
    result = []
    for name, codenames in STAFF_GROUPS.items():
        group, created = Group.objects.get_or_create(name=name)
        group.permissions.set([found[c] for c in codenames])
        result.append((name, created))
    return result
