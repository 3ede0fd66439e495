"""Vendor workflows as rows: a WorkflowRun with ordered WorkflowSteps, advanced one step per Celery task.

This is the engine: which steps each kind of run takes, and running the next one. A worker holds a lease on the
run while it executes a step; a replacement waits out the lease instead of racing the first. The steps themselves
are in vendors.steps.
"""

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from dashboard.requestinfo import Origin
from dashboard.services import audit_record
from integrations.cloudflare import CloudflareError, CloudflareTransient, Priority
from vendors.models import Grant, Vendor, WorkflowRun, WorkflowStep
from vendors.steps import STEP_FUNCTIONS
from vendors.steps.context import Context, StepFailed, StepWait, VerificationFailed

Kind = WorkflowRun.Kind

_REVOKE_STEPS = [
    ("quiesce", "Stop other work on this vendor"),
    ("cut_off", "Detach the vendor's policies from every application; delete its service tokens"),
    ("end_access", "Delete the policies; end the sessions of its people (devices too) and the applications' tokens"),
    ("verify_revoked", "Read Cloudflare back: no policy, token or session admits the vendor"),
]

_END_GRANT_STEPS = [
    ("attach", "Detach the policies from applications whose grant ended; delete policies no grant uses"),
    ("end_grant_sessions", "End the sessions of the vendor's people and the ended applications' tokens"),
    ("verify_grants_ended", "Read Cloudflare back: nothing admits the vendor where its grant ended; the rest do"),
]

STEPS: dict[str, list[tuple[str, str]]] = {
    Kind.ONBOARD: [
        ("validate", "Check the vendor, its grants and the applications at Cloudflare"),
        ("tokens", "Create service tokens"),
        ("policy", "Create or update the vendor's policies (people; service tokens)"),
        ("attach", "Attach the policies to the granted applications"),
        ("notify", "Email each contact their instructions"),
        ("verify_granted", "Read Cloudflare back: people and service tokens are admitted"),
    ],
    Kind.CHANGE: [
        ("validate", "Check the vendor, its grants and the applications at Cloudflare"),
        ("tokens", "Create new service tokens"),
        ("policy", "Update the vendor's policies (people; service tokens)"),
        ("attach", "Attach the policies to granted applications; detach them from the others"),
        ("verify_granted", "Read Cloudflare back: people and service tokens are admitted"),
    ],
    Kind.EXPIRE: _END_GRANT_STEPS,
    Kind.END_GRANT: _END_GRANT_STEPS,
    # An adopted policy keeps its id: the policy step gives it Gatehouse's name, and its service tokens move to
    # the vendor's Service Auth policy.
    Kind.ADOPT: [
        ("validate", "Check the vendor, its grants and the applications at Cloudflare"),
        ("tokens", "Read the adopted service tokens"),
        ("policy", "Give the adopted policy Gatehouse's name and rules (people; service tokens)"),
        ("attach", "Keep the policies on the granted applications"),
        ("verify_granted", "Read Cloudflare back: people and service tokens are admitted"),
    ],
    Kind.SUSPEND: _REVOKE_STEPS,
    Kind.REVOKE: _REVOKE_STEPS,
}

PRIORITY = {
    Kind.ONBOARD: Priority.INTERACTIVE,
    Kind.CHANGE: Priority.INTERACTIVE,
    Kind.REVOKE: Priority.INTERACTIVE,
    Kind.SUSPEND: Priority.INTERACTIVE,
    Kind.EXPIRE: Priority.BACKGROUND,
    Kind.END_GRANT: Priority.INTERACTIVE,
    Kind.ADOPT: Priority.INTERACTIVE,
}

# What the vendor becomes when a run of each kind succeeds.
FINAL_STATUS = {
    Kind.ONBOARD: Vendor.Status.ACTIVE,
    Kind.CHANGE: Vendor.Status.ACTIVE,
    Kind.EXPIRE: Vendor.Status.ACTIVE,
    Kind.END_GRANT: Vendor.Status.ACTIVE,
    Kind.ADOPT: Vendor.Status.ACTIVE,
    Kind.SUSPEND: Vendor.Status.SUSPENDED,
    Kind.REVOKE: Vendor.Status.REVOKED,
}


def lease_seconds() -> float:
    return float(getattr(settings, "GATEHOUSE_WORKFLOW_LEASE_SECONDS", settings.CELERY_TASK_TIME_LIMIT))


def _origin(run: WorkflowRun) -> Origin:
    return Origin(source_ip=run.source_ip, request_id=run.request_id)


def _audit(run: WorkflowRun, action: str, details: dict[str, Any]) -> None:
    audit_record(
        action=action,
        actor_email=run.actor_email,
        target_type="vendor",
        target_id=str(run.vendor.public_id),
        target_label=run.vendor.name,
        details={"run": str(run.public_id), "kind": run.kind, **details},
        origin=_origin(run),
    )


def create_steps(run: WorkflowRun) -> None:
    WorkflowStep.objects.bulk_create(
        WorkflowStep(run=run, position=i, key=key, label=label) for i, (key, label) in enumerate(STEPS[run.kind], 1)
    )


@dataclass(frozen=True)
class Outcome:
    """What the task should do next: nothing (`done`), the same run again after `wait` seconds, or (`go_on`) its
    next step at once: the step just done is committed, so the worker that did it may take the next one itself."""

    done: bool = True
    wait: float = 0.0
    go_on: bool = False


def advance(*, run_id: int) -> Outcome:
    """Run the next step of the run, if it is still active and no other worker holds it."""
    now = timezone.now()
    with transaction.atomic():
        run = WorkflowRun.objects.select_for_update().select_related("vendor").filter(pk=run_id).first()
        if run is None or not run.is_active:
            return Outcome()
        if run.lease_until and run.lease_until > now:
            return Outcome(done=False, wait=(run.lease_until - now).total_seconds() + 0.1)
        step = run.steps.filter(status__in=[WorkflowStep.Status.PENDING, WorkflowStep.Status.RUNNING]).first()
        if step is None:
            _finish(run)
            return Outcome()
        if run.status == WorkflowRun.Status.PENDING:
            run.started_at = now
            _audit(run, "vendor.workflow_started", {})
        run.status = WorkflowRun.Status.RUNNING
        run.lease_until = now + timedelta(seconds=lease_seconds())
        run.save(update_fields=["status", "started_at", "lease_until", "updated_at"])
        step.status = WorkflowStep.Status.RUNNING
        step.attempts += 1
        step.started_at = step.started_at or now
        step.save(update_fields=["status", "attempts", "started_at"])
    ctx = Context(run=run, vendor=run.vendor, priority=PRIORITY[run.kind])
    try:
        STEP_FUNCTIONS[step.key](ctx)
    except StepWait as wait:
        _release(run, step, ctx, error="")
        return Outcome(done=False, wait=wait.seconds)
    except CloudflareTransient as exc:
        _release(run, step, ctx, error=exc.message)
        raise
    except VerificationFailed as exc:
        _stop(run, step, ctx, status=WorkflowRun.Status.NEEDS_ATTENTION, reason=str(exc), findings=exc.findings)
        return Outcome()
    except (CloudflareError, StepFailed) as exc:
        _stop(run, step, ctx, status=WorkflowRun.Status.FAILED, reason=str(exc))
        return Outcome()
    if _complete(run, step, ctx):
        return Outcome(done=False, go_on=True)
    return Outcome()


def _release(run: WorkflowRun, step: WorkflowStep, ctx: Context, *, error: str) -> None:
    with transaction.atomic():
        WorkflowStep.objects.filter(pk=step.pk).update(answers=step.answers + ctx.answers, error=error[:1000])
        WorkflowRun.objects.filter(pk=run.pk).update(lease_until=None, data=run.data, updated_at=timezone.now())


def _complete(run: WorkflowRun, step: WorkflowStep, ctx: Context) -> bool:
    """Record the step as done, in its own transaction; whether the run still has work (it was not cancelled)."""
    with transaction.atomic():
        current = WorkflowRun.objects.select_for_update().get(pk=run.pk)
        step.status = WorkflowStep.Status.DONE
        step.finished_at = timezone.now()
        step.answers = step.answers + ctx.answers
        step.error = ""
        step.save(update_fields=["status", "finished_at", "answers", "error"])
        current.lease_until = None
        current.data = run.data
        current.save(update_fields=["lease_until", "data", "updated_at"])
        _audit(
            current,
            "vendor.workflow_step_done",
            {"step": step.label, "calls": len(ctx.answers), "attempts": step.attempts},
        )
    return current.is_active


def _finish(run: WorkflowRun) -> None:
    """Every step is done: the run succeeded and the vendor takes the status the run was for."""
    now = timezone.now()
    run.status = WorkflowRun.Status.SUCCEEDED
    run.finished_at = now
    run.lease_until = None
    run.save(update_fields=["status", "finished_at", "lease_until", "updated_at"])
    vendor = run.vendor
    vendor.status = FINAL_STATUS[run.kind]
    vendor.status_reason = ""
    vendor.save(update_fields=["status", "status_reason", "updated_at"])
    if run.kind in (Kind.REVOKE, Kind.SUSPEND):
        # Grants that had not started yet go too: beat must not start them for a vendor taken off.
        vendor.grants.filter(status__in=[Grant.Status.ACTIVE, Grant.Status.SCHEDULED]).update(
            status=Grant.Status.REVOKED, ended_at=now
        )
    _audit(run, "vendor.workflow_succeeded", {"vendor_status": vendor.status})


def _stop(
    run: WorkflowRun,
    step: WorkflowStep,
    ctx: Context,
    *,
    status: WorkflowRun.Status,
    reason: str,
    findings: list[str] | None = None,
) -> None:
    with transaction.atomic():
        current = WorkflowRun.objects.select_for_update().select_related("vendor").get(pk=run.pk)
        step.status = WorkflowStep.Status.FAILED
        step.finished_at = timezone.now()
        step.answers = step.answers + ctx.answers
        step.error = reason[:1000]
        step.save(update_fields=["status", "finished_at", "answers", "error"])
        current.lease_until = None
        current.data = run.data
        if not current.is_active:
            current.save(update_fields=["lease_until", "data", "updated_at"])
            return
        current.status = status
        current.reason = reason[:1000]
        current.finished_at = timezone.now()
        current.save(update_fields=["status", "reason", "lease_until", "data", "finished_at", "updated_at"])
        vendor = current.vendor
        vendor.status = Vendor.Status.NEEDS_ATTENTION
        vendor.status_reason = f"{current.get_kind_display()} stopped at “{step.label}”: {reason}"[:500]
        vendor.save(update_fields=["status", "status_reason", "updated_at"])
        _audit(
            current,
            "vendor.workflow_needs_attention"
            if status == WorkflowRun.Status.NEEDS_ATTENTION
            else "vendor.workflow_failed",
            {"step": step.label, "reason": reason, "findings": findings or []},
        )
        transaction.on_commit(lambda: alert_sponsor(current, reason=reason, findings=findings or []))


def give_up(*, run_id: int, reason: str) -> None:
    """Cloudflare kept answering with temporary errors past every retry: stop the run where it is."""
    with transaction.atomic():
        run = WorkflowRun.objects.select_for_update().select_related("vendor").filter(pk=run_id).first()
        if run is None or not run.is_active:
            return
        step = run.steps.filter(status__in=[WorkflowStep.Status.PENDING, WorkflowStep.Status.RUNNING]).first()
    if step is not None:
        _stop(
            run,
            step,
            Context(run=run, vendor=run.vendor, priority=PRIORITY[run.kind]),
            status=WorkflowRun.Status.FAILED,
            reason=reason,
        )


def alert_sponsor(run: WorkflowRun, *, reason: str, findings: list[str]) -> None:
    """An alert for whoever watches Gatehouse's channels, and a direct word to the vendor's sponsor."""
    from alerts.services import alert_raise

    vendor = run.vendor
    subject = f"{run.get_kind_display()} of {vendor.name} needs attention"
    lines = [
        f"The {run.get_kind_display().lower()} workflow for {vendor.name} stopped: {reason}",
        "",
        *[f"- {finding}" for finding in findings],
        "",
        "Open the vendor in Gatehouse to see every step and retry.",
    ]
    body = "\n".join(lines)
    alert_raise(
        kind=f"vendor.{run.kind}_stopped",
        subject=subject,
        body=body,
        target_type="vendor",
        target_id=str(vendor.public_id),
        target_label=vendor.name,
        dedupe_key=f"vendor-run:{run.public_id}",
    )
    send_mail(f"Gatehouse: {subject}", body, None, [vendor.sponsor.email])


def active_runs_to_resume(*, idle_for: timedelta) -> list[int]:
    """Active runs nobody is working on: no lease (or an expired one) and no progress for a while."""
    now = timezone.now()
    return list(
        WorkflowRun.objects.filter(status__in=WorkflowRun.ACTIVE, updated_at__lt=now - idle_for)
        .exclude(lease_until__gt=now)
        .values_list("pk", flat=True)
    )
