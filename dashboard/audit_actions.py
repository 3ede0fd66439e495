"""Every action the audit log records, with the words the audit page shows for it.

audit_record() refuses a name missing here, so a typo cannot create an action nobody can filter on.
"""

AUDIT_ACTIONS: dict[str, str] = {
    "auth.signed_in": "Signed in",
    "auth.signed_out": "Signed out",
    "auth.refused": "Sign-in refused",
    "user.created": "Account created",
    "user.role_changed": "Role changed",
    "audit.exported": "Audit log exported",
}
