"""Reads for the shell: the audit log (keyset-paginated so it stays fast at millions of rows), users."""

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q, QuerySet
from django.utils import timezone

from dashboard.audit_actions import AUDIT_ACTIONS
from dashboard.models import AuditEntry, Heartbeat, User


@dataclass(frozen=True)
class AuditFilters:
    actor: str = ""
    action: str = ""
    target: str = ""
    since: datetime | None = None
    until: datetime | None = None


def audit_entries(*, filters: AuditFilters) -> QuerySet[AuditEntry]:
    # Every filter is an equality on an indexed column (or a range on `at`), so a page costs the same
    # at a thousand rows and at a million.
    qs = AuditEntry.objects.all()
    if filters.actor:
        qs = qs.filter(actor_email=filters.actor.lower())
    if filters.action:
        qs = qs.filter(action=filters.action)
    if filters.target:
        qs = qs.filter(Q(target_id=filters.target) | Q(target_label=filters.target))
    if filters.since:
        qs = qs.filter(at__gte=filters.since)
    if filters.until:
        qs = qs.filter(at__lt=filters.until)
    return qs.order_by("-id")


@dataclass(frozen=True)
class AuditPage:
    entries: list[AuditEntry]
    next_before: int | None  # the cursor for older entries, or None on the last page
    is_first: bool


def audit_page(*, filters: AuditFilters, before: int | None, size: int) -> AuditPage:
    qs = audit_entries(filters=filters)
    if before is not None:
        qs = qs.filter(id__lt=before)
    rows = list(qs[: size + 1])
    has_more = len(rows) > size
    rows = rows[:size]
    return AuditPage(entries=rows, next_before=rows[-1].id if has_more else None, is_first=before is None)


def audit_action_choices() -> list[tuple[str, str]]:
    return sorted(AUDIT_ACTIONS.items(), key=lambda item: item[1])


def users_for_admin() -> QuerySet[User]:
    return User.objects.order_by("email")


def heartbeats() -> dict[str, float]:
    """Seconds since each background process last reported in."""
    now = timezone.now()
    return {hb.name: (now - hb.seen_at).total_seconds() for hb in Heartbeat.objects.all()}
