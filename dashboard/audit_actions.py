"""Every action the audit log records, with the words the audit page shows for it.

Each app registers its own actions from its AppConfig.ready(); audit_record() refuses a name nobody registered,
so a typo cannot create an action that no filter finds.
"""

AUDIT_ACTIONS: dict[str, str] = {
    "auth.signed_in": "Signed in",
    "auth.signed_out": "Signed out",
    "auth.refused": "Sign-in refused",
    "user.created": "Account created",
    "user.role_changed": "Role changed",
    "audit.exported": "Audit log exported",
}


def register(actions: dict[str, str]) -> None:
    for name, label in actions.items():
        if AUDIT_ACTIONS.get(name, label) != label:
            raise ValueError(f"Audit action {name!r} is already registered with another label")
        AUDIT_ACTIONS[name] = label
