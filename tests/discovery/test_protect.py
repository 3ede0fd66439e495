"""Protect with Access: a Celery task creates a self-hosted Access application at Cloudflare (the simulator)."""

import re

import pytest
from django.urls import reverse

from dashboard.models import AuditEntry
from dashboard.requestinfo import RequestOrigin
from discovery import services, tasks
from discovery.models import AccessPolicy, Application

R = RequestOrigin(source_ip="192.0.2.7", request_id="req-12345678")


@pytest.fixture
def vnet_id(cloudflare_sim):
    return next(v["id"] for v in cloudflare_sim.store.list("vnet", cloudflare_sim.account_id))


@pytest.fixture
def video(operator, make_origin, vnet_id):
    app = services.application_create(actor=operator, name="Video", owner="av-team", request_origin=R)
    origins = [
        make_origin(address="10.20.0.5", port=443, protocol="TCP", vnet_id=vnet_id),
        make_origin(address="10.20.0.5", port=10000, protocol="UDP", vnet_id=vnet_id),
        make_origin(address="fd10::5", port=443, protocol="TCP", vnet_id=vnet_id),
    ]
    services.application_add_origins(actor=operator, application=app, origins=origins, request_origin=R)
    services.origin_review(actor=operator, origins=origins, decision="approve", reason="", request_origin=R)
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
    assert [created["id"]] == video.access_app_ids and created["type"] == "self_hosted"
    assert created["name"] == video.access_name() and created["domain"] == created["destinations"][0]["cidr"]
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
    assert video.access_app_ids[0] in page and "Protected by Access" in page
    covered = operator_client.get(reverse("discovery:origin_list"), {"covered": "yes"}).content.decode()
    assert len(re.findall(r'href="/discovery/origins/[0-9a-f-]{36}/"', covered)) == 3


def test_running_the_task_again_after_a_lost_reply_finds_the_app_instead_of_creating_another(
    cloudflare_sim, operator, video, db
):
    services.access_policies_refresh()
    policy = AccessPolicy.objects.first()
    Application.objects.filter(pk=video.pk).update(protection="pending", policy_id=policy.cf_id)
    tasks.application_protect_task(services.protection_change_request(application=video, request_origin=R).pk)
    first = Application.objects.get(pk=video.pk).access_app_ids
    # As if the reply had been lost: the row still says pending, the app exists at Cloudflare.
    Application.objects.filter(pk=video.pk).update(protection="pending", access_app_ids=[])
    tasks.application_protect_task(services.protection_change_request(application=video, request_origin=R).pk)
    assert len(_access_apps(cloudflare_sim)) == 1
    assert Application.objects.get(pk=video.pk).access_app_ids == first


def test_a_policy_cloudflare_does_not_know_fails_visibly(cloudflare_sim, video, db):
    Application.objects.filter(pk=video.pk).update(
        protection="pending", policy_id="00000000-0000-4000-8000-00000000dead"
    )
    tasks.application_protect_task(services.protection_change_request(application=video, request_origin=R).pk)
    video.refresh_from_db()
    assert video.protection == Application.Protection.FAILED
    assert "not found" in video.protection_error
    assert _access_apps(cloudflare_sim) == []


def test_an_application_without_origins_cannot_be_protected(operator, db):
    from django.core.exceptions import ValidationError

    app = services.application_create(actor=operator, name="Empty", owner="", request_origin=R)
    with pytest.raises(ValidationError, match="Add origins"):
        services.application_protect(actor=operator, application=app, policy_id="p", policy_name="p", request_origin=R)


@pytest.fixture
def farm(operator, make_origin, vnet_id):
    """120 approved web servers: more than Cloudflare takes on one Access application."""
    app = services.application_create(actor=operator, name="Web farm", owner="web", request_origin=R)
    origins = [make_origin(address=f"10.30.{i // 200}.{i % 200 + 1}", vnet_id=vnet_id) for i in range(120)]
    services.application_add_origins(actor=operator, application=app, origins=origins, request_origin=R)
    services.origin_review(actor=operator, origins=origins, decision="approve", reason="", request_origin=R)
    return app


def test_more_than_fifty_origins_are_split_across_owned_access_applications(
    cloudflare_sim, operator_client, farm, django_capture_on_commit_callbacks
):
    services.access_policies_refresh()
    policy = AccessPolicy.objects.first()
    with django_capture_on_commit_callbacks(execute=True):
        operator_client.post(reverse("discovery:application_protect", args=[farm.public_id]), {"policy": policy.cf_id})
    farm.refresh_from_db()
    assert farm.protection == Application.Protection.PROTECTED and len(farm.access_app_ids) == 3
    by_id = {a["id"]: a for a in _access_apps(cloudflare_sim)}
    parts = [by_id[i] for i in farm.access_app_ids]
    assert [p["name"] for p in parts] == [farm.access_name(1), farm.access_name(2), farm.access_name(3)]
    assert farm.access_name(2) == f"Web farm (gatehouse {farm.public_id.hex[:8]} part 2)"
    assert [len(p["destinations"]) for p in parts] == [50, 50, 20]
    covered = [d["cidr"] for p in parts for d in p["destinations"]]
    assert len(set(covered)) == 120
    assert all([r["id"] for r in p["_policy_refs"]] == [policy.cf_id] for p in parts)
    page = operator_client.get(reverse("discovery:application_detail", args=[farm.public_id])).content.decode()
    assert all(i in page for i in farm.access_app_ids) and "parts 2 to 3" in page

    # A retry after a lost reply finds the three parts by name and creates nothing more.
    Application.objects.filter(pk=farm.pk).update(protection="pending", access_app_ids=[])
    tasks.application_protect_task(services.protection_change_request(application=farm, request_origin=R).pk)
    farm.refresh_from_db()
    assert sorted(farm.access_app_ids) == sorted(by_id) and len(_access_apps(cloudflare_sim)) == 3


def test_protecting_puts_only_approved_origins_behind_access_and_names_the_others(
    cloudflare_sim, operator, operator_client, video, make_origin, vnet_id, django_capture_on_commit_callbacks
):
    pending = make_origin(address="10.20.0.9", port=22, vnet_id=vnet_id)
    services.application_add_origins(actor=operator, application=video, origins=[pending], request_origin=R)
    services.access_policies_refresh()
    policy = AccessPolicy.objects.first()
    with django_capture_on_commit_callbacks(execute=True):
        response = operator_client.post(
            reverse("discovery:application_protect", args=[video.public_id]), {"policy": policy.cf_id}, follow=True
        )
    assert "Not approved, so not behind Access: 10.20.0.9:22/tcp" in response.content.decode()
    [created] = _access_apps(cloudflare_sim)
    assert "10.20.0.9/32" not in {d["cidr"] for d in created["destinations"]}
    assert len(created["destinations"]) == 3


def test_an_application_without_approved_origins_is_refused_naming_them(
    cloudflare_sim, operator, make_origin, vnet_id, db
):
    from django.core.exceptions import ValidationError

    app = services.application_create(actor=operator, name="Unreviewed", owner="", request_origin=R)
    origin = make_origin(address="10.20.0.11", port=5432, vnet_id=vnet_id)
    services.application_add_origins(actor=operator, application=app, origins=[origin], request_origin=R)
    with pytest.raises(ValidationError, match=r"none of these is: 10\.20\.0\.11:5432/tcp"):
        services.application_protect(actor=operator, application=app, policy_id="p", policy_name="p", request_origin=R)
    assert _access_apps(cloudflare_sim) == []


def test_an_access_application_gatehouse_did_not_create_is_never_changed(cloudflare_sim, video, db):
    services.access_policies_refresh()
    policy = AccessPolicy.objects.first()
    foreign = next(a for a in cloudflare_sim.store.list("access_app", cloudflare_sim.account_id))
    Application.objects.filter(pk=video.pk).update(
        protection="pending", policy_id=policy.cf_id, access_app_ids=[foreign["id"]]
    )
    tasks.application_protect_task(services.protection_change_request(application=video, request_origin=R).pk)
    video.refresh_from_db()
    assert video.protection == Application.Protection.FAILED and "not one Gatehouse created" in video.protection_error
    after = cloudflare_sim.store.get("access_app", foreign["id"], cloudflare_sim.account_id)
    assert after["destinations"] == foreign["destinations"] and after["name"] == foreign["name"]


@pytest.fixture
def protected(cloudflare_sim, operator, video, django_capture_on_commit_callbacks):
    """Video, protected by Access with one of the account's reusable policies."""
    services.access_policies_refresh()
    policy = AccessPolicy.objects.first()
    with django_capture_on_commit_callbacks(execute=True):
        services.application_protect(
            actor=operator, application=video, policy_id=policy.cf_id, policy_name=policy.name, request_origin=R
        )
    video.refresh_from_db()
    assert video.protection == Application.Protection.PROTECTED
    return video


def _destinations(sim, application):
    application.refresh_from_db()
    apps = [sim.store.get("access_app", i, sim.account_id) for i in application.access_app_ids]
    return sorted((d["cidr"], d.get("port_range")) for a in apps for d in a["destinations"])


def test_an_origin_approved_later_joins_the_access_destinations(
    cloudflare_sim, operator, operator_client, protected, make_origin, vnet_id, django_capture_on_commit_callbacks
):
    later = make_origin(address="10.20.0.8", port=8443, vnet_id=vnet_id)
    services.application_add_origins(actor=operator, application=protected, origins=[later], request_origin=R)
    assert ("10.20.0.8/32", "8443") not in _destinations(cloudflare_sim, protected)
    with django_capture_on_commit_callbacks(execute=True):
        operator_client.post(reverse("discovery:origin_review", args=[later.public_id]), {"decision": "approve"})
    protected.refresh_from_db()
    assert protected.protection == Application.Protection.PROTECTED
    assert ("10.20.0.8/32", "8443") in _destinations(cloudflare_sim, protected)
    assert len(_access_apps(cloudflare_sim)) == 1

    # Unapproving takes it out again.
    with django_capture_on_commit_callbacks(execute=True):
        operator_client.post(
            reverse("discovery:origin_review", args=[later.public_id]), {"decision": "unapprove", "reason": "retired"}
        )
    assert ("10.20.0.8/32", "8443") not in _destinations(cloudflare_sim, protected)


def test_removing_an_origin_takes_it_out_of_access_and_keeps_its_review(
    cloudflare_sim, operator_client, protected, django_capture_on_commit_callbacks
):
    origin = protected.origins.get(port=10000)
    with django_capture_on_commit_callbacks(execute=True):
        response = operator_client.post(
            reverse("discovery:application_origin_remove", args=[protected.public_id, origin.public_id]), follow=True
        )
    assert f"{origin.label} is no longer in Video" in response.content.decode()
    origin.refresh_from_db()
    assert origin.application is None and origin.review_state == "approved"
    assert _destinations(cloudflare_sim, protected) == [("10.20.0.5/32", "443"), ("fd10::5/128", "443")]
    assert AuditEntry.objects.filter(action="application.origin_removed").exists()


def test_renaming_renames_the_access_application(
    cloudflare_sim, operator_client, protected, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        operator_client.post(reverse("discovery:application_rename", args=[protected.public_id]), {"name": "Meetings"})
    protected.refresh_from_db()
    [access] = _access_apps(cloudflare_sim)
    assert protected.name == "Meetings" and access["name"] == protected.access_name()
    assert access["name"].startswith("Meetings (gatehouse ") and [access["id"]] == protected.access_app_ids


def test_a_name_already_taken_is_refused(operator, operator_client, protected):
    services.application_create(actor=operator, name="Taken", owner="", request_origin=R)
    response = operator_client.post(
        reverse("discovery:application_rename", args=[protected.public_id]), {"name": "Taken"}, follow=True
    )
    assert "already exists" in response.content.decode()
    protected.refresh_from_db()
    assert protected.name == "Video"


def test_unprotecting_deletes_only_what_gatehouse_created_and_then_the_application_can_go(
    cloudflare_sim, operator_client, protected, django_capture_on_commit_callbacks
):
    others = {a["id"] for a in cloudflare_sim.store.list("access_app", cloudflare_sim.account_id)} - set(
        protected.access_app_ids
    )
    delete = reverse("discovery:application_delete", args=[protected.public_id])
    refused = operator_client.post(delete, follow=True).content.decode()
    assert "Remove Video from Access first" in refused and Application.objects.filter(pk=protected.pk).exists()

    with django_capture_on_commit_callbacks(execute=True):
        operator_client.post(reverse("discovery:application_unprotect", args=[protected.public_id]))
    protected.refresh_from_db()
    assert protected.protection == Application.Protection.NONE and protected.access_app_ids == []
    assert {a["id"] for a in cloudflare_sim.store.list("access_app", cloudflare_sim.account_id)} == others
    assert AuditEntry.objects.filter(action="application.unprotected", target_id=str(protected.public_id)).exists()

    origins = list(protected.origins.values_list("pk", flat=True))
    response = operator_client.post(delete, follow=True)
    assert "its 3 origins stay in the catalogue" in response.content.decode()
    assert not Application.objects.filter(pk=protected.pk).exists()
    from discovery.models import Origin

    assert Origin.objects.filter(pk__in=origins, application=None, review_state="approved").count() == 3


def test_fewer_origins_delete_the_access_application_no_longer_needed(
    cloudflare_sim, operator, farm, django_capture_on_commit_callbacks
):
    services.access_policies_refresh()
    policy = AccessPolicy.objects.first()
    with django_capture_on_commit_callbacks(execute=True):
        services.application_protect(
            actor=operator, application=farm, policy_id=policy.cf_id, policy_name=policy.name, request_origin=R
        )
    farm.refresh_from_db()
    third = farm.access_app_ids[2]
    last = list(farm.origins.order_by("-id")[:20])
    with django_capture_on_commit_callbacks(execute=True):
        services.origin_review(
            actor=operator, origins=last, decision="unapprove", reason="decommissioned", request_origin=R
        )
    farm.refresh_from_db()
    assert len(farm.access_app_ids) == 2 and third not in farm.access_app_ids
    assert cloudflare_sim.store.get("access_app", third, cloudflare_sim.account_id) is None
    assert len(_access_apps(cloudflare_sim)) == 2


def test_viewers_see_no_application_actions(viewer_client, protected):
    page = viewer_client.get(reverse("discovery:application_detail", args=[protected.public_id])).content.decode()
    assert "Remove from Access" not in page and "Rename" not in page and "Delete application" not in page


def test_protecting_is_one_change_of_the_operation_engine_audited_under_the_actions_protection_always_wrote(
    cloudflare_sim, operator, video, django_capture_on_commit_callbacks
):
    services.access_policies_refresh()
    policy = AccessPolicy.objects.first()
    before = AuditEntry.objects.order_by("id").last().pk
    with django_capture_on_commit_callbacks(execute=True):
        services.application_protect(
            actor=operator, application=video, policy_id=policy.cf_id, policy_name=policy.name, request_origin=R
        )
    change = video.protection_changes.get()
    step = change.steps.get()
    assert change.status == "succeeded" and change.lease_until is None and change.request_id == R.request_id
    assert (step.key, step.status, step.attempts) == ("access", "done", 1)
    actions = list(AuditEntry.objects.filter(pk__gt=before).order_by("id").values_list("action", flat=True))
    assert actions == ["application.protect_requested", "application.protected"]


def test_a_refused_change_stops_its_operation_with_cloudflares_reason_and_the_application_shows_it(
    cloudflare_sim, video, db
):
    Application.objects.filter(pk=video.pk).update(
        protection="pending", policy_id="00000000-0000-4000-8000-00000000dead"
    )
    change = services.protection_change_request(application=video, request_origin=R)
    tasks.application_protect_task(change.pk)
    change.refresh_from_db()
    step = change.steps.get()
    video.refresh_from_db()
    assert change.status == "failed" and "not found" in change.reason
    assert step.status == "failed" and step.error == change.reason
    assert video.protection == Application.Protection.FAILED and video.protection_error == change.reason[:300]
    entry = AuditEntry.objects.get(action="application.protect_failed", target_id=str(video.public_id))
    assert entry.details == {"error": video.protection_error} and entry.request_id == R.request_id


def test_an_access_change_whose_task_was_lost_is_sent_to_a_worker_again_by_the_resume_pass(
    cloudflare_sim, operator, video
):
    from datetime import timedelta

    from django.utils import timezone

    from dashboard import operations
    from discovery.models import ProtectionChange

    services.access_policies_refresh()
    policy = AccessPolicy.objects.first()
    # The task is sent when the request commits, which never happens here: the message is lost.
    services.application_protect(
        actor=operator, application=video, policy_id=policy.cf_id, policy_name=policy.name, request_origin=R
    )
    assert operations.operations_resume() == 0
    ProtectionChange.objects.update(updated_at=timezone.now() - timedelta(minutes=5))
    assert operations.operations_resume() == 1
    video.refresh_from_db()
    assert video.protection == Application.Protection.PROTECTED
    assert [a["id"] for a in _access_apps(cloudflare_sim)] == video.access_app_ids


def test_changes_asked_while_one_is_waiting_or_running_are_folded_into_one_at_a_time(
    cloudflare_sim, operator, protected, make_origin, vnet_id, django_capture_on_commit_callbacks
):
    from discovery.models import ProtectionChange

    first = services.protection_change_request(application=protected, request_origin=R)
    # Not started yet: it will read the application as it is when it starts, so a second request is the same change.
    assert services.protection_change_request(application=protected, request_origin=R) == first
    ProtectionChange.objects.filter(pk=first.pk).update(status=ProtectionChange.Status.RUNNING)
    # Running: it may have read the application already, so another change follows it, and only one.
    later = make_origin(address="10.20.0.8", port=8443, vnet_id=vnet_id)
    services.application_add_origins(actor=operator, application=protected, origins=[later], request_origin=R)
    services.origin_review(actor=operator, origins=[later], decision="approve", reason="", request_origin=R)
    assert services.protection_change_request(application=protected, request_origin=R) == first
    first.refresh_from_db()
    assert first.again
    assert ProtectionChange.objects.filter(status__in=ProtectionChange.ACTIVE).count() == 1

    with django_capture_on_commit_callbacks(execute=True):
        tasks.application_protect_task(first.pk)
    changes = list(protected.protection_changes.order_by("id").values_list("status", flat=True))
    assert changes == ["succeeded", "succeeded", "succeeded"]
    protected.refresh_from_db()
    assert protected.protection == Application.Protection.PROTECTED
    assert ("10.20.0.8/32", "8443") in _destinations(cloudflare_sim, protected)


def test_a_stopped_access_change_shows_its_step_on_the_application_page_and_is_retried_there(
    cloudflare_sim, operator, operator_client, viewer_client, video, django_capture_on_commit_callbacks
):
    from cloudflare_sim import faults

    services.access_policies_refresh()
    policy = AccessPolicy.objects.first()
    faults.save(
        cloudflare_sim.store, {"rules": [{"endpoint": "* /accounts/{account_id}/access/apps*", "error_rate": 1.0}]}
    )
    with django_capture_on_commit_callbacks(execute=True):
        services.application_protect(
            actor=operator, application=video, policy_id=policy.cf_id, policy_name=policy.name, request_origin=R
        )
    change = video.protection_changes.get()
    assert change.status == "failed" and change.reason.startswith("Cloudflare kept failing")
    # Each retry said when it would come back, so that the resume pass left the change to it meanwhile.
    assert change.resume_after is not None
    detail = reverse("discovery:application_detail", args=[video.public_id])
    retry_url = reverse("discovery:application_protect_retry", args=[video.public_id])
    page = operator_client.get(detail).content.decode()
    assert "Latest change to Access" in page and "Make Access hold the application" in page
    assert "Stopped: Cloudflare kept failing" in page and f'action="{retry_url}"' in page
    assert retry_url not in viewer_client.get(detail).content.decode()

    faults.clear(cloudflare_sim.store)
    with django_capture_on_commit_callbacks(execute=True):
        response = operator_client.post(retry_url, follow=True)
    assert "Retrying the change to Access for Video" in response.content.decode()
    change.refresh_from_db()
    video.refresh_from_db()
    assert change.status == "succeeded" and video.protection == Application.Protection.PROTECTED
    assert change.steps.get().attempts > 1
    assert [a["id"] for a in _access_apps(cloudflare_sim)] == video.access_app_ids
    retried = AuditEntry.objects.get(action="application.protect_retried")
    assert retried.actor_email == operator.email and retried.details == {"change": str(change.public_id)}
    page = operator_client.get(detail).content.decode()
    assert retry_url not in page
    # The step's receipt: what it made at Cloudflare, shown with the step.
    [made] = change.steps.get().answers
    assert (made["target"], made["answer"]) == (video.access_name(), video.access_app_ids[0])
    assert f"Access application made to hold its part: {video.access_name()}" in page
    assert f"<code>{video.access_app_ids[0]}</code>" in page


def test_only_the_latest_access_change_can_be_retried(cloudflare_sim, operator, video, db):
    from django.core.exceptions import ValidationError

    Application.objects.filter(pk=video.pk).update(
        protection="pending", policy_id="00000000-0000-4000-8000-00000000dead"
    )
    stopped = services.protection_change_request(application=video, request_origin=R)
    tasks.application_protect_task(stopped.pk)
    Application.objects.filter(pk=video.pk).update(protection="pending")
    newer = services.protection_change_request(application=video, request_origin=R)
    assert newer != stopped
    with pytest.raises(ValidationError, match="A newer change to Access has replaced this one"):
        services.protection_change_retry(actor=operator, change=stopped, request_origin=R)


def test_a_change_that_read_a_failed_application_is_followed_when_protection_was_asked_meanwhile(
    cloudflare_sim, video, django_capture_on_commit_callbacks
):
    from discovery.models import ProtectionChange, ProtectionChangeStep

    services.access_policies_refresh()
    policy = AccessPolicy.objects.first()
    # A change read the application while it had failed (so it has nothing to do), and someone asked for
    # protection before it ended: the application waits, pending, for a change that reads it afresh.
    Application.objects.filter(pk=video.pk).update(protection="pending", policy_id=policy.cf_id)
    ending = ProtectionChange.objects.create(
        application=video, status=ProtectionChange.Status.RUNNING, again=True, data={"state": "failed"}
    )
    ProtectionChangeStep.objects.create(run=ending, position=1, key="access", label="Access", status="done")
    with django_capture_on_commit_callbacks(execute=True):
        tasks.application_protect_task(ending.pk)
    video.refresh_from_db()
    assert video.protection == Application.Protection.PROTECTED
    assert list(video.protection_changes.values_list("status", flat=True)) == ["succeeded", "succeeded"]


def test_a_stopped_change_is_not_followed_by_one_that_would_hide_its_retry(
    cloudflare_sim, operator_client, video, django_capture_on_commit_callbacks
):
    from discovery.models import ProtectionChange

    Application.objects.filter(pk=video.pk).update(
        protection="pending", policy_id="00000000-0000-4000-8000-00000000dead"
    )
    change = services.protection_change_request(application=video, request_origin=R)
    # Something was asked while it ran; the failure and its retry (which reads everything afresh) cover it.
    ProtectionChange.objects.filter(pk=change.pk).update(again=True)
    with django_capture_on_commit_callbacks(execute=True):
        tasks.application_protect_task(change.pk)
    assert list(video.protection_changes.values_list("status", flat=True)) == ["failed"]
    page = operator_client.get(reverse("discovery:application_detail", args=[video.public_id])).content.decode()
    assert reverse("discovery:application_protect_retry", args=[video.public_id]) in page
    assert "another change follows it" not in page
