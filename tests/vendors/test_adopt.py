"""Adopting access made outside Gatehouse: listed, confirmed by an admin, imported, marked, and then revoked."""

import re
from datetime import date, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from cloudflare_sim import world
from dashboard.models import AuditEntry
from integrations import cloudflare as cf
from tests.vendors.test_worker import _finished, _steps, workers  # noqa: F401 (the fixture)
from vendors import adopt, services
from vendors.models import ServiceToken, Vendor, WorkflowRun

PEOPLE = "Contoso (made by hand)"
MACHINES = "Contoso machines"


@pytest.fixture
def hand_made(cloudflare_sim, access_apps):
    """A vendor's access made at Cloudflare without Gatehouse: people and a service token on Grafana and Kibana."""
    sdk = cf.client()
    account = cloudflare_sim.account_id
    token = sdk.zero_trust.access.service_tokens.create(account_id=account, name="contoso sync", duration="8760h")
    people = sdk.zero_trust.access.policies.create(
        account_id=account,
        name=PEOPLE,
        decision="allow",
        include=[{"email": {"email": "ada@contoso.example"}}, {"email_domain": {"domain": "contoso-partners.example"}}],
        session_duration="12h",
    )
    machines = sdk.zero_trust.access.policies.create(
        account_id=account,
        name=MACHINES,
        decision="non_identity",
        include=[{"service_token": {"token_id": token.id}}],
        session_duration="12h",
    )
    reusable = {p.id for p in cf.access_policies_all()}
    for name in ("Grafana", "Kibana"):
        app = cf.access_app_get(access_apps[name].cf_id)
        refs = app.references(reusable)
        top = max((r["precedence"] for r in refs), default=0)
        cf.access_app_set_policies(
            app, [*refs, {"id": people.id, "precedence": top + 1}, {"id": machines.id, "precedence": top + 2}]
        )
    services.access_apps_refresh()
    return {"people": people, "machines": machines, "token": token}


def _form(response, admin, **overrides):
    form = response.context["form"]
    choice = next(value for value, _label in form.fields["service_policy"].choices if value)
    data = {
        "name": "Contoso",
        "sponsor": admin.pk,
        "review_due": form.fields["review_due"].initial.isoformat(),
        "ends_on": form.fields["ends_on"].initial.isoformat(),
        "service_policy": choice,
        "fingerprint": form.initial["fingerprint"],
    }
    data.update(overrides)
    return data


def _policy_docs(sim):
    return {p["id"]: (p["name"], p["include"]) for p in sim.store.list("access_policy", sim.account_id)}


def test_the_list_shows_unmanaged_vendor_like_policies_with_their_applications_and_reads_nothing(
    hand_made, make_vendor, cloudflare_sim, operator_client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        managed = make_vendor()
    services.access_apps_refresh()
    calls = cloudflare_sim.calls()
    page = operator_client.get(reverse("vendors:adopt_list")).content.decode()
    assert cloudflare_sim.calls() == calls
    row = page[page.index(PEOPLE) :].split("</tr>")[0]
    assert "ada@contoso.example" in row and "everyone @contoso-partners.example" in row
    assert "Grafana, Kibana" in row and "An admin can adopt it." in row
    machines = page[page.index(MACHINES) :].split("</tr>")[0]
    assert "admits service tokens only" in machines
    assert "Vendor: Acme Analytics" in page
    # Not vendor access (a group rule), and Gatehouse's own policies, are not offered.
    assert "SRE on-call" not in page
    assert managed.policy_name not in page


def test_an_admin_adopts_after_confirming_and_only_then_is_the_policy_marked(
    hand_made, cloudflare_sim, admin, admin_client, django_capture_on_commit_callbacks
):
    people, machines, token = hand_made["people"], hand_made["machines"], hand_made["token"]
    before = _policy_docs(cloudflare_sim)
    url = reverse("vendors:adopt_confirm", kwargs={"policy_id": people.id})
    shown = admin_client.get(url)
    assert shown.status_code == 200
    assert b"contoso sync" in shown.content and MACHINES.encode() in shown.content
    assert _policy_docs(cloudflare_sim) == before

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("vendors:adopt_create", kwargs={"policy_id": people.id}), _form(shown, admin)
        )
    assert response.status_code == 302, response.content.decode()[:2000]
    vendor = Vendor.objects.get(name="Contoso")
    run = vendor.runs.get()
    assert run.kind == WorkflowRun.Kind.ADOPT
    assert run.status == WorkflowRun.Status.SUCCEEDED, (run.reason, _steps(run))
    vendor.refresh_from_db()
    assert vendor.status == Vendor.Status.ACTIVE and vendor.adopted_from == PEOPLE
    assert vendor.contacts == ["ada@contoso.example"] and vendor.domains == ["contoso-partners.example"]
    grants = vendor.grants.order_by("application__name")
    assert [g.application.name for g in grants] == ["Grafana", "Kibana"]
    assert {(g.session_duration, g.cf_policy_id, g.cf_service_policy_id) for g in grants} == {
        ("12h", people.id, machines.id)
    }
    adopted = vendor.service_tokens.get()
    assert (adopted.cf_id, adopted.status, adopted.secret_known) == (token.id, ServiceToken.Status.ACTIVE, False)
    # The same policies at Cloudflare, now named (marked) as Gatehouse's.
    after = _policy_docs(cloudflare_sim)
    assert after[people.id][0] == vendor.policy_name_for("12h")
    assert after[machines.id][0] == vendor.service_policy_name_for("12h")
    grafana = cloudflare_sim.store.get("access_app", grants[0].application.cf_id)
    assert world.token_admitted(cloudflare_sim.store, grafana, token.id, client_secret=token.client_secret)

    page = admin_client.get(reverse("vendors:vendor_detail", kwargs={"public_id": vendor.public_id}))
    assert b"does not know its secret" in page.content and PEOPLE.encode() in page.content
    entry = AuditEntry.objects.get(action="vendor.adopted", target_id=str(vendor.public_id))
    assert entry.actor_email == admin.email and entry.details["policy_id"] == people.id
    services.access_apps_refresh()
    assert PEOPLE.encode() not in admin_client.get(reverse("vendors:adopt_list")).content


def test_a_policy_changed_after_it_was_shown_is_shown_again_not_adopted(hand_made, cloudflare_sim, admin, admin_client):
    people = hand_made["people"]
    shown = admin_client.get(reverse("vendors:adopt_confirm", kwargs={"policy_id": people.id}))
    cf.access_policy_update(
        people.id,
        name=PEOPLE,
        decision="allow",
        include=[{"email": {"email": "ada@contoso.example"}}, {"email": {"email": "eve@elsewhere.example"}}],
        session_duration="12h",
    )
    before = _policy_docs(cloudflare_sim)
    response = admin_client.post(reverse("vendors:adopt_create", kwargs={"policy_id": people.id}), _form(shown, admin))
    assert response.status_code == 400
    assert b"changed at Cloudflare since you opened this page" in response.content
    assert b"eve@elsewhere.example" in response.content
    assert not Vendor.objects.exists() and _policy_docs(cloudflare_sim) == before
    # The page now carries what Cloudflare holds, so confirming again adopts that.
    fingerprint = re.search(rb'name="fingerprint" value="([0-9a-f]+)"', response.content).group(1).decode()
    assert fingerprint == adopt.adopt_candidate(people.id).fingerprint()


def test_operators_see_what_could_be_adopted_but_only_admins_adopt(hand_made, operator_client, cloudflare_sim):
    people = hand_made["people"]
    assert operator_client.get(reverse("vendors:adopt_confirm", kwargs={"policy_id": people.id})).status_code == 403
    response = operator_client.post(reverse("vendors:adopt_create", kwargs={"policy_id": people.id}), {})
    assert response.status_code == 403
    assert not Vendor.objects.exists()


def test_an_adopted_vendor_is_revoked_and_verified_out_on_a_real_worker(
    workers,  # noqa: F811
    hand_made,
    cloudflare_sim,
    admin,
):
    workers.start()
    people, machines, token = hand_made["people"], hand_made["machines"], hand_made["token"]
    candidate = adopt.adopt_candidate(people.id)
    service = adopt.adopt_candidate(machines.id)
    vendor = adopt.vendor_adopt(
        actor=admin,
        policy_id=people.id,
        fingerprint=candidate.fingerprint(),
        service_policy_id=machines.id,
        service_fingerprint=service.fingerprint(),
        name="Contoso",
        sponsor=admin,
        review_due=date.today() + timedelta(days=30),
        ends_at=timezone.now() + timedelta(days=30),
        request_origin=None,
    )
    adoption = _finished(vendor.runs.get())
    assert adoption.status == WorkflowRun.Status.SUCCEEDED, _steps(adoption)

    revoke = _finished(services.vendor_revoke(actor=admin, vendor=vendor, request_origin=None))
    vendor.refresh_from_db()
    assert revoke.status == WorkflowRun.Status.SUCCEEDED, (revoke.reason, _steps(revoke))
    assert vendor.status == Vendor.Status.REVOKED
    store = cloudflare_sim.store
    assert store.get("access_policy", people.id) is None and store.get("access_policy", machines.id) is None
    assert store.get("service_token", token.id) is None
    for app in store.list("access_app", cloudflare_sim.account_id):
        assert not world.token_admitted(store, app, token.id, client_secret=token.client_secret)
        assert {people.id, machines.id}.isdisjoint(r["id"] for r in app["_policy_refs"])
    assert revoke.steps.get(key="verify_revoked").status == "done"


def test_a_policy_on_an_application_gatehouse_has_not_read_yet_waits_for_a_refresh(
    hand_made, cloudflare_sim, admin, admin_client
):
    people = hand_made["people"]
    # Attached to a new application after Gatehouse last read the list: adopting now would detach it there.
    cf.client().zero_trust.access.applications.create(
        account_id=cloudflare_sim.account_id,
        type="self_hosted",
        name="New wiki",
        domain="wiki.example.com",
        policies=[{"id": people.id, "precedence": 1}],
    )
    url = reverse("vendors:adopt_confirm", kwargs={"policy_id": people.id})
    shown = admin_client.get(url)
    assert b"It is also on New wiki, which Gatehouse has not read yet" in shown.content
    assert b"Adopt as a vendor" not in shown.content
    data = {
        "name": "Contoso",
        "sponsor": admin.pk,
        "review_due": (date.today() + timedelta(days=30)).isoformat(),
        "ends_on": (date.today() + timedelta(days=30)).isoformat(),
        "fingerprint": adopt.adopt_candidate(people.id).fingerprint(),
    }
    response = admin_client.post(reverse("vendors:adopt_create", kwargs={"policy_id": people.id}), data)
    assert response.status_code == 400 and not Vendor.objects.exists()

    services.access_apps_refresh()
    shown = admin_client.get(url)
    assert b"Adopt as a vendor" in shown.content and b"New wiki" in shown.content
