"""Who may do what: the one permission check that serves the admin, the API and the commands' callers.

Each function takes the user (and, where it matters, the object) and answers True or False from
Django's permissions (user.has_perm), which the staff groups (campaigns.security.staff_groups) grant.
docs/security.md ("Permissions") lists what each group may do; keep it true when a rule changes here.
"""

SEND = "campaigns.send_campaign"
EXPORT = "campaigns.export_recipients"
MANAGE_SUPPRESSIONS = "campaigns.manage_suppressions"


def can_view_campaign(user, campaign=None) -> bool:
    """See a campaign, its dashboard, preview (with sample data), imports and preflights."""
    return user.has_perm("campaigns.view_campaign") or user.has_perm("campaigns.change_campaign")


def can_edit_campaign(user, campaign=None) -> bool:
    """Change content, audience and recipients; pause, unschedule, cancel; send a test with sample data."""
    return user.has_perm("campaigns.change_campaign")


def can_send(user, campaign=None) -> bool:
    """Start mail to recipients: schedule, send now, resume, retry failed, resend unknown, pick an A/B winner."""
    return user.has_perm(SEND)


can_schedule = can_send


def can_export(user, campaign=None) -> bool:
    """Recipients' personal data leaves the admin: CSV exports (delivery logs, an import's rejected rows),
    preview and test sends with a real recipient's data. Only on a campaign the user may see."""
    return user.has_perm(EXPORT) and can_view_campaign(user, campaign)


def can_view_variants(user, campaign=None) -> bool:
    return user.has_perm("campaigns.view_campaignvariant") or user.has_perm("campaigns.change_campaignvariant")


def can_manage_variants(user, campaign=None) -> bool:
    """Add, change and remove a campaign's A/B variants (what is sent, so the same right as its content)."""
    return (can_edit_campaign(user, campaign) and user.has_perm("campaigns.add_campaignvariant")
            and user.has_perm("campaigns.change_campaignvariant") and user.has_perm("campaigns.delete_campaignvariant"))


def can_manage_accounts(user) -> bool:
    """Add and change sending accounts and pools, and test an account's connection (which logs in with
    its secret)."""
    return user.has_perm("campaigns.change_sendingaccount")


can_test_connection = can_manage_accounts


def can_manage_suppressions(user) -> bool:
    return user.has_perm(MANAGE_SUPPRESSIONS)
