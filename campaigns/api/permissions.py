"""Who may call each API operation: every view names, per action, one check of
campaigns.security.permissions (the admin's own), so the API allows exactly what the admin does."""

from rest_framework.permissions import BasePermission

from campaigns.security import permissions


class StaffChecks(BasePermission):
    """The view's `checks[action]` (a function of the user) must allow it; only active staff pass any."""

    message = "You do not have permission to do this."

    def has_permission(self, request, view):
        if not permissions.is_staff(request.user):
            return False
        check = view.checks.get(getattr(view, "action", None) or request.method.lower())
        return bool(check and check(request.user))


def view_of(model):
    return lambda user: permissions.can_view(user, model)


def add_of(model):
    return lambda user: permissions.can_add(user, model)


def change_of(model):
    return lambda user: permissions.can_change(user, model)


def delete_of(model):
    return lambda user: permissions.can_delete(user, model)


def both(*checks):
    return lambda user: all(check(user) for check in checks)
