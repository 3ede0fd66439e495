"""Steps that take a vendor's access away: wait for other work, cut it off, delete what is left, end sessions."""

from functools import partial

from django.utils import timezone

from integrations import cloudflare as cf
from vendors.calls import Call, run_concurrently
from vendors.models import ServiceToken, WorkflowRun
from vendors.steps.app_policies import app_generations, app_write
from vendors.steps.context import Context, StepWait
from vendors.steps.vendor_state import our_tokens, owned_by


def _people_calls(ctx: Context) -> list[Call]:
    """Reads of the Access users behind the vendor's contacts and, exactly by address, its email domains."""
    vendor = ctx.vendor
    calls = [
        Call("access.users.list", email, partial(cf.access_users, email=email, priority=ctx.priority))
        for email in vendor.contacts
    ]
    calls += [
        Call("access.users.list", f"@{d}", partial(cf.access_users_in_domain, d, priority=ctx.priority))
        for d in vendor.domains
    ]
    return calls


def _revoke_call(ctx: Context, email: str) -> Call:
    return Call(
        "access.organizations.revoke_user",
        email,
        lambda: cf.access_revoke_user(email, priority=ctx.priority),
        describe=lambda revoked: "sessions ended" if revoked else "nothing to revoke",
    )


def step_end_grant_sessions(ctx: Context) -> None:
    """After grants end, end the sessions of the vendor's people (contacts, domain users) and the tokens issued for
    the ended applications (service tokens' too): no session outlives its grant.

    Cloudflare ends a person's sessions everywhere at once; on the applications still granted they sign in again.
    """
    user_lists = run_concurrently(ctx, _people_calls(ctx))
    users = {u.id: u.email for group in user_lists for u in group if u.email}
    emails = sorted(set(users.values()) | set(ctx.vendor.contacts))
    ctx.run.data["users"] = {**ctx.run.data.get("users", {}), **users}
    calls = [_revoke_call(ctx, email) for email in emails]
    calls += [
        Call(
            "access.apps.revoke_tokens",
            app_id,
            partial(cf.access_app_revoke_tokens, app_id, priority=ctx.priority),
            missing_ok=True,
        )
        for app_id in ctx.run.data.get("ended_apps", [])
    ]
    run_concurrently(ctx, calls)


def step_quiesce(ctx: Context) -> None:
    """Revocation waits for a step another run of this vendor is in the middle of, so the two never interleave."""
    busy = (
        WorkflowRun.objects.filter(vendor=ctx.vendor, lease_until__gt=timezone.now())
        .exclude(pk=ctx.run.pk)
        .order_by("-lease_until")
        .first()
    )
    if busy is not None and busy.lease_until is not None:  # it has one: the filter was on it
        raise StepWait(max(0.5, (busy.lease_until - timezone.now()).total_seconds()))
    ctx.note("gatehouse", "other work on this vendor", "none in progress")


def step_cut_off(ctx: Context) -> None:
    """Detach the vendor's policies from every application and delete its service tokens, at once."""
    vendor = ctx.vendor
    reads = [
        Call("access.apps.list", "account", lambda: cf.access_apps_all(priority=ctx.priority)),
        Call("access.policies.list", "account", lambda: cf.access_policies_all(priority=ctx.priority)),
        Call("access.service_tokens.list", "account", lambda: cf.service_tokens_all(priority=ctx.priority)),
        *_people_calls(ctx),
    ]
    ours = owned_by(vendor)
    seen = app_generations(vendor)
    apps, policies, tokens, *user_lists = run_concurrently(ctx, reads)
    reusable = {p.id for p in policies}
    our_policies = [p for p in policies if ours(p)]
    touched = [a for a in apps if any(ours(p) for p in a.policies)]
    writes = [app_write(ctx, app, ours, set(), reusable, seen) for app in touched]
    writes += [
        Call(
            "access.service_tokens.delete",
            t.name or t.id,
            partial(cf.service_token_delete, t.id, priority=ctx.priority),
            missing_ok=True,
        )
        for t in our_tokens(vendor, tokens)
    ]
    if not writes:
        ctx.note("gatehouse", vendor.name, "no policy attached and no service token left")
    run_concurrently(ctx, writes)
    granted = set(vendor.grants.values_list("application__cf_id", flat=True))
    data = ctx.run.data
    data["policy_ids"] = sorted({p.id for p in our_policies} | set(data.get("policy_ids", [])))
    data["app_ids"] = sorted({a.id for a in touched} | (granted & {a.id for a in apps}) | set(data.get("app_ids", [])))
    users = {u.id: u.email for group in user_lists for u in group if u.email}
    data["emails"] = sorted(set(users.values()) | set(vendor.contacts) | set(data.get("emails", [])))
    # Verification reads these users' sessions alongside its other reads instead of after them.
    data["users"] = {**data.get("users", {}), **users}
    vendor.service_tokens.exclude(status=ServiceToken.Status.DELETED).update(
        status=ServiceToken.Status.DELETED, secret_sealed=""
    )


def step_end_access(ctx: Context) -> None:
    """Delete the policies, end every session of the vendor's people and every token of the applications they used."""
    data = ctx.run.data
    calls = [
        Call(
            "access.policies.delete",
            policy_id,
            partial(cf.access_policy_delete, policy_id, priority=ctx.priority),
            missing_ok=True,
        )
        for policy_id in data.get("policy_ids", [])
    ]
    calls += [_revoke_call(ctx, email) for email in data.get("emails", [])]
    calls += [
        Call(
            "access.apps.revoke_tokens",
            app_id,
            partial(cf.access_app_revoke_tokens, app_id, priority=ctx.priority),
            missing_ok=True,
        )
        for app_id in data.get("app_ids", [])
    ]
    run_concurrently(ctx, calls)
    ctx.vendor.grants.update(cf_policy_id="", cf_service_policy_id="")
