"""Reads for the shell: the audit log (keyset-paginated so it stays fast at millions of rows), users."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import Q, QuerySet
from django.shortcuts import get_object_or_404
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
    return qs.order_by("-at", "-id")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class AuditCursor:
    """Where a page ends: the (at, id) of its last entry, as an opaque string for the URL."""

    at: datetime
    id: int

    def __str__(self) -> str:
        return f"{(self.at - _EPOCH) // timedelta(microseconds=1)}.{self.id}"

    @classmethod
    def parse(cls, text: str) -> "AuditCursor":
        micros, _, entry_id = text.partition(".")
        if not (micros.isdigit() and entry_id.isdigit()) or len(micros) > 18 or len(entry_id) > 18:
            raise ValueError("not a cursor")
        try:
            at = _EPOCH + timedelta(microseconds=int(micros))
        except OverflowError:
            raise ValueError("not a cursor") from None  # past the last date Python knows
        return cls(at=at, id=int(entry_id))


@dataclass(frozen=True)
class AuditPage:
    entries: list[AuditEntry]
    next_cursor: AuditCursor | None  # where older entries start, or None on the last page
    is_first: bool


def audit_page(*, filters: AuditFilters, before: AuditCursor | None, size: int) -> AuditPage:
    qs = audit_entries(filters=filters)
    if before is not None:
        # The first condition lets the database seek in the index; the second breaks ties within a microsecond.
        qs = qs.filter(at__lte=before.at).filter(Q(at__lt=before.at) | Q(id__lt=before.id))
    rows = list(qs[: size + 1])
    has_more = len(rows) > size
    rows = rows[:size]
    last = rows[-1] if has_more else None
    return AuditPage(
        entries=rows,
        next_cursor=AuditCursor(at=last.at, id=last.id) if last else None,
        is_first=before is None,
    )


def audit_action_choices() -> list[tuple[str, str]]:
    return sorted(AUDIT_ACTIONS.items(), key=lambda item: item[1])


def user_get(*, public_id) -> User:
    return get_object_or_404(User, public_id=public_id)


def users_for_admin() -> QuerySet[User]:
    return User.objects.order_by("email")


def heartbeats() -> dict[str, float]:
    """Seconds since each background process last reported in."""
    now = timezone.now()
    return {hb.name: (now - hb.seen_at).total_seconds() for hb in Heartbeat.objects.all()}
