"""Steps that give a vendor access: check, create its service tokens and policies, attach them, tell its contacts."""

from dataclasses import dataclass
from functools import partial
from typing import Any

from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from dashboard.sealing import Purpose, seal
from integrations import cloudflare as cf
from vendors.calls import Call, run_concurrently
from vendors.models import AccessApplication, Grant, ServiceToken, Vendor
from vendors.steps.app_policies import app_generations, app_write, refuse_inline
from vendors.steps.context import Context, StepFailed
from vendors.steps.vendor_state import active_grants, active_tokens, owned_by, read_apps_and_policies, wanted_on


@dataclass(frozen=True)
class WantedPolicy:
    """One of the vendor's policies as it should be at Cloudflare, the grants it serves, and their column for its id."""

    column: str
    name: str
    decision: str
    include: tuple[dict[str, Any], ...]
    session: str
    grant_ids: tuple[int, ...]


def _wanted_policies(vendor: Vendor) -> list[WantedPolicy]:
    """Per session length among the active grants: an Allow policy for the vendor's people and, if it has service
    tokens, a Service Auth policy for them.

    A reusable policy's session length holds on every application it is attached to, so grants of different
    lengths cannot share one; grants of the same length do, which keeps the vendor's objects as few as its lengths.
    A service token presents no identity, so only a `non_identity` policy naming it lets it in.
    """
    by_session: dict[str, list[int]] = {}
    for grant in active_grants(vendor):
        by_session.setdefault(grant.session_duration, []).append(grant.pk)
    tokens = active_tokens(vendor)
    service_include = tuple({"service_token": {"token_id": t.cf_id}} for t in tokens)
    wanted = []
    for session, grant_ids in sorted(by_session.items()):
        ids = tuple(grant_ids)
        wanted.append(
            WantedPolicy(
                "cf_policy_id", vendor.policy_name_for(session), "allow", tuple(vendor.include_rules()), session, ids
            )
        )
        if tokens:
            wanted.append(
                WantedPolicy(
                    "cf_service_policy_id",
                    vendor.service_policy_name_for(session),
                    "non_identity",
                    service_include,
                    session,
                    ids,
                )
            )
    return wanted


def step_validate(ctx: Context) -> None:
    vendor = ctx.vendor
    grants = active_grants(vendor)
    if not grants:
        raise StepFailed("The vendor has no active grant.")
    if not vendor.contacts and not vendor.domains:
        raise StepFailed("The vendor has no contact and no email domain.")
    if late := [g for g in grants if g.ends_at <= timezone.now()]:
        raise StepFailed(f"The grant for {late[0].application.name} has already ended.")
    apps, policies = read_apps_and_policies(ctx)
    reusable = {p.id for p in policies}
    by_id = {a.id: a for a in apps}
    missing = [g.application.name for g in grants if g.application.cf_id not in by_id]
    if missing:
        raise StepFailed(f"No longer at Cloudflare: {', '.join(missing)}.")
    for grant in grants:
        app = by_id[grant.application.cf_id]
        AccessApplication.objects.filter(pk=grant.application.pk).update(
            name=app.name,
            domain=app.domain,
            destinations=list(app.destinations),
            inline_policies=len(app.inline_policies(reusable)),
            synced_at=timezone.now(),
        )
    refuse_inline([by_id[g.application.cf_id] for g in grants], reusable)


def step_tokens(ctx: Context) -> None:
    vendor = ctx.vendor
    pending = list(vendor.service_tokens.filter(status=ServiceToken.Status.PENDING))
    if pending:
        (existing,) = run_concurrently(
            ctx, [Call("access.service_tokens.list", "account", lambda: cf.service_tokens_all(priority=ctx.priority))]
        )
        # A token with our name but no row pointing at it was created by an interrupted step; its secret is lost,
        # so it is replaced rather than kept.
        names = {p.cf_name for p in pending}
        run_concurrently(
            ctx,
            [
                Call(
                    "access.service_tokens.delete",
                    t.name,
                    partial(cf.service_token_delete, t.id, priority=ctx.priority),
                    missing_ok=True,
                )
                for t in existing
                if t.name in names
            ],
        )
    else:
        ctx.note("access.service_tokens.create", "none to create", "nothing to do")
    # One at a time, each saved at once: a secret Cloudflare has shown is kept before the next call can fail.
    for token in pending:
        created = cf.service_token_create(name=token.cf_name, duration=token.duration, priority=ctx.priority)
        ctx.note("access.service_tokens.create", token.label, f"created client id {created.client_id}")
        ServiceToken.objects.filter(pk=token.pk).update(
            cf_id=created.id,
            client_id=created.client_id,
            secret_sealed=seal(created.client_secret, purpose=Purpose.SERVICE_TOKEN),
            status=ServiceToken.Status.ACTIVE,
        )
    # Cloudflare's create answer carries no expiry; the token as Cloudflare keeps it does.
    unknown = list(vendor.service_tokens.filter(status=ServiceToken.Status.ACTIVE, expires_at=None).exclude(cf_id=""))
    read = run_concurrently(
        ctx,
        [
            Call(
                "access.service_tokens.get",
                token.label,
                partial(cf.service_token_get, token.cf_id, priority=ctx.priority),
                describe=lambda t: f"expires {t.expires_at:%Y-%m-%d %H:%M} UTC" if t.expires_at else "no expiry",
            )
            for token in unknown
        ],
    )
    for token, found in zip(unknown, read, strict=True):
        ServiceToken.objects.filter(pk=token.pk).update(expires_at=found.expires_at)


def step_policy(ctx: Context) -> None:
    """Create or update each of the vendor's policies; an interrupted create's twin is deleted.

    A policy already recorded for a grant is kept (and renamed, if its name is not the wanted one), so a vendor's
    policies carry over when its grants' session lengths change.
    """
    vendor = ctx.vendor
    wanted = _wanted_policies(vendor)
    (policies,) = run_concurrently(
        ctx, [Call("access.policies.list", "account", lambda: cf.access_policies_all(priority=ctx.priority))]
    )
    recorded_by_grant = {
        pk: {"cf_policy_id": people, "cf_service_policy_id": service}
        for pk, people, service in vendor.grants.values_list("pk", "cf_policy_id", "cf_service_policy_id")
    }
    by_name = {spec.name for spec in wanted}
    calls: list[Call] = []
    kept: dict[int, str] = {}
    created: dict[int, int] = {}
    claimed: set[str] = set()
    for n, spec in enumerate(wanted):
        recorded = {recorded_by_grant[pk][spec.column] for pk in spec.grant_ids} - {""}
        named = [p for p in policies if p.name == spec.name]
        # A recorded policy now named for another spec of this vendor belongs to that spec.
        reused = [p for p in policies if p.id in recorded and p.name not in by_name - {spec.name}]
        candidates = [p for p in [*named, *reused] if p.id not in claimed]
        keep = next((p for p in candidates if p.name == spec.name), candidates[0] if candidates else None)
        calls += [
            Call(
                "access.policies.delete",
                p.id,
                partial(cf.access_policy_delete, p.id, priority=ctx.priority),
                missing_ok=True,
            )
            for p in named
            if keep is not None and p.id != keep.id and not p.app_count
        ]
        write = {"name": spec.name, "decision": spec.decision, "session_duration": spec.session}
        if keep is None:
            created[n] = len(calls)
            calls.append(
                Call(
                    "access.policies.create",
                    spec.name,
                    partial(cf.access_policy_create, **write, include=list(spec.include), priority=ctx.priority),
                )
            )
            continue
        kept[n] = keep.id
        claimed.add(keep.id)
        # Exclude and require rules added at Cloudflare count as a difference: the update (a PUT) removes them.
        if (keep.name, keep.decision, keep.include, keep.exclude, keep.require, keep.session_duration) != (
            spec.name,
            spec.decision,
            spec.include,
            (),
            (),
            spec.session,
        ):
            calls.append(
                Call(
                    "access.policies.update",
                    spec.name,
                    partial(
                        cf.access_policy_update, keep.id, **write, include=list(spec.include), priority=ctx.priority
                    ),
                )
            )
        else:
            ctx.note("access.policies.get", spec.name, "already as wanted")
    results = run_concurrently(ctx, calls)
    with transaction.atomic():
        for n, spec in enumerate(wanted):
            policy_id = kept[n] if n in kept else results[created[n]].id
            Grant.objects.filter(pk__in=spec.grant_ids).update(**{spec.column: policy_id})
        if not active_tokens(vendor):
            vendor.grants.filter(status=Grant.Status.ACTIVE).update(cf_service_policy_id="")


def step_attach(ctx: Context) -> None:
    """Attach each grant's policies to its application, detach the vendor's others, and delete policies left unused."""
    vendor = ctx.vendor
    grants = active_grants(vendor)
    if any(not g.cf_policy_id for g in grants):
        raise StepFailed("The vendor's policies do not exist yet.")
    with_tokens = bool(active_tokens(vendor))
    granted = {g.application.cf_id: wanted_on(g, with_tokens) for g in grants}
    ours = owned_by(vendor)
    seen = app_generations(vendor)
    apps, policies = read_apps_and_policies(ctx)
    reusable = {p.id for p in policies}
    changes = [
        (app, granted.get(app.id, set()))
        for app in apps
        if {p.id for p in app.policies if ours(p)} != granted.get(app.id, set())
    ]
    calls = [app_write(ctx, app, ours, target, reusable, seen) for app, target in changes]
    if not calls:
        ctx.note("access.apps.update", "all applications", "already as wanted")
    run_concurrently(ctx, calls)
    ctx.run.data["detached_apps"] = sorted(
        {app.id for app, target in changes if not target} | set(ctx.run.data.get("detached_apps", []))
    )
    # Policies of the vendor no grant uses any more (a session length no grant has now, the last grant ended) are
    # detached everywhere by now; Cloudflare refuses to delete one still attached.
    in_use = set().union(*granted.values()) if granted else set()
    run_concurrently(
        ctx,
        [
            Call(
                "access.policies.delete",
                p.name,
                partial(cf.access_policy_delete, p.id, priority=ctx.priority),
                missing_ok=True,
            )
            for p in policies
            if ours(p) and p.id not in in_use
        ],
    )


def step_notify(ctx: Context) -> None:
    vendor = ctx.vendor
    grants = active_grants(vendor)
    lines = [f"{vendor.name} has been given access to the following, through Cloudflare Access:", ""]
    for grant in grants:
        lines.append(f"{grant.application.name} (until {grant.ends_at:%Y-%m-%d %H:%M} UTC)")
        lines.extend(f"  {line}" for line in grant.application.instructions())
        lines.append("")
    lines.append("Sign in with your company email address when Cloudflare asks.")
    body = "\n".join(lines)
    for email in vendor.contacts:
        send_mail(f"Your access for {vendor.name}", body, None, [email])
        ctx.note("email", email, "sent")
    if not vendor.contacts:
        ctx.note("email", "contacts", "no contact addresses; domain-only vendor")
