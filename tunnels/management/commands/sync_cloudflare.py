import time

from django.conf import settings
from django.core.management.base import BaseCommand

from tunnels import services, sync


class Command(BaseCommand):
    help = "Sync tunnels, connectors, routes and DNS from Cloudflare, and print the API calls each pass used."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="run one pass and exit")

    def handle(self, *args, once: bool = False, **options):
        while True:
            record = sync.sync_pass()
            services.tunnel_tokens_expire()
            if record is None:
                self.stdout.write("Another sync pass is running; nothing done.")
            else:
                assert record.finished_at is not None  # the pass is over
                took = (record.finished_at - record.started_at).total_seconds()
                self.stdout.write(
                    f"API calls used: {record.api_calls} · tunnels: {record.tunnels_seen} · "
                    f"status changes: {record.status_changes} · connectors fetched: {record.connectors_fetched} · "
                    f"configurations fetched: {record.configs_fetched} · "
                    f"slower parts: {record.slow_parts or 'none due'} · {took:.1f} s"
                )
                if record.error:
                    self.stdout.write(self.style.WARNING(f"Stopped early: {record.error}"))
            if once:
                return
            time.sleep(settings.GATEHOUSE_TUNNEL_SYNC_SECONDS)
