from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from discovery import services
from integrations import aws


class Command(BaseCommand):
    help = "One AWS inventory pass: EC2, RDS, ElastiCache and internal load balancers become origins."

    def add_arguments(self, parser):
        parser.add_argument("--region", action="append", help="region to read (repeatable; default: configured)")

    def handle(self, *args, region=None, **options):
        regions = region or settings.GATEHOUSE_AWS_REGIONS
        try:
            count = services.inventory_discover(regions=regions)
        except aws.AwsError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"discover_aws: {count} origins from {', '.join(regions)}")
