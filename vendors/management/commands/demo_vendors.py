"""`manage.py demo_vendors`: the demo's vendors, onboarded through the real workflow by the running worker.

`make demo` runs it once the worker is up, so a newcomer finds vendors to revoke with one click: one with a service
token, one admitted by its email domain, and one whose review is overdue. Their addresses are not the seeded
account's (whose hand-made vendor policies are there to be adopted). A database that has vendors is left alone.
"""

import time
from datetime import timedelta
from typing import TypedDict

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from dashboard.models import User
from dashboard.requestinfo import RequestOrigin
from vendors import services
from vendors.models import AccessApplication, Vendor, WorkflowRun

SPONSOR = "sam.sponsor@example.com"
class _DemoVendor(TypedDict):
    name: str
    contacts: list[str]
    domains: list[str]
    applications: list[str]
    service_tokens: int
    review_in_days: int


VENDORS: list[_DemoVendor] = [
    {
        "name": "Umbrella Data Labs",
        "contacts": ["dana@umbrella-labs.example", "lee@umbrella-labs.example"],
        "domains": [],
        "applications": ["PostgreSQL orders", "Internal API"],
        "service_tokens": 1,
        "review_in_days": 90,
    },
    {
        "name": "Northwind Support",
        "contacts": [],
        "domains": ["northwind-support.example"],
        "applications": ["Support desk", "Kibana"],
        "service_tokens": 0,
        "review_in_days": 60,
    },
    {
        "name": "Hooli Consulting",
        "contacts": ["hank@hooli-consulting.example"],
        "domains": [],
        "applications": ["Grafana"],
        "service_tokens": 0,
        "review_in_days": -3,
    },
]


class Command(BaseCommand):
    help = "Onboard the demo's vendors through the onboarding workflow and wait until each is verified."

    def add_arguments(self, parser):
        parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for the onboarding runs")

    def handle(self, *args, timeout, **options):
        if Vendor.objects.exists():
            self.stdout.write("The demo already has vendors; nothing to add.")
            return
        services.access_apps_refresh()
        apps = {app.name: app for app in AccessApplication.objects.filter(present=True)}
        missing = sorted({name for spec in VENDORS for name in spec["applications"]} - set(apps))
        if missing:
            raise CommandError(f"The simulated account has no application named {', '.join(missing)}.")
        # A sponsor nobody signs in as: an address that signs in must not exist before its first sign-in.
        sponsor = User.objects.filter(email=SPONSOR).first() or User.objects.create_user(
            email=SPONSOR, role=User.Role.OPERATOR
        )
        request_origin = RequestOrigin(request_id="demo-setup")
        vendors = [
            services.vendor_create(
                actor=sponsor,
                name=spec["name"],
                sponsor=sponsor,
                contacts=spec["contacts"],
                domains=spec["domains"],
                review_due=timezone.localdate() + timedelta(days=spec["review_in_days"]),
                applications=[apps[name] for name in spec["applications"]],
                ends_at=timezone.now() + timedelta(days=30),
                session_duration="8h",
                service_tokens=spec["service_tokens"],
                token_duration="2160h",  # noqa: S106 - a lifetime, not a secret
                request_origin=request_origin,
            )
            for spec in VENDORS
        ]
        runs = self._finished([v.runs.get().pk for v in vendors], timeout)
        stopped = [f"{r.vendor.name}: {r.reason or r.get_status_display()}" for r in runs if r.status != "succeeded"]
        if stopped:
            raise CommandError("Onboarding a demo vendor did not finish:\n" + "\n".join(stopped))
        for run in runs:
            took = (run.duration or timedelta()).total_seconds()
            self.stdout.write(f"{run.vendor.name}: onboarded and verified in {took:.1f} s")

    def _finished(self, run_ids: list[int], timeout: float) -> list[WorkflowRun]:
        deadline = time.monotonic() + timeout
        while True:
            runs = list(WorkflowRun.objects.filter(pk__in=run_ids).select_related("vendor"))
            if all(not run.is_active for run in runs):
                return runs
            if time.monotonic() > deadline:
                waiting = ", ".join(run.vendor.name for run in runs if run.is_active)
                raise CommandError(f"Onboarding did not finish within {timeout:.0f} s: {waiting} (is the worker up?)")
            time.sleep(0.2)
