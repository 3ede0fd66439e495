"""Rotating and refreshing a vendor's service token at Cloudflare, from its page: an operation of the shared engine
(one step), one change per token at a time.

A rotation's new client secret is the one secret here: the step seals it on the token as Cloudflare answers, for an
operator to reveal once (services.token_secret_reveal); the change row, its step's receipt, the audit and the log
name only the token and its client id.
"""

from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from dashboard import queue
from dashboard.models import User
from dashboard.operations import Engine, StepFailed, note
from dashboard.requestinfo import RequestOrigin
from dashboard.sealing import Purpose, seal
from dashboard.services import audit_record
from integrations import cloudflare as cf
from integrations.cloudflare import CloudflareError, CloudflareNotFound, Priority
from vendors.models import ServiceToken, TokenChange, TokenChangeStep, Vendor

Kind = TokenChange.Kind

STEPS: dict[str, list[tuple[str, str]]] = {
    Kind.ROTATE: [("rotate", "Give the token a new client secret at Cloudflare; the old one stops working")],
    Kind.REFRESH: [("refresh", "Extend the token's expiry at Cloudflare by its duration from now")],
}

# What the audit says a change did, by kind.
_DONE: dict[str, str] = {Kind.ROTATE: "vendor.token_rotated", Kind.REFRESH: "vendor.token_refreshed"}


def _audit(*, action: str, token: ServiceToken, request_origin: RequestOrigin | None, details: dict, **actor) -> None:
    audit_record(
        action=action,
        target_type="vendor",
        target_id=str(token.vendor.public_id),
        target_label=token.vendor.name,
        details={"token": token.label, "client_id": token.client_id, **details},
        request_origin=request_origin,
        **actor,
    )


def _unusable(token: ServiceToken) -> str:
    """Why the token cannot be changed now ("" when it can)."""
    vendor = token.vendor
    if vendor.archived or vendor.status in (Vendor.Status.REVOKED, Vendor.Status.REVOKING):
        state = "archived" if vendor.archived else vendor.get_status_display().lower()
        return f"{vendor.name} is {state}; its tokens cannot be changed."
    if token.status != ServiceToken.Status.ACTIVE or not token.cf_id:
        return f"{token.label} is {token.get_status_display().lower()}; only an active token can be changed."
    return ""


def _refused(token: ServiceToken, error: CloudflareError) -> StepFailed:
    if isinstance(error, CloudflareNotFound):
        return StepFailed(f"{token.label} is no longer at Cloudflare; re-apply the vendor to replace it.")
    return StepFailed(f"Cloudflare refused: {error.message}")


@dataclass
class _Receipt:
    """What the change's step is given; the step row keeps `answers`."""

    run: TokenChange
    answers: list[dict[str, Any]] = field(default_factory=list)


class TokenChanges(Engine[TokenChange, TokenChangeStep, _Receipt]):
    """A change is one step at Cloudflare; a second change asked for the same token while one runs is refused."""

    run_model = TokenChange
    step_model = TokenChangeStep
    related = ("token", "token__vendor")
    subject = "token"
    # Someone is waiting on the click, as for vendor workflows: about two minutes of retries in all.
    retry_cap = 10.0

    def enqueue(self, run_id: int, *, countdown: float = 0.0) -> None:
        from vendors.tasks import token_change_run

        queue.send(token_change_run, run_id, countdown=countdown)

    def busy_message(self, active: TokenChange) -> str:
        return f"{active.token.label} is being changed ({active.get_kind_display().lower()}); wait for it to finish."

    def receipt(self, run: TokenChange) -> _Receipt:
        return _Receipt(run=run)

    def execute(self, step: TokenChangeStep, receipt: _Receipt) -> None:
        run = receipt.run
        token = ServiceToken.objects.select_related("vendor").get(pk=run.token_id)
        if reason := _unusable(token):
            raise StepFailed(reason)
        if step.key == "rotate":
            _rotate(token, step, receipt)
        else:
            _refresh(token, receipt)

    def audit(self, run: TokenChange, event: str, details: dict[str, Any]) -> None:
        if event == "succeeded":
            action, details = _DONE[run.kind], dict(run.data)
        elif event in ("failed", "needs_attention"):
            action, details = "vendor.token_change_failed", {"change": run.kind, "reason": details["reason"][:500]}
        else:
            return
        _audit(
            action=action,
            token=run.token,
            request_origin=run.request_origin,
            details=details,
            actor_email=run.actor_email,
        )

    def retried(self, run: TokenChange, *, actor: Any, request_origin: RequestOrigin | None) -> None:
        _audit(
            action="vendor.token_change_retried",
            token=run.token,
            request_origin=request_origin,
            details={"change": run.kind},
            actor=actor,
        )


def _rotate(token: ServiceToken, step: TokenChangeStep, receipt: _Receipt) -> None:
    """A new secret at Cloudflare, sealed on the token before the step is done.

    An attempt that sealed one and lost its worker before the step was recorded done has rotated already: rotating
    again would leave an operator who revealed that secret with one that no longer works.
    """
    if token.secret_sealed_at and step.started_at and token.secret_sealed_at >= step.started_at:
        note(receipt, call="access.service_tokens.rotate", target=token.label, answer="rotated by an earlier attempt")
        return
    try:
        rotated = cf.service_token_rotate(token.cf_id, priority=Priority.INTERACTIVE)
    except cf.CloudflareTransient:
        raise
    except CloudflareError as error:
        raise _refused(token, error) from None
    token.secret_sealed = seal(rotated.client_secret, purpose=Purpose.SERVICE_TOKEN)
    token.secret_sealed_at = timezone.now()
    token.secret_known = True
    token.client_id = rotated.client_id or token.client_id
    token.save(update_fields=["secret_sealed", "secret_sealed_at", "secret_known", "client_id"])
    note(
        receipt,
        call="access.service_tokens.rotate",
        target=token.label,
        answer=f"new secret for client id {token.client_id}, kept sealed to be shown once",
    )


def _refresh(token: ServiceToken, receipt: _Receipt) -> None:
    try:
        refreshed = cf.service_token_refresh(token.cf_id, priority=Priority.INTERACTIVE)
    except cf.CloudflareTransient:
        raise
    except CloudflareError as error:
        raise _refused(token, error) from None
    before = token.expires_at
    ServiceToken.objects.filter(pk=token.pk).update(expires_at=refreshed.expires_at)
    # What the audit entry says when the change succeeds; an earlier attempt's "from" is the one kept.
    run = receipt.run
    run.data = {
        "from": run.data.get("from", before.isoformat() if before else ""),
        "to": refreshed.expires_at.isoformat() if refreshed.expires_at else "",
    }
    answer = f"expires {run.data['to'] or 'never'}"
    note(receipt, call="access.service_tokens.refresh", target=token.label, answer=answer)


_ENGINE = TokenChanges()


def _request(*, actor: User, token: ServiceToken, kind: str, request_origin: RequestOrigin | None) -> TokenChange:
    """Record the change if an operator may make it now (else the reason); its task is sent once this commits."""
    verb = "rotate" if kind == Kind.ROTATE else "refresh"
    if not actor.has_role(User.Role.OPERATOR):
        raise PermissionDenied(f"Only operators {verb} service tokens.")
    request_origin = request_origin or RequestOrigin()
    with transaction.atomic():
        token = ServiceToken.objects.select_for_update().select_related("vendor").get(pk=token.pk)
        if reason := _unusable(token):
            raise ValidationError(reason)
        change = TokenChange(
            token=token,
            kind=kind,
            actor_email=actor.email,
            source_ip=request_origin.source_ip,
            request_id=request_origin.request_id[:64],
        )
        return _ENGINE.start(change, steps=STEPS[kind])


def token_rotate(*, actor: User, token: ServiceToken, request_origin: RequestOrigin | None) -> TokenChange:
    """Ask for a new client secret at Cloudflare, which stops taking the old one; a task rotates it, and the new one
    is kept sealed until an operator reveals it, once (see services.token_secret_reveal)."""
    return _request(actor=actor, token=token, kind=Kind.ROTATE, request_origin=request_origin)


def token_refresh(*, actor: User, token: ServiceToken, request_origin: RequestOrigin | None) -> TokenChange:
    """Ask for the token's expiry at Cloudflare to be extended by its duration from now; its secret stays."""
    return _request(actor=actor, token=token, kind=Kind.REFRESH, request_origin=request_origin)


def token_change_drive(task: Any, change_id: int) -> None:
    """The task's work: the change's step, with the engine's retries and backoff."""
    _ENGINE.drive(task, change_id)


def token_change_retry(*, actor: User, change: TokenChange, request_origin: RequestOrigin) -> TokenChange:
    """Make a stopped change again from its step; the step reads the token afresh."""
    if not actor.has_role(User.Role.OPERATOR):
        raise PermissionDenied("Only operators change service tokens.")
    return _ENGINE.retry(run_id=change.pk, actor=actor, request_origin=request_origin)
