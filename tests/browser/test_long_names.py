"""Names of 255 characters (Cloudflare's and AWS's limit) keep every table inside a 1,280-pixel window."""

import uuid

import pytest

from alerts.models import Alert, Channel
from dashboard import services
from discovery.models import Origin
from tests.browser.test_sign_in import sign_in_as
from tests.factories import make_user
from tunnels.models import Tunnel
from vendors.models import Vendor

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LONG = "x" * 120 + "-" + "y" * 134  # 255 characters, one hyphen to break at
WORD = "z" * 255  # and no place to break at all


def test_long_names_wrap_inside_a_1280_pixel_window(browser, gatehouse):
    tunnel = Tunnel.objects.create(cf_id=uuid.uuid4(), name=WORD)
    Tunnel.objects.create(cf_id=uuid.uuid4(), name=LONG)
    vendor = Vendor.objects.create(
        name=WORD[:120], sponsor=make_user(email="sponsor@example.com"), review_due="2030-01-01"
    )
    origin = Origin.objects.create(
        address="10.0.0.9", port=443, protocol="tcp", hostnames=[WORD[:253]], seen_in_traffic=True
    )
    Alert.objects.create(
        kind="tunnel.down",
        subject=WORD[:200],
        body=WORD,
        target_type="tunnel",
        target_id=str(tunnel.cf_id),
        target_label=WORD[:200],
    )
    Channel.objects.create(name=WORD[:100], kind="email", target="a@example.com")
    services.audit_record(
        action="user.role_changed",
        actor_email=WORD[:240] + "@example.com",
        target_type="tunnel",
        target_id=WORD[:64],
        target_label=WORD[:200],
        details={"name": WORD},
    )
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    sign_in_as(page, gatehouse, "ada")
    paths = [
        "/",
        "/tunnels/",
        f"/tunnels/{tunnel.cf_id}/",
        "/tunnels/routes/",
        "/vendors/",
        f"/vendors/{vendor.public_id}/",
        "/discovery/",
        f"/discovery/origins/{origin.public_id}/",
        "/alerts/",
        "/alerts/channels/",
        "/audit/",
        "/settings/",
    ]
    too_wide = {}
    for path in paths:
        page.goto(f"{gatehouse}{path}")
        widths = page.evaluate(
            """() => ({
                page: document.documentElement.scrollWidth,
                tables: [...document.querySelectorAll('.table-wrap')].map(w => w.scrollWidth - w.clientWidth),
            })"""
        )
        if widths["page"] > 1280 or any(extra > 0 for extra in widths["tables"]):
            too_wide[path] = widths
    context.close()
    assert too_wide == {}
