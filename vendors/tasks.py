"""Celery tasks for vendors: each takes ids, loads rows and calls a service or drives workflows step by step."""

import logging
from concurrent.futures import ThreadPoolExecutor

from celery import shared_task
from celery.signals import worker_init, worker_process_init
from django import db

from dashboard.operations import background_read_retry
from integrations import cloudflare
from integrations.cloudflare import CloudflareTransient
from vendors import drift, services, tokens, workflows

log = logging.getLogger(__name__)

# Temporary Cloudflare errors: about two minutes of retries (VendorWorkflows' backoff) before the run stops with
# the reason.
_MAX_RETRIES = 14


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=_MAX_RETRIES)
def workflow_advance(self, run_id: int) -> None:
    """Run a workflow's steps, one committed transaction each, without a trip through the broker between them.

    Every step is durable before the next starts, and a task's message is acknowledged only when it returns: a
    worker killed between steps leaves the run where the database says, for the message's redelivery or the
    resume pass (dashboard.operations) to pick up.
    """
    workflows.drive(self, run_id)


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=_MAX_RETRIES)
def token_change_run(self, change_id: int) -> None:
    """Rotate or refresh a service token through the operation engine, with its retries and backoff."""
    tokens.token_change_drive(self, change_id)


@shared_task(bind=True, acks_late=True, ignore_result=True)
def workflows_advance_together(self, run_ids: list[int]) -> None:
    """Runs started in one action (vendors revoked together), driven at once in threads of one worker.

    Their time goes on waiting for Cloudflare, so threads serve them as well as pool processes would, and the
    pool stays free for the other groups. A run that meets a temporary Cloudflare error goes on in a task of its
    own, with workflow_advance's backoff. Run in place (tests), they go one after another in the caller's thread.
    """
    if self.request.is_eager:
        for run_id in run_ids:
            _drive_or_hand_over(run_id)
        return
    with ThreadPoolExecutor(max_workers=max(1, len(run_ids))) as pool:
        list(pool.map(_drive_in_thread, run_ids))


def _drive_or_hand_over(run_id: int) -> None:
    try:
        outcome = workflows.advance_for_a_while(run_id=run_id)
        if not outcome.done:
            workflows.enqueue_later(run_id, countdown=outcome.wait)
    except CloudflareTransient as exc:
        log.warning("workflow run %s: %s; going on in a task of its own", run_id, exc.message)
        workflows.enqueue_later(run_id, countdown=max(1.0, exc.retry_after or 0.0))


def _drive_in_thread(run_id: int) -> None:
    try:
        _drive_or_hand_over(run_id)
    finally:
        db.connection.close()  # this thread's own connection


@worker_init.connect
def _load_cloudflare_sdk(**_kwargs) -> None:
    cloudflare.access_preload()


@worker_process_init.connect
def _open_cloudflare_client(**_kwargs) -> None:
    # Each pool process opens its own client and budget (neither survives a fork) as it starts, not on a click.
    cloudflare.client()
    cloudflare.budget()


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=5)
def access_apps_refresh(self) -> None:
    try:
        services.access_apps_refresh()
    except CloudflareTransient as exc:
        background_read_retry(self, exc, what="Access applications refresh", first=5.0)


@shared_task(acks_late=True, ignore_result=True)
def grants_expire() -> None:
    # Beat's pass over grants: scheduled ones whose start has come, ended ones, and secrets nobody revealed.
    services.grants_start()
    services.grants_expire()
    services.grants_notify_expiring()
    services.tokens_forget_unshown_secrets()


@shared_task(acks_late=True, ignore_result=True)
def vendors_recertify() -> None:
    services.vendors_recertify()


@shared_task(acks_late=True, ignore_result=True)
def vendors_drift_check() -> None:
    try:
        drift.drift_check()
    except CloudflareTransient as exc:
        # Background reads give way to interactive work; the vendors not read are first in line next pass.
        log.warning("vendor drift check: %s; trying again next pass", exc.message)
