"""Vendor workflows as rows: a WorkflowRun with ordered WorkflowSteps, advanced one step per Celery task.

Which steps each kind of run takes, and what a run's end means for its vendor; the shared operation engine
(dashboard.operations) runs them, with its lease, retries and audit. The steps themselves are in vendors.steps.
"""

from typing import Any

from django.core.mail import send_mail
from django.db import transaction

from dashboard import queue
from dashboard.operations import Engine, Outcome
from dashboard.requestinfo import RequestOrigin
from dashboard.services import audit_record
from integrations.cloudflare import Priority
from vendors.models import Grant, Vendor, WorkflowRun, WorkflowStep
from vendors.steps import STEP_FUNCTIONS
from vendors.steps.context import Context

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

# Keyed by kind; a run's `kind` is read back as the plain value.
PRIORITY: dict[str, Priority] = {
    Kind.ONBOARD: Priority.INTERACTIVE,
    Kind.CHANGE: Priority.INTERACTIVE,
    Kind.REVOKE: Priority.INTERACTIVE,
    Kind.SUSPEND: Priority.INTERACTIVE,
    Kind.EXPIRE: Priority.BACKGROUND,
    Kind.END_GRANT: Priority.INTERACTIVE,
    Kind.ADOPT: Priority.INTERACTIVE,
}

# What the vendor becomes when a run of each kind succeeds.
FINAL_STATUS: dict[str, Vendor.Status] = {
    Kind.ONBOARD: Vendor.Status.ACTIVE,
    Kind.CHANGE: Vendor.Status.ACTIVE,
    Kind.EXPIRE: Vendor.Status.ACTIVE,
    Kind.END_GRANT: Vendor.Status.ACTIVE,
    Kind.ADOPT: Vendor.Status.ACTIVE,
    Kind.SUSPEND: Vendor.Status.SUSPENDED,
    Kind.REVOKE: Vendor.Status.REVOKED,
}


class VendorWorkflows(Engine[WorkflowRun, WorkflowStep, Context]):
    run_model = WorkflowRun
    step_model = WorkflowStep
    related = ("vendor",)
    subject = "vendor"
    # Someone is waiting on the click: 1, 2, 4, 8, then every 10 s, about two minutes in all (the task's retries).
    retry_cap = 10.0

    def busy_message(self, active: WorkflowRun) -> str:
        return "Another workflow is running for this vendor; wait for it to finish."

    def enqueue(self, run_id: int, *, countdown: float = 0.0) -> None:
        from vendors.tasks import workflow_advance

        queue.send(workflow_advance, run_id, countdown=countdown)

    def receipt(self, run: WorkflowRun) -> Context:
        return Context(run=run, vendor=run.vendor, priority=PRIORITY[run.kind])

    def execute(self, step: WorkflowStep, receipt: Context) -> None:
        STEP_FUNCTIONS[step.key](receipt)

    def audit(self, run: WorkflowRun, event: str, details: dict[str, Any]) -> None:
        audit_record(
            action=f"vendor.workflow_{event}",
            actor_email=run.actor_email,
            target_type="vendor",
            target_id=str(run.vendor.public_id),
            target_label=run.vendor.name,
            details={"run": str(run.public_id), "kind": run.kind, **details},
            request_origin=run.request_origin,
        )

    def succeeded(self, run: WorkflowRun) -> dict[str, Any]:
        """The vendor takes the status the run was for."""
        vendor = run.vendor
        vendor.status = FINAL_STATUS[run.kind]
        vendor.status_reason = ""
        vendor.save(update_fields=["status", "status_reason", "updated_at"])
        if run.kind in (Kind.REVOKE, Kind.SUSPEND):
            # Grants that had not started yet go too: beat must not start them for a vendor taken off.
            vendor.grants.filter(status__in=[Grant.Status.ACTIVE, Grant.Status.SCHEDULED]).update(
                status=Grant.Status.REVOKED, ended_at=run.finished_at
            )
        return {"vendor_status": vendor.status}

    def stopped(self, run: WorkflowRun, step: WorkflowStep, *, reason: str, findings: list[str]) -> None:
        vendor = run.vendor
        vendor.status = Vendor.Status.NEEDS_ATTENTION
        vendor.status_reason = f"{run.get_kind_display()} stopped at “{step.label}”: {reason}"[:500]
        vendor.save(update_fields=["status", "status_reason", "updated_at"])
        transaction.on_commit(lambda: alert_sponsor(run, reason=reason, findings=findings))

    def retried(self, run: WorkflowRun, *, actor: Any, request_origin: RequestOrigin | None) -> None:
        vendor = run.vendor
        vendor.status = Vendor.Status.REVOKING if run.kind == Kind.REVOKE else Vendor.Status.ONBOARDING
        vendor.status_reason = ""
        vendor.save(update_fields=["status", "status_reason", "updated_at"])
        audit_record(
            action="vendor.workflow_retried",
            actor=actor,
            target_type="vendor",
            target_id=str(vendor.public_id),
            target_label=vendor.name,
            details={"run": str(run.public_id)},
            request_origin=request_origin,
        )


_ENGINE = VendorWorkflows()


def start(run: WorkflowRun, *, enqueue: bool = True) -> WorkflowRun:
    """Record the run (unsaved) with its kind's steps; SubjectBusy while another run of its vendor is under way."""
    return _ENGINE.start(run, steps=STEPS[run.kind], enqueue=enqueue)


def advance_for_a_while(*, run_id: int) -> Outcome:
    return _ENGINE.advance_for_a_while(run_id=run_id)


def drive(task: Any, run_id: int) -> None:
    _ENGINE.drive(task, run_id)


def enqueue_later(run_id: int, *, countdown: float) -> None:
    _ENGINE.enqueue_later(run_id, countdown=countdown)


def retry(*, run: WorkflowRun, actor: Any, request_origin: RequestOrigin | None) -> WorkflowRun:
    return _ENGINE.retry(run_id=run.pk, actor=actor, request_origin=request_origin)


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
