"""Every kind of operation goes on after the worker running it is killed: the next worker to start picks it up."""

import time

from cloudflare_sim import faults
from dashboard.requestinfo import RequestOrigin
from discovery import services as discovery_services
from discovery.models import AccessPolicy, Application, Origin, ReviewState, ip_key
from tests.vendors.test_worker import _wait_for, workers  # noqa: F401 (the fixture)
from tunnels import services as tunnel_services
from tunnels.models import TunnelChange, VirtualNetwork


def _approved_application(sim, operator) -> Application:
    vnet = sim.store.list("vnet", sim.account_id)[0]
    application = discovery_services.application_create(
        actor=operator, name="Billing", owner="", request_origin=RequestOrigin()
    )
    origin = Origin.objects.create(
        vnet_id=vnet["id"], address="10.30.0.7", ip_key=ip_key("10.30.0.7"), port=5432, protocol="TCP"
    )
    discovery_services.application_add_origins(
        actor=operator, application=application, origins=[origin], request_origin=RequestOrigin()
    )
    Origin.objects.filter(pk=origin.pk).update(review_state=ReviewState.APPROVED)
    return application


def test_a_tunnel_change_and_an_access_change_go_on_after_their_worker_is_killed(
    workers,  # noqa: F811
    cloudflare_sim,
    operator,
):
    discovery_services.access_policies_refresh()
    policy = AccessPolicy.objects.first()
    application = _approved_application(cloudflare_sim, operator)
    # Slow calls keep the first change in flight long enough to kill the worker inside it.
    faults.save(
        cloudflare_sim.store,
        {"rules": [{"endpoint": "* /accounts/{account_id}/teamnet/virtual_networks*", "latency_ms": 1500}]},
    )
    first = workers.start()
    change = tunnel_services.vnet_create(actor=operator, name="resumed-net", comment="", request_origin=RequestOrigin())
    discovery_services.application_protect(
        actor=operator, application=application, policy_id=policy.cf_id, policy_name=policy.name,
        request_origin=RequestOrigin(),
    )  # fmt: skip
    _wait_for(lambda: change.steps.filter(status="running").exists(), "the tunnel change to start")
    time.sleep(0.3)
    workers.kill(first)
    workers.start()

    def finished():
        change.refresh_from_db()
        application.refresh_from_db()
        return not change.is_active and application.protection != Application.Protection.PENDING

    _wait_for(finished, "both changes to finish", timeout=90)
    step = change.steps.get()
    assert change.status == TunnelChange.Status.SUCCEEDED, change.reason
    assert step.attempts == 2
    names = [v["name"] for v in cloudflare_sim.store.list("vnet", cloudflare_sim.account_id)]
    assert names.count("resumed-net") == 1
    assert VirtualNetwork.objects.filter(name="resumed-net").exists()
    assert application.protection == Application.Protection.PROTECTED, application.protection_error
    assert application.protection_changes.get().status == "succeeded"
    [access_app] = [
        a
        for a in cloudflare_sim.store.list("access_app", cloudflare_sim.account_id)
        if a["id"] in application.access_app_ids
    ]
    assert access_app["destinations"][0]["cidr"] == "10.30.0.7/32"
