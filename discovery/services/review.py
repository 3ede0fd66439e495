"""Review decisions on origins, each recorded with its reason."""

import datetime as dt

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from alerts.services import alert_resolve
from dashboard.models import User
from dashboard.requestinfo import RequestOrigin
from dashboard.services import audit_record
from discovery.models import Origin, ReviewEvent, ReviewState
from discovery.services.logpush import _alert_key
from discovery.services.protection import _access_sync_after_review

_DECISIONS = {
    # decision -> (states it may be taken from, state it leads to). Any origin can be approved or unapproved
    # directly; putting origins into an application is a way to review many together, not a step before it.
    "approve": ({ReviewState.UNREVIEWED, ReviewState.IN_REVIEW, ReviewState.UNAPPROVED}, ReviewState.APPROVED),
    "unapprove": ({ReviewState.UNREVIEWED, ReviewState.IN_REVIEW, ReviewState.APPROVED}, ReviewState.UNAPPROVED),
    "start_review": ({ReviewState.UNREVIEWED}, ReviewState.IN_REVIEW),
    "reopen": ({ReviewState.APPROVED, ReviewState.UNAPPROVED}, ReviewState.IN_REVIEW),
}
DECISIONS = tuple(_DECISIONS)
DECISION_LABELS = {"approve": "approve", "unapprove": "unapprove", "start_review": "start review", "reopen": "reopen"}


def review_decisions(state: str) -> list[str]:
    """The decisions that can be taken on an origin in this review state."""
    return [decision for decision, (allowed, _) in _DECISIONS.items() if state in allowed]


def _transition(
    *, origin: Origin, to: ReviewState, actor: User | None, reason: str, request_origin: RequestOrigin, now: dt.datetime
) -> None:
    previous = origin.review_state
    origin.review_state = to
    origin.reviewed_at = now
    if origin.traffic_while_unapproved_at is not None:
        origin.traffic_while_unapproved_at = None
        alert_resolve(dedupe_key=_alert_key(origin), body=f"The origin is now {to.label.lower()}.")
    ReviewEvent.objects.create(
        origin=origin, at=now, actor_email=actor.email if actor else "", from_state=previous, to_state=to,
        reason=reason,
    )  # fmt: skip
    audit_record(
        action="origin.reviewed",
        actor=actor,
        target_type="origin",
        target_id=str(origin.public_id),
        target_label=origin.label,
        details={"from": previous, "to": to.value, "reason": reason},
        request_origin=request_origin,
    )


def origin_review(
    *, actor: User, origins: list[Origin], decision: str, reason: str, request_origin: RequestOrigin
) -> list[Origin]:
    """Approve, unapprove, start reviewing or reopen origins, each recorded with its reason. Unapproving needs
    a reason."""
    if not actor.has_role(User.Role.OPERATOR):
        raise PermissionDenied("Only operators review origins.")
    if decision not in _DECISIONS:
        raise ValidationError({"decision": f"{decision!r} is not a review decision."})
    reason = reason.strip()
    if len(reason) > 500:
        raise ValidationError({"reason": "Keep the reason under 500 characters."})
    if decision == "unapprove" and not reason:
        raise ValidationError({"reason": "Say why the origin is unapproved."})
    allowed, to = _DECISIONS[decision]
    now = timezone.now()
    with transaction.atomic():
        rows = list(Origin.objects.select_for_update().filter(pk__in=[o.pk for o in origins]).order_by("id"))
        wrong = [o for o in rows if o.review_state not in allowed]
        if wrong:
            names = ", ".join(o.label for o in wrong[:5])
            states = " or ".join(ReviewState(s).label.lower() for s in allowed)
            raise ValidationError(f"Only {states} origins can be {to.label.lower()}: {names}.")
        for origin in rows:
            _transition(origin=origin, to=to, actor=actor, reason=reason, request_origin=request_origin, now=now)
        Origin.objects.bulk_update(rows, ["review_state", "reviewed_at", "traffic_while_unapproved_at"])
        _access_sync_after_review(rows, request_origin)
    return rows
