"""Protect with Access: a Celery task creates a self-hosted Access application at Cloudflare (the simulator)."""

import re

import pytest
from django.urls import reverse

from dashboard.models import AuditEntry
from dashboard.requestinfo import Origin as RequestOrigin
from discovery import services, tasks
from discovery.models import AccessPolicy, Application

R = RequestOrigin(source_ip="192.0.2.7", request_id="req-12345678")


@pytest.fixture
def vnet_id(cloudflare_sim):
    return next(v["id"] for v in cloudflare_sim.store.list("vnet", cloudflare_sim.account_id))


@pytest.fixture
def video(operator, make_origin, vnet_id):
    app = services.application_create(actor=operator, name="Video", owner="av-team", request=R)
    origins = [
        make_origin(address="10.20.0.5", port=443, protocol="TCP", vnet_id=vnet_id),
        make_origin(address="10.20.0.5", port=10000, protocol="UDP", vnet_id=vnet_id),
        make_origin(address="fd10::5", port=443, protocol="TCP", vnet_id=vnet_id),
    ]
    services.application_add_origins(actor=operator, application=app, origins=origins, request=R)
    return app


def _access_apps(sim):
    return [a for a in sim.store.list("access_app", sim.account_id) if "gatehouse" in a.get("name", "")]


def test_policies_are_read_from_cloudflare_into_the_choice_list(cloudflare_sim, db):
    count = services.access_policies_refresh()
    assert count == AccessPolicy.objects.count() > 0
    assert set(AccessPolicy.objects.values_list("cf_id", flat=True)) == {
        p["id"] for p in cloudflare_sim.store.list("access_policy", cloudflare_sim.account_id)
    }


def test_protecting_creates_an_access_app_with_private_destinations_and_the_policy(
    cloudflare_sim, operator_client, video, vnet_id, django_capture_on_commit_callbacks
):
    services.access_policies_refresh()
    policy = AccessPolicy.objects.first()
    with django_capture_on_commit_callbacks(execute=True):
        response = operator_client.post(
            reverse("discovery:application_protect", args=[video.public_id]), {"policy": policy.cf_id}
        )
    assert response.status_code == 302
    video.refresh_from_db()
    assert video.protection == Application.Protection.PROTECTED
    [created] = _access_apps(cloudflare_sim)
    assert created["id"] == video.access_app_id and created["type"] == "self_hosted"
    assert [r["id"] for r in created["_policy_refs"]] == [policy.cf_id]
    assert sorted(
        (d["cidr"], d.get("port_range"), d.get("l4_protocol"), d.get("vnet_id")) for d in created["destinations"]
    ) == [
        ("10.20.0.5/32", "10000", "udp", vnet_id),
        ("10.20.0.5/32", "443", "tcp", vnet_id),
        ("fd10::5/128", "443", "tcp", vnet_id),
    ]
    assert AuditEntry.objects.filter(action="application.protected", target_id=str(video.public_id)).exists()
    page = operator_client.get(reverse("discovery:application_detail", args=[video.public_id])).content.decode()
    assert video.access_app_id in page and "Protected by Access" in page
    covered = operator_client.get(reverse("discovery:origin_list"), {"covered": "yes"}).content.decode()
    assert len(re.findall(r'href="/discovery/origins/[0-9a-f-]{36}/"', covered)) == 3


def test_running_the_task_again_after_a_lost_reply_finds_the_app_instead_of_creating_another(
    cloudflare_sim, operator, video, db
):
    services.access_policies_refresh()
    policy = AccessPolicy.objects.first()
    Application.objects.filter(pk=video.pk).update(protection="pending", policy_id=policy.cf_id)
    tasks.application_protect_task(video.pk, None, "")
    first = Application.objects.get(pk=video.pk).access_app_id
    # As if the reply had been lost: the row still says pending, the app exists at Cloudflare.
    Application.objects.filter(pk=video.pk).update(protection="pending", access_app_id="")
    tasks.application_protect_task(video.pk, None, "")
    assert len(_access_apps(cloudflare_sim)) == 1
    assert Application.objects.get(pk=video.pk).access_app_id == first


def test_a_policy_cloudflare_does_not_know_fails_visibly(cloudflare_sim, video, db):
    Application.objects.filter(pk=video.pk).update(
        protection="pending", policy_id="00000000-0000-4000-8000-00000000dead"
    )
    tasks.application_protect_task(video.pk, None, "")
    video.refresh_from_db()
    assert video.protection == Application.Protection.FAILED
    assert "not found" in video.protection_error
    assert _access_apps(cloudflare_sim) == []


def test_an_application_without_origins_cannot_be_protected(operator, db):
    from django.core.exceptions import ValidationError

    app = services.application_create(actor=operator, name="Empty", owner="", request=R)
    with pytest.raises(ValidationError, match="Add origins"):
        services.application_protect(actor=operator, application=app, policy_id="p", policy_name="p", request=R)
