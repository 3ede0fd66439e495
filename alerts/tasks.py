from celery import shared_task

from alerts import services

# Seconds before the second attempt; each later attempt waits twice as long, up to 15 minutes.
_BACKOFF = 30


@shared_task(ignore_result=True)
def deliver(delivery_id: int):
    attempt = services.delivery_attempt(delivery_id=delivery_id)
    if attempt and attempt.retry:
        countdown = min(_BACKOFF * 2 ** (attempt.delivery.attempts - 1), 900)
        deliver.apply_async((delivery_id,), countdown=countdown)
