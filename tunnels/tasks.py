from celery import shared_task

from integrations import cloudflare as cf
from tunnels import services, sync
from tunnels.models import TunnelChange


@shared_task(ignore_result=True)
def sync_cloudflare():
    """One pass. No retry on a refused call: the next scheduled pass resumes, so a 429 never turns into a storm."""
    sync.sync_pass()
    services.tunnel_tokens_expire()


@shared_task(bind=True, ignore_result=True, max_retries=5)
def tunnel_change_run(self, change_id: int):
    change = TunnelChange.objects.select_related("tunnel", "actor").filter(pk=change_id).first()
    if change is None or change.state != TunnelChange.State.PENDING:
        return
    try:
        services.tunnel_change_execute(change=change)
    except cf.CloudflareTransient as exc:
        if self.request.retries >= self.max_retries:
            services.tunnel_change_fail(change=change, reason=f"Cloudflare kept refusing: {exc.message}")
            return
        backoff = 2 ** (self.request.retries + 2)
        raise self.retry(countdown=max(backoff, exc.retry_after or 0)) from exc
    except services.TunnelBusy as exc:
        if self.request.retries >= self.max_retries:
            services.tunnel_change_fail(change=change, reason=str(exc))
            return
        raise self.retry(countdown=2 ** (self.request.retries + 2)) from exc
