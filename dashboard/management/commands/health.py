"""`manage.py health`: the /readyz checks from a shell, for container healthchecks that have no web server."""

import json

from django.core.management.base import BaseCommand, CommandError

from dashboard import health


class Command(BaseCommand):
    help = "Check what Gatehouse needs (database, broker, worker heartbeat, Cloudflare budget); exit 1 if not ready."

    def add_arguments(self, parser):
        parser.add_argument(
            "--check",
            action="append",
            choices=sorted(health.CHECKS),
            help="Run only this check (repeatable); all of them by default.",
        )

    def handle(self, *args, check=None, **options):
        results = health.readiness(check)
        self.stdout.write(json.dumps({name: {"ok": c.ok, "detail": c.detail} for name, c in results.items()}))
        failed = [name for name, c in results.items() if not c.ok]
        if failed:
            raise CommandError(f"not ready: {', '.join(failed)}", returncode=1)
