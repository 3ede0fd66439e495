from celery import shared_task
from django.conf import settings

from dashboard.operations import background_read_retry
from discovery import services
from integrations import aws
from integrations.cloudflare import CloudflareTransient


@shared_task(ignore_result=True, autoretry_for=(aws.AwsTransient,), retry_backoff=30, max_retries=5)
def logpush_poll():
    """List the bucket and hand each new object to its own task, so that workers read them in parallel."""
    if not settings.GATEHOUSE_LOGPUSH_URL:
        return
    bucket, prefix = aws.parse_s3_url(settings.GATEHOUSE_LOGPUSH_URL)
    run = services.ingest_run_start(source=settings.GATEHOUSE_LOGPUSH_URL)
    try:
        with services.ingest_run_renewal(run_id=run.pk):
            for page in aws.list_objects(bucket, prefix):
                todo = services.pending_objects(bucket=bucket, page=page)
                services.ingest_run_listed(run_id=run.pk, count=len(todo))
                for batch in services.batches_of(todo, processes=4):
                    log_objects_ingest_task.delay(run.pk, bucket, [[o.key, o.etag, o.size] for o in batch])
        services.ingest_run_batches_sent(run_id=run.pk)
        services.ingest_run_finish_if_done(run_id=run.pk)
    except BaseException as exc:
        # A retry (AWS throttling) is a new pass; this one ends, saying why.
        services.ingest_run_failed(run_id=run.pk, exc=exc)
        raise


@shared_task(ignore_result=True, autoretry_for=(aws.AwsTransient,), retry_backoff=10, max_retries=8)
def log_objects_ingest_task(run_id: int, bucket: str, objects: list[list]):
    # Claims make this idempotent: a done object, or one another worker is reading, is left alone.
    batch = [aws.S3Object(key=key, etag=etag, size=size) for key, etag, size in objects]
    try:
        with services.ingest_run_renewal(run_id=run_id):
            totals = services.log_objects_ingest(run_id=run_id, bucket=bucket, objects=batch)
    except aws.AwsTransient:
        raise  # retried; the pass waits for this batch
    except BaseException as exc:
        services.ingest_run_failed(run_id=run_id, exc=exc)
        raise
    services.ingest_run_skipped(run_id=run_id, count=len(batch) - (totals.objects if totals else 0))
    services.ingest_run_finish_if_done(run_id=run_id)


# Not retried as a whole: a kind AWS failed to list is a warning on the run, and the next pass reads it again.
@shared_task(ignore_result=True)
def inventory_discover_task():
    services.inventory_discover(regions=settings.GATEHOUSE_AWS_REGIONS)


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=10)
def application_protect_task(self, change_id: int):
    services.protection_change_drive(self, change_id)


@shared_task(bind=True, ignore_result=True, max_retries=5)
def access_policies_refresh_task(self):
    try:
        services.access_policies_refresh()
    except CloudflareTransient as exc:
        background_read_retry(self, exc, what="Access policies refresh", first=10.0)
