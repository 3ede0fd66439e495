"""Writes for the shell: the audit log, users and their roles."""

from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from dashboard.audit_actions import AUDIT_ACTIONS
from dashboard.models import AuditEntry, Heartbeat, User
from dashboard.requestinfo import RequestOrigin
from integrations.records import text

# Audit details are shown on a page and exported; keep any one value readable and bounded.
_MAX_DETAIL_CHARS = 2000


def _bounded(value: Any) -> Any:
    if isinstance(value, str):
        return value if len(value) <= _MAX_DETAIL_CHARS else value[:_MAX_DETAIL_CHARS] + "…"
    if isinstance(value, dict):
        return {str(k)[:100]: _bounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_bounded(v) for v in value[:100]]
    return value


def audit_record(
    *,
    action: str,
    actor: User | None = None,
    actor_email: str = "",
    target_type: str = "",
    target_id: str = "",
    target_label: str = "",
    details: dict[str, Any] | None = None,
    request_origin: RequestOrigin | None = None,
) -> AuditEntry:
    if action not in AUDIT_ACTIONS:
        raise ValueError(f"Unknown audit action {action!r}; add it to dashboard/audit_actions.py")
    request_origin = request_origin or RequestOrigin()
    return AuditEntry.objects.create(
        action=action,
        actor_email=(actor.email if actor else actor_email)[:254],
        target_type=target_type[:32],
        target_id=str(target_id)[:64],
        # Labels are names from Cloudflare, AWS and logs: one line, no bidirectional overrides (see records.text).
        target_label=text(target_label, 200),
        details=_bounded(details or {}),
        source_ip=request_origin.source_ip,
        request_id=request_origin.request_id[:64],
    )


def user_role_for_new_account(*, email: str) -> User.Role:
    """GATEHOUSE_ADMIN_EMAILS names the first admins; everyone else starts as a viewer."""
    if email.lower() in settings.GATEHOUSE_ADMIN_EMAILS:
        return User.Role.ADMIN
    return User.Role.VIEWER


def user_set_role(*, actor: User, user: User, role: str, request_origin: RequestOrigin) -> User:
    if not actor.has_role(User.Role.ADMIN):
        raise PermissionDenied("Only admins change roles.")
    if role not in User.Role.values:
        raise ValidationError({"role": f"{role!r} is not a role."})
    with transaction.atomic():
        # Every admin row is locked, in one order, before anything is read: two admins demoting each other at the
        # same moment then run one after the other, and the second sees the first one's change. Locking only the
        # target would let each see the other still an admin, and leave none.
        admins = list(User.objects.select_for_update().filter(role=User.Role.ADMIN, is_active=True).order_by("pk"))
        if actor.pk not in {a.pk for a in admins}:
            raise PermissionDenied("Only admins change roles.")
        user = User.objects.select_for_update().get(pk=user.pk)
        previous = user.role
        if previous == role:
            return user
        if previous == User.Role.ADMIN and not any(a.pk != user.pk for a in admins):
            raise ValidationError({"role": "Gatehouse needs at least one admin; promote another first."})
        user.role = role
        user.full_clean()
        user.save(update_fields=["role"])
        audit_record(
            action="user.role_changed",
            actor=actor,
            target_type="user",
            target_id=str(user.public_id),
            target_label=user.email,
            details={"from": previous, "to": role},
            request_origin=request_origin,
        )
    return user


def heartbeat_record(*, name: str) -> None:
    Heartbeat.objects.update_or_create(name=name, defaults={"seen_at": timezone.now()})
