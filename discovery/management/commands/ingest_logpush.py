import os

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from discovery import services


class Command(BaseCommand):
    help = "One pass over the Logpush bucket: read every new object exactly once, and print records/s."

    def add_arguments(self, parser):
        parser.add_argument("url", nargs="?", help="s3://bucket/prefix (default: GATEHOUSE_LOGPUSH_URL)")
        parser.add_argument(
            "--processes", type=int, default=os.cpu_count() or 1, help="worker processes reading objects"
        )

    def handle(self, *args, url=None, processes=1, **options):
        url = url or settings.GATEHOUSE_LOGPUSH_URL
        if not url:
            raise CommandError("Give s3://bucket/prefix or set GATEHOUSE_LOGPUSH_URL.")
        try:
            run = services.logpush_ingest(url=url, processes=max(1, processes))
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if run.error:
            raise CommandError(run.error)
        seconds = run.seconds or 0.0
        rate = run.records / seconds if seconds else 0.0
        self.stdout.write(
            f"ingest_logpush: {run.objects_done} objects, {run.records:,} lines in {seconds:.2f} s "
            f"({rate:,.0f} records/s); counted {run.accepted:,}; refused {run.malformed:,} malformed, "
            f"{run.wrong_type:,} wrong type, {run.absurd:,} absurd, {run.public:,} public"
        )
