from celery import shared_task
from celery.signals import worker_ready

from dashboard import leases, operations, services


@shared_task(ignore_result=True)
def record_heartbeat():
    """Beat schedules this and a worker runs it, so a recent heartbeat proves both are alive."""
    services.heartbeat_record(name="worker")


@shared_task(acks_late=True, ignore_result=True)
def operations_resume(on_start: bool = False) -> None:
    """Send operations nobody is working on back to a worker, and end the passes whose worker stopped."""
    operations.operations_resume(on_start=on_start)
    leases.passes_end_lapsed()


@worker_ready.connect
def _resume_on_start(**_kwargs) -> None:
    # A worker that starts (perhaps replacing one that was killed) picks up operations nobody is working on.
    operations_resume.delay(on_start=True)
