"""Who may do what: the one permission check that serves the admin, the API and the commands' callers.

Each function takes the user (and, where it matters, the object) and answers True or False from
Django's permissions (`user.has_perm("campaigns.<codename>")`), which the staff groups
(campaigns.security.staff_groups) grant: a Viewer reads, a Campaign editor edits but cannot send, a
Campaign sender also sends, exports and manages suppressions. Superusers have every permission; an
inactive or non-staff user has none here, as in the admin. docs/security.md ("Permissions") lists what
each group may do; keep it true when a rule changes here.
"""


def is_staff(user) -> bool:
    return bool(user and user.is_authenticated and user.is_active and user.is_staff)


def has(user, codename) -> bool:
    return is_staff(user) and user.has_perm(f"campaigns.{codename}")


def can_view(user, model="campaign") -> bool:
    """Read MODEL's rows (as the admin: view or change permission)."""
    return has(user, f"view_{model}") or has(user, f"change_{model}")


def can_add(user, model="campaign") -> bool:
    return has(user, f"add_{model}")


def can_change(user, model="campaign") -> bool:
    return has(user, f"change_{model}")


def can_delete(user, model="campaign") -> bool:
    return has(user, f"delete_{model}")


def can_view_campaign(user, campaign=None) -> bool:
    """See a campaign, its dashboard, preview (with sample data), imports and preflights."""
    return can_view(user, "campaign")


def can_edit_campaign(user, campaign=None) -> bool:
    """Change content, audience and recipients; pause, unschedule, cancel; send a test with sample data."""
    return can_change(user, "campaign")


def can_send(user, campaign=None) -> bool:
    """Start mail to recipients: schedule, send now, resume, retry failed, resend unknown, confirm dead
    addresses, pick an A/B winner."""
    return has(user, "send_campaign")


can_schedule = can_send


def can_export(user, campaign=None) -> bool:
    """Recipients' personal data leaves the product: CSV exports (delivery logs, an import's rejected rows),
    preview and test sends with a real recipient's data. Only on a campaign the user may see."""
    return has(user, "export_recipients") and can_view_campaign(user, campaign)


def can_view_variants(user, campaign=None) -> bool:
    return can_view(user, "campaignvariant")


def can_manage_variants(user, campaign=None) -> bool:
    """Add, change and remove a campaign's A/B variants (what is sent, so the same right as its content)."""
    return (can_edit_campaign(user, campaign) and can_add(user, "campaignvariant")
            and can_change(user, "campaignvariant") and can_delete(user, "campaignvariant"))


def can_manage_accounts(user) -> bool:
    """Add and change sending accounts and pools, and test an account's connection (which logs in with
    its secret): operators, superusers by default."""
    return has(user, "change_sendingaccount")


can_test_connection = can_manage_accounts


def can_manage_suppressions(user) -> bool:
    return has(user, "manage_suppressions")


def can_manage_webhooks(user) -> bool:
    """Register, change and remove outbound webhook endpoints, and replay their events."""
    return has(user, "change_webhookendpoint")
