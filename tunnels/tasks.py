import logging

from celery import shared_task

from integrations import cloudflare as cf
from tunnels import changes, services, sync
from tunnels.models import Tunnel

log = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def sync_cloudflare():
    """One pass. No retry on a refused call: the next scheduled pass resumes, so a 429 never turns into a storm."""
    sync.sync_pass()
    services.tunnel_tokens_expire()


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=5)
def tunnel_change_run(self, change_id: int):
    """Advance the change through the operation engine until it is done, waits, or meets a temporary error."""
    changes.tunnel_change_drive(self, change_id)


@shared_task(ignore_result=True)
def tunnel_config_read(tunnel_id: int):
    """Someone opened the tunnel's page. No retry: the next visit, or the rotation, reads it again."""
    tunnel = Tunnel.objects.filter(pk=tunnel_id, deleted_at__isnull=True, remote_config=True).first()
    if tunnel is None:
        return
    try:
        sync.config_read(tunnel)
    except cf.CloudflareError as exc:
        log.info("configuration of tunnel %s not read now: %s", tunnel.cf_id, exc.message)


# --- push events (tunnels/push.py) ------------------------------------------------------------------------------


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=5)
def push_change_run(self, change_id: int):
    """Connect or disconnect push events through the operation engine, with its retries and backoff."""
    from tunnels import push

    push.push_change_drive(self, change_id)


@shared_task(ignore_result=True)
def push_refresh(event_id: int):
    """A notification arrived. No retry: the pass's status list and rotation catch up with a refused call."""
    from tunnels import push
    from tunnels.models import PushEvent

    event = PushEvent.objects.filter(pk=event_id).first()
    if event is None:
        return
    try:
        push.refresh(event=event)
    except cf.CloudflareError as exc:
        log.info("tunnel %s not refreshed after a notification: %s", event.tunnel_cf_id, exc.message)
