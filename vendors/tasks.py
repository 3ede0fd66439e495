"""Celery tasks for vendors: each takes ids, loads rows and calls a service or advances a workflow by one step."""

import logging

from celery import shared_task
from celery.signals import worker_ready

from integrations.cloudflare import CloudflareTransient
from vendors import services, workflows

log = logging.getLogger(__name__)

# Backoff for temporary Cloudflare errors: 1, 2, 4, 8, then every 10 s (someone is waiting on the click), or
# longer when Cloudflare or the budget says so; about two minutes in all before the run stops with the reason.
_MAX_RETRIES = 14


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=_MAX_RETRIES)
def workflow_advance(self, run_id: int) -> None:
    """Run one step of a workflow; the step re-enqueues this task on commit for the next one."""
    try:
        outcome = workflows.advance(run_id=run_id)
    except CloudflareTransient as exc:
        if self.request.retries >= _MAX_RETRIES:
            workflows.give_up(run_id=run_id, reason=f"Cloudflare kept failing: {exc.message}")
            return
        countdown = max(exc.retry_after or 0.0, min(10.0, 2.0**self.request.retries))
        log.warning("workflow run %s: %s; retrying in %.0f s", run_id, exc.message, countdown)
        raise self.retry(exc=exc, countdown=countdown) from None
    if not outcome.done:
        workflow_advance.apply_async((run_id,), countdown=outcome.wait)


@shared_task(acks_late=True, ignore_result=True)
def workflows_resume(on_start: bool = False) -> None:
    services.workflows_resume(on_start=on_start)


@worker_ready.connect
def _resume_on_start(**_kwargs) -> None:
    # A worker that starts (perhaps replacing one that was killed) picks up runs nobody is working on.
    workflows_resume.delay(on_start=True)


@shared_task(
    acks_late=True,
    ignore_result=True,
    autoretry_for=(CloudflareTransient,),
    retry_backoff=5,
    retry_backoff_max=300,
    max_retries=5,
)
def access_apps_refresh() -> None:
    services.access_apps_refresh()


@shared_task(acks_late=True, ignore_result=True)
def grants_expire() -> None:
    services.grants_expire()
    services.grants_notify_expiring()
    services.tokens_forget_unshown_secrets()


@shared_task(acks_late=True, ignore_result=True)
def vendors_recertify() -> None:
    services.vendors_recertify()
