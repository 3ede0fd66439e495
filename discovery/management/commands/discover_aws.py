from django.conf import settings
from django.core.management.base import BaseCommand

from discovery import services


class Command(BaseCommand):
    help = "One AWS inventory pass: EC2, RDS, ElastiCache and internal load balancers become origins."

    def add_arguments(self, parser):
        parser.add_argument("--region", action="append", help="region to read (repeatable; default: configured)")

    def handle(self, *args, region=None, **options):
        regions = region or settings.GATEHOUSE_AWS_REGIONS
        run = services.inventory_discover(regions=regions)
        for warning in run.warnings:
            self.stderr.write(f"discover_aws: {warning['action']} in {warning['region']} failed: {warning['error']}")
        self.stdout.write(
            f"discover_aws: {run.origins} origins from {', '.join(regions)}, {len(run.warnings)} warnings"
        )
