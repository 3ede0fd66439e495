"""Protection: Access applications in front of an application's approved origins, kept in line as the
application changes, and the cached list of reusable Access policies."""

from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from dashboard import queue
from dashboard.models import User
from dashboard.operations import Engine, StepFailed, WhenBusy, note
from dashboard.requestinfo import RequestOrigin
from dashboard.services import audit_record
from discovery.models import (
    AccessPolicy,
    Application,
    Origin,
    ProtectionChange,
    ProtectionChangeStep,
    Protocol,
    ReviewState,
)


def access_destinations(origins: list[Origin]) -> list[dict]:
    """The application's origins as Access private destinations: address, port, protocol, virtual network."""
    destinations = []
    for origin in origins:
        dest: dict = {"type": "private"}
        if origin.ip_key:
            dest["cidr"] = f"{origin.address}/{128 if ':' in origin.address else 32}"
        else:
            dest["hostname"] = origin.address
        if origin.protocol in (Protocol.TCP, Protocol.UDP) and origin.port:
            dest["port_range"] = str(origin.port)
            dest["l4_protocol"] = origin.protocol.lower()
        if origin.vnet_id:
            dest["vnet_id"] = origin.vnet_id
        destinations.append(dest)
    return destinations


def access_parts(origins: list[Origin]) -> list[list[dict]]:
    """The origins' destinations in parts of at most the number Cloudflare takes on one Access application, in
    origin order, so that an origin added later lands in the last part and the others stay where they are."""
    from integrations import cloudflare as cf

    destinations = access_destinations(origins)
    size = cf.ACCESS_APP_MAX_DESTINATIONS
    return [destinations[i : i + size] for i in range(0, len(destinations), size)]


def _not_approved(application: Application) -> list[Origin]:
    return list(application.origins.exclude(review_state=ReviewState.APPROVED).order_by("id"))


def application_protect(
    *, actor: User, application: Application, policy_id: str, policy_name: str, request_origin: RequestOrigin
) -> list[Origin]:
    """Ask for Access applications in front of the application's approved origins; a task creates them.

    Returns the origins left out because they are not approved, for the caller to name.
    """

    if not actor.has_role(User.Role.OPERATOR):
        raise PermissionDenied("Only operators protect applications.")
    with transaction.atomic():
        application = Application.objects.select_for_update().get(pk=application.pk)
        if application.protection not in (Application.Protection.NONE, Application.Protection.FAILED):
            raise ValidationError("This application is already protected, or a change to Access is in progress.")
        if not application.origins.exists():
            raise ValidationError("Add origins to the application first.")
        left_out = _not_approved(application)
        if not application.origins.filter(review_state=ReviewState.APPROVED).exists():
            names = ", ".join(o.label for o in left_out[:10])
            raise ValidationError(f"Only approved origins are put behind Access, and none of these is: {names}.")
        application.protection = Application.Protection.PENDING
        application.policy_id = policy_id
        application.policy_name = policy_name[:200]
        application.protection_error = ""
        application.full_clean()
        application.save()
        audit_record(
            action="application.protect_requested",
            actor=actor,
            target_type="application",
            target_id=str(application.public_id),
            target_label=application.name,
            details={"policy": policy_name or policy_id, "left_out": [o.label for o in left_out[:100]]},
            request_origin=request_origin,
        )
        protection_change_request(application=application, request_origin=request_origin)
    return left_out


def _access_app_ids_save(application: Application, ids: list[str]) -> None:
    Application.objects.filter(pk=application.pk).update(access_app_ids=ids)
    application.access_app_ids = ids


# Protection states a change works on: pending and protected are made to match the approved origins (a protected
# one again, because a change may have come in while an earlier one ran); removing loses every Access application.
_APPLY_STATES = (Application.Protection.PENDING, Application.Protection.PROTECTED, Application.Protection.REMOVING)


@dataclass
class _Receipt:
    """What the change's step is given; the step row keeps `answers`."""

    run: ProtectionChange
    answers: list[dict[str, Any]] = field(default_factory=list)


class ApplicationProtection(Engine[ProtectionChange, ProtectionChangeStep, _Receipt]):
    """A change to Access is one step (`_access_apply`); the application's protection follows its end, and the
    audit keeps the actions protection has always written."""

    run_model = ProtectionChange
    step_model = ProtectionChangeStep
    related = ("application",)
    subject = "application"
    when_busy = WhenBusy.FOLD
    retry_first = 5.0
    retry_cap = 300.0

    def enqueue(self, run_id: int, *, countdown: float = 0.0) -> None:
        from discovery import tasks

        queue.send(tasks.application_protect_task, run_id, countdown=countdown)

    def receipt(self, run: ProtectionChange) -> _Receipt:
        return _Receipt(run=run)

    def execute(self, step: ProtectionChangeStep, receipt: _Receipt) -> None:
        _access_apply(receipt.run, receipt)

    def audit(self, run: ProtectionChange, event: str, details: dict[str, Any]) -> None:
        if event == "succeeded" and details:
            action = "application.protected" if details["access_app_ids"] else "application.unprotected"
        elif event == "failed":
            action, details = "application.protect_failed", {"error": details["reason"][:300]}
        else:
            return
        application = run.application
        audit_record(
            action=action,
            target_type="application",
            target_id=str(application.public_id),
            target_label=application.name,
            details=details,
            request_origin=run.request_origin,
        )

    def succeeded(self, run: ProtectionChange) -> dict[str, Any]:
        """The application records what Access now holds; the audit entry is written only when that changed."""
        self._follow(run)
        if "ids" not in run.data:
            return {}
        ids, state = run.data["ids"], run.data["state"]
        application = run.application
        updated = Application.objects.filter(pk=application.pk, protection=state).update(
            protection=Application.Protection.PROTECTED if ids else Application.Protection.NONE,
            access_app_ids=ids,
            protected_at=(application.protected_at or timezone.now()) if ids else None,
            protection_error="",
        )
        if updated == 1 and (ids != run.data["known"] or state != Application.Protection.PROTECTED):
            return {"access_app_ids": ids, "destinations": run.data["destinations"]}
        return {}

    def stopped(self, run: ProtectionChange, step: ProtectionChangeStep, *, reason: str, findings: list[str]) -> None:
        state = run.data.get("state", Application.Protection.PENDING)
        failed = Application.objects.filter(pk=run.application_id, protection=state).update(
            protection=Application.Protection.FAILED, protection_error=reason[:300]
        )
        # The application shows the failure and offers a retry, which reads it afresh; only one that has moved on
        # since (someone asked for another change) needs a change of its own.
        if not failed:
            self._follow(run)

    def retried(self, run: ProtectionChange, *, actor: Any, request_origin: RequestOrigin | None) -> None:
        """The application wants again what the change was for; the step reads it afresh."""
        application = run.application
        state = run.data.get("state", Application.Protection.PENDING)
        Application.objects.filter(pk=application.pk, protection=Application.Protection.FAILED).update(
            protection=state, protection_error=""
        )
        _audit_application(
            "application.protect_retried", actor, application, {"change": str(run.public_id)}, request_origin
        )

    def busy_message(self, active: ProtectionChange) -> str:
        return "Wait until the change to Access in progress is done."

    def _follow(self, run: ProtectionChange) -> None:
        """Someone changed the application while the change ran: a new change reads it afresh."""
        if run.again:
            protection_change_request(application=run.application, request_origin=run.request_origin)


_ENGINE = ApplicationProtection()


def protection_change_request(*, application: Application, request_origin: RequestOrigin) -> ProtectionChange:
    """Bring Access in line with the application, one change at a time (the engine folds what is asked while a
    change is under way into it): a change that has not started yet will read what is asked now; one that is
    running is followed by another once it ends; otherwise a new change starts once this commits."""
    change = ProtectionChange(
        application=application, source_ip=request_origin.source_ip, request_id=request_origin.request_id[:64]
    )
    return _ENGINE.start(
        change, steps=[("access", "Make Access hold the application's approved origins, and nothing else")]
    )


def protection_change_drive(task: Any, change_id: int) -> None:
    """The task's work: the change's step, with the engine's retries and backoff."""
    _ENGINE.drive(task, change_id)


def protection_change_retry(
    *, actor: User, change: ProtectionChange, request_origin: RequestOrigin
) -> ProtectionChange:
    """Make the application's latest change again, from the step that stopped it."""
    _operator(actor)
    latest = change.application.protection_changes.first()
    if latest is None or latest.pk != change.pk:
        raise ValidationError("A newer change to Access has replaced this one.")
    return _ENGINE.retry(run_id=change.pk, actor=actor, request_origin=request_origin)


def _access_apply(change: ProtectionChange, receipt: _Receipt) -> None:
    """Make Cloudflare hold what the application needs: one Access application per part of its approved
    origins' destinations (created, or found and replaced after a retry), and none left over; none at all when
    its protection is being removed or no approved origin is left. What it did goes in the change's data, for
    the application to record when the change succeeds."""
    from integrations import cloudflare as cf

    application = Application.objects.get(pk=change.application_id)
    state = application.protection
    change.data = {"state": state}
    if state not in _APPLY_STATES:
        return
    approved = (
        []
        if state == Application.Protection.REMOVING
        else list(application.origins.filter(review_state=ReviewState.APPROVED).order_by("id"))
    )
    parts = access_parts(approved)
    known = list(application.access_app_ids)
    ids: list[str] = []
    removed = 0
    try:
        for number, destinations in enumerate(parts, start=1):
            result = cf.access_private_app_ensure(
                name=application.access_name(number),
                destinations=destinations,
                policy_id=application.policy_id,
                app_id=known[number - 1] if number <= len(known) else "",
                owner_mark=application.owner_mark,
            )
            ids.append(result.id)
            note(receipt, call="Access application made to hold its part", target=result.name, answer=result.id)
        for surplus in known[len(parts) :]:
            cf.access_private_app_delete(app_id=surplus, owner_mark=application.owner_mark)
            removed += 1
            note(receipt, call="Access application no longer needed deleted", target=surplus, answer="deleted")
    except cf.CloudflareError as exc:
        # What exists at Cloudflare stays recorded, so a retry or an unprotect finds every part.
        _access_app_ids_save(application, ids + known[len(ids) + removed :])
        if isinstance(exc, cf.CloudflareTransient):
            raise
        raise StepFailed(exc.message) from exc
    change.data.update(ids=ids, known=known, destinations=sum(len(p) for p in parts))


def _access_sync_request(applications: list[Application], request_origin: RequestOrigin) -> None:
    """After a change to what a protected application holds, bring its Access applications in line, through the
    same task that created them."""

    for application in applications:
        if application.protection == Application.Protection.PROTECTED:
            Application.objects.filter(pk=application.pk, protection=Application.Protection.PROTECTED).update(
                protection=Application.Protection.PENDING
            )
        if application.protection in (Application.Protection.PROTECTED, Application.Protection.PENDING):
            protection_change_request(application=application, request_origin=request_origin)


def _access_sync_after_review(origins: list[Origin], request_origin: RequestOrigin) -> None:
    ids = {o.application_id for o in origins if o.application_id}
    _access_sync_request(list(Application.objects.filter(pk__in=ids)), request_origin)


def _operator(actor: User) -> None:
    if not actor.has_role(User.Role.OPERATOR):
        raise PermissionDenied("Only operators change applications.")


def _audit_application(
    action: str, actor: User, application: Application, details: dict, request_origin: RequestOrigin | None
):
    audit_record(
        action=action,
        actor=actor,
        target_type="application",
        target_id=str(application.public_id),
        target_label=application.name,
        details=details,
        request_origin=request_origin,
    )


def application_unprotect(*, actor: User, application: Application, request_origin: RequestOrigin) -> Application:
    """Ask for the Access applications Gatehouse created for it to be deleted; a task deletes them."""

    _operator(actor)
    with transaction.atomic():
        application = Application.objects.select_for_update().get(pk=application.pk)
        if application.protection in (Application.Protection.PENDING, Application.Protection.REMOVING):
            raise ValidationError("Wait until the change to Access in progress is done.")
        if not application.access_app_ids:
            raise ValidationError("Gatehouse has created no Access application for it.")
        application.protection = Application.Protection.REMOVING
        application.protection_error = ""
        application.save(update_fields=["protection", "protection_error"])
        _audit_application(
            "application.unprotect_requested", actor, application, {"access_app_ids": application.access_app_ids},
            request_origin,
        )  # fmt: skip
        protection_change_request(application=application, request_origin=request_origin)
    return application


def access_policies_refresh_request() -> None:
    from discovery import tasks

    queue.send_on_commit(
        tasks.access_policies_refresh_task, unsent_message=queue.refresh_unsent("discovery-access-policies")
    )


def access_policies_refresh() -> int:
    """Replace the cached list of reusable Access policies with Cloudflare's."""
    from integrations import cloudflare as cf

    policies = cf.access_reusable_policies()
    now = timezone.now()
    with transaction.atomic():
        for policy in policies:
            AccessPolicy.objects.update_or_create(
                cf_id=policy.id, defaults={"name": policy.name, "decision": policy.decision, "seen_at": now}
            )
        AccessPolicy.objects.exclude(cf_id__in=[p.id for p in policies]).delete()
    return len(policies)
