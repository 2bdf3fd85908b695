"""Who may read the audit trail."""

from __future__ import annotations

from rest_framework.permissions import BasePermission


class CanViewAuditTrail(BasePermission):
    """Authenticated users holding ``audit.view_auditevent``, for every method.

    Checked before the method is dispatched, so someone without the right
    gets 403 for everything and only readers learn that writes are 405.
    """

    message = "You do not have permission to view the audit trail."

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(
            user
            and user.is_authenticated
            and user.is_active
            and user.has_perm("audit.view_auditevent")
        )
