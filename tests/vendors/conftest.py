import itertools
from datetime import date, timedelta

import pytest
from django.utils import timezone

from dashboard.requestinfo import RequestOrigin
from tests.vendors.test_worker import workers  # noqa: F401 - real Celery workers, for the tests of every module here
from vendors import services
from vendors.models import AccessApplication

_names = itertools.count(1)


@pytest.fixture
def access_apps(cloudflare_sim, db):
    """Gatehouse's list of the simulator's Access applications, by name."""
    services.access_apps_refresh()
    return {app.name: app for app in AccessApplication.objects.all()}


@pytest.fixture
def make_vendor(operator, access_apps):
    def make(
        *,
        apps=("PostgreSQL orders", "Internal API"),
        contacts=None,
        domains=(),
        tokens=1,
        days=30,
        session="8h",
        name=None,
    ):
        n = next(_names)
        return services.vendor_create(
            actor=operator,
            name=name or f"Vendor {n}",
            sponsor=operator,
            contacts=list(contacts if contacts is not None else [f"alice{n}@vendor{n}.example.net"]),
            domains=list(domains),
            review_due=date.today() + timedelta(days=90),
            applications=[access_apps[a] for a in apps],
            ends_at=timezone.now() + timedelta(days=days),
            session_duration=session,
            service_tokens=tokens,
            token_duration="2160h",
            request_origin=RequestOrigin(source_ip="192.0.2.1", request_id="test-request-id"),
        )

    return make
