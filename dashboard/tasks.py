from celery import shared_task

from dashboard import services


@shared_task(ignore_result=True)
def record_heartbeat():
    """Beat schedules this and a worker runs it, so a recent heartbeat proves both are alive."""
    services.heartbeat_record(name="worker")
