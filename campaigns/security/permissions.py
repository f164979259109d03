"""The one permission check: what a staff user may do, for the admin and the API alike.

Built only on Django's permissions (`user.has_perm("campaigns.<codename>")`), which the staff groups
(staff_groups.py) grant: a Viewer reads, a Campaign editor edits but cannot send, a Campaign sender also
sends, exports and manages suppressions. Superusers have every permission. An inactive or non-staff user
has none here, as in the admin.
"""


def is_staff(user):
    return bool(user and user.is_authenticated and user.is_active and user.is_staff)


def has(user, codename):
    return is_staff(user) and user.has_perm(f"campaigns.{codename}")


def can_view(user, model="campaign"):
    """Read MODEL's rows (as the admin: view or change permission)."""
    return has(user, f"view_{model}") or has(user, f"change_{model}")


def can_add(user, model="campaign"):
    return has(user, f"add_{model}")


def can_change(user, model="campaign"):
    return has(user, f"change_{model}")


def can_delete(user, model="campaign"):
    return has(user, f"delete_{model}")


def can_send(user):
    """Start mail to recipients: schedule, send now, resume, retry failed, resend unknown."""
    return has(user, "send_campaign")


def can_export(user, campaign=None):
    """Recipients' personal data leaves the product: CSV exports, previews and tests with real data."""
    return has(user, "export_recipients") and can_view(user, "campaign")


def can_manage_suppressions(user):
    return has(user, "manage_suppressions")


def can_manage_accounts(user):
    """Add, change or remove sending accounts and pools (their secrets): operators, superusers by default."""
    return has(user, "change_sendingaccount")


def can_manage_webhooks(user):
    """Register, change and remove outbound webhook endpoints, and replay their events."""
    return has(user, "change_webhookendpoint")
