"""The catalogue in a browser: finding origins no private route carries, approving one directly, exporting."""

import uuid

import pytest
from playwright.sync_api import expect

from discovery.models import Origin, ReviewState, ip_key
from tests.browser.test_sign_in import sign_in_as
from tunnels.models import Route, Tunnel, VirtualNetwork

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _origin(address: str, vnet: VirtualNetwork) -> Origin:
    origin = Origin(
        vnet_id=str(vnet.cf_id), address=address, ip_key=ip_key(address), port=5432, protocol="TCP",
        seen_in_traffic=True, sessions=10, users=2,
    )  # fmt: skip
    origin.search_text = origin.compute_search_text()
    origin.save()
    return origin


def test_an_admin_finds_an_unrouted_origin_approves_it_directly_and_exports_the_selection(browser, gatehouse):
    vnet = VirtualNetwork.objects.create(cf_id=uuid.uuid4(), name="prod-vpc", is_default=True)
    tunnel = Tunnel.objects.create(cf_id=uuid.uuid4(), name="core")
    Route.objects.create(
        cf_id=uuid.uuid4(), network="10.20.0.0/16", tunnel=tunnel, tunnel_cf_id=tunnel.cf_id, virtual_network=vnet
    )
    routed = _origin("10.20.1.1", vnet)
    stray = _origin("10.99.0.7", vnet)
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    sign_in_as(page, gatehouse, "ada")

    page.goto(f"{gatehouse}/discovery/")
    expect(page.get_by_role("row", name=routed.label)).to_contain_text("10.20.0.0/16 via core")
    expect(page.get_by_role("row", name=routed.label)).to_contain_text("prod-vpc")
    page.get_by_label("Private route").select_option("no")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("link", name=stray.label)).to_be_visible()
    expect(page.get_by_role("link", name=routed.label)).to_have_count(0)

    with page.expect_download() as download:
        page.get_by_role("link", name="Export these origins as CSV").click()
    text = open(download.value.path(), encoding="utf-8").read()  # noqa: SIM115 -- Playwright owns the file
    assert stray.label in text and routed.label not in text

    page.get_by_role("link", name=stray.label).click()
    page.get_by_label("Reason").fill("owner confirmed: the reporting database")
    page.get_by_role("button", name="Approve", exact=True).click()
    expect(page.locator("#origin-review")).to_contain_text("owner confirmed: the reporting database")
    expect(page.locator("#origin-review .badge").first).to_have_text("Approved")
    context.close()
    stray.refresh_from_db()
    assert stray.review_state == ReviewState.APPROVED and stray.application is None
