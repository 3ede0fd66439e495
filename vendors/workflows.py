"""Vendor workflows as rows: a WorkflowRun with ordered WorkflowSteps, advanced one step per Celery task.

Each step reads Cloudflare's current state before changing it, so a step run twice (a worker killed mid-step, a
message delivered again) leaves the world as after once. A worker holds a lease on the run while it executes a
step; a replacement waits out the lease instead of racing the first. Independent Cloudflare calls within a step
run concurrently in threads; the threads only talk to Cloudflare, and all database work stays in the task's
own thread.
"""

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from dashboard.requestinfo import Origin
from dashboard.sealing import Purpose, seal
from dashboard.services import audit_record
from integrations import cloudflare as cf
from integrations import locks, records
from integrations.cloudflare import CloudflareError, CloudflareNotFound, CloudflareTransient, Priority
from vendors.models import (
    MANAGED_PREFIX,
    AccessApplication,
    Grant,
    ServiceToken,
    Vendor,
    WorkflowRun,
    WorkflowStep,
    parse_session,
)

log = logging.getLogger(__name__)

Kind = WorkflowRun.Kind

# Short, quick retries inside a step for a single failed call among many; longer waits are the task's business.
_CALL_RETRIES = (0.25, 0.75)
_MAX_INLINE_WAIT = 2.0
_MAX_THREADS = 32
_MAX_ANSWER = 300


class StepFailed(Exception):
    """The step cannot succeed as things stand; the run stops with this reason until someone retries it."""


class VerificationFailed(Exception):
    """Cloudflare, read back, does not show what the run was meant to achieve."""

    def __init__(self, findings: list[str]):
        super().__init__("; ".join(findings))
        self.findings = findings


class StepWait(Exception):
    """Not yet: try the same step again after `seconds`."""

    def __init__(self, seconds: float):
        super().__init__(f"waiting {seconds:.1f} s")
        self.seconds = seconds


@dataclass
class Context:
    run: WorkflowRun
    vendor: Vendor
    priority: Priority
    answers: list[dict[str, Any]] = field(default_factory=list)

    def note(self, call: str, target: str, answer: str) -> None:
        self.answers.append(
            {"at": timezone.now().isoformat(), "call": call, "target": target[:200], "answer": answer[:_MAX_ANSWER]}
        )


@dataclass
class Call:
    """One Cloudflare call to make in a worker thread, with what the receipt says about it."""

    name: str
    target: str
    fn: Callable[[], Any]
    missing_ok: bool = False
    # What the receipt says about the answer; lists are counted, anything else is "ok" unless said here.
    describe: Callable[[Any], str] | None = None


def _attempt(call: Call) -> tuple[str, Any]:
    for delay in (*_CALL_RETRIES, None):
        try:
            return "ok", call.fn()
        except CloudflareNotFound:
            if call.missing_ok:
                return "already gone", None
            raise
        except CloudflareTransient as exc:
            if delay is None or (exc.retry_after or 0) > _MAX_INLINE_WAIT:
                raise
            time.sleep(max(delay, exc.retry_after or 0))
    raise AssertionError("unreachable")


def run_concurrently(ctx: Context, calls: list[Call]) -> list[Any]:
    """Make independent calls at once; note each answer; re-raise the first error once all have finished."""
    if not calls:
        return []
    with ThreadPoolExecutor(max_workers=min(_MAX_THREADS, len(calls))) as pool:
        futures = [pool.submit(_attempt, call) for call in calls]
    results, first_error = [], None
    for call, future in zip(calls, futures, strict=True):
        try:
            answer, value = future.result()
        except CloudflareError as exc:
            ctx.note(call.name, call.target, f"error: {exc.message}")
            first_error = first_error or exc
            results.append(None)
            continue
        if answer != "ok":
            summary = answer
        elif call.describe is not None:
            summary = call.describe(value)
        elif isinstance(value, list):
            summary = f"{len(value)} item(s)"
        else:
            summary = answer
        ctx.note(call.name, call.target, summary)
        results.append(value)
    if first_error is not None:
        raise first_error
    return results


# --- reading Cloudflare ---------------------------------------------------------------------------------------


def _recorded_policy_ids(vendor: Vendor) -> set[str]:
    ids = vendor.grants.values_list("cf_policy_id", "cf_service_policy_id")
    return {policy_id for pair in ids for policy_id in pair} - {""}


def _owned(vendor: Vendor) -> Callable[[records.AccessPolicy], bool]:
    """Whether a policy is the vendor's own: by its deterministic name, or by an id Gatehouse recorded."""
    recorded = _recorded_policy_ids(vendor)
    return lambda policy: vendor.owns_policy_name(policy.name) or (bool(policy.id) and policy.id in recorded)


def _rule_admits(
    rule: dict[str, Any], emails: set[str], domains: set[str], groups: dict[str, records.AccessGroup]
) -> str | None:
    """Why this include rule admits the vendor's people, or None."""
    kind, subject = records.rule_subject(rule)
    if kind == "email" and subject in emails:
        return f"email {subject}"
    if kind == "email_domain" and (subject in domains or any(e.endswith("@" + subject) for e in emails)):
        return f"email domain {subject}"
    if kind == "everyone":
        return "everyone"
    if kind == "group" and (group := groups.get(subject)):
        for inner in group.include:
            if reason := _rule_admits(inner, emails, domains, {}):
                return f"group {group.name} ({reason})"
    return None


@dataclass(frozen=True)
class WantedPolicy:
    """One of the vendor's policies as it should be at Cloudflare, the grants it serves, and their column for its id."""

    column: str
    name: str
    decision: str
    include: tuple[dict[str, Any], ...]
    session: str
    grant_ids: tuple[int, ...]


def _active_tokens(vendor: Vendor) -> list[ServiceToken]:
    return list(vendor.service_tokens.filter(status=ServiceToken.Status.ACTIVE).exclude(cf_id=""))


def _wanted_policies(vendor: Vendor) -> list[WantedPolicy]:
    """Per session length among the active grants: an Allow policy for the vendor's people and, if it has service
    tokens, a Service Auth policy for them.

    A reusable policy's session length holds on every application it is attached to, so grants of different
    lengths cannot share one; grants of the same length do, which keeps the vendor's objects as few as its lengths.
    A service token presents no identity, so only a `non_identity` policy naming it lets it in.
    """
    by_session: dict[str, list[int]] = {}
    for grant in _active_grants(vendor):
        by_session.setdefault(grant.session_duration, []).append(grant.pk)
    tokens = _active_tokens(vendor)
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


def _refuse_inline(apps: list[records.AccessApplication], reusable_ids: set[str]) -> None:
    """Stop before any write if an application to change still has app-scoped policies (see AccessApplication)."""
    names = [app.name for app in apps if app.inline_policies(reusable_ids)]
    if names:
        raise StepFailed(
            f"{', '.join(names)} still {'has' if len(names) == 1 else 'have'} application-scoped (legacy) policies, "
            "which Cloudflare does not combine with a vendor's reusable policy. At Cloudflare (Zero Trust → Access → "
            "Applications → the application → Policies), convert them to reusable policies, then retry."
        )


# --- steps ------------------------------------------------------------------------------------------------------


def _active_grants(vendor: Vendor) -> list[Grant]:
    return list(vendor.grants.filter(status=Grant.Status.ACTIVE).select_related("application"))


def _read_apps_and_policies(ctx: Context) -> tuple[list[records.AccessApplication], list[records.AccessPolicy]]:
    apps, policies = run_concurrently(
        ctx,
        [
            Call("access.apps.list", "account", lambda: cf.access_apps_all(priority=ctx.priority)),
            Call("access.policies.list", "account", lambda: cf.access_policies_all(priority=ctx.priority)),
        ],
    )
    return apps, policies


def step_validate(ctx: Context) -> None:
    vendor = ctx.vendor
    grants = _active_grants(vendor)
    if not grants:
        raise StepFailed("The vendor has no active grant.")
    if not vendor.contacts and not vendor.domains:
        raise StepFailed("The vendor has no contact and no email domain.")
    if late := [g for g in grants if g.ends_at <= timezone.now()]:
        raise StepFailed(f"The grant for {late[0].application.name} has already ended.")
    apps, policies = _read_apps_and_policies(ctx)
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
    _refuse_inline([by_id[g.application.cf_id] for g in grants], reusable)


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
                    lambda tid=t.id: cf.service_token_delete(tid, priority=ctx.priority),
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
                lambda tid=token.cf_id: cf.service_token_get(tid, priority=ctx.priority),
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
                lambda pid=p.id: cf.access_policy_delete(pid, priority=ctx.priority),
                missing_ok=True,
            )
            for p in named
            if keep is not None and p.id != keep.id and not p.app_count
        ]
        write = dict(name=spec.name, decision=spec.decision, include=list(spec.include), session_duration=spec.session)
        if keep is None:
            created[n] = len(calls)
            calls.append(
                Call(
                    "access.policies.create",
                    spec.name,
                    lambda w=write: cf.access_policy_create(**w, priority=ctx.priority),
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
                    lambda pid=keep.id, w=write: cf.access_policy_update(pid, **w, priority=ctx.priority),
                )
            )
        else:
            ctx.note("access.policies.get", spec.name, "already as wanted")
    results = run_concurrently(ctx, calls)
    with transaction.atomic():
        for n, spec in enumerate(wanted):
            policy_id = kept[n] if n in kept else results[created[n]].id
            Grant.objects.filter(pk__in=spec.grant_ids).update(**{spec.column: policy_id})
        if not _active_tokens(vendor):
            vendor.grants.filter(status=Grant.Status.ACTIVE).update(cf_service_policy_id="")


def _app_generations(vendor: Vendor) -> dict[str, int]:
    """The lock generations of every application the vendor has been granted, noted before a step reads them."""
    app_ids = set(vendor.grants.values_list("application__cf_id", flat=True)) - {""}
    return {app_id: locks.generation(f"access-app:{app_id}") for app_id in app_ids}


def _set_policies(
    ctx: Context,
    app: records.AccessApplication,
    owned: Callable[[records.AccessPolicy], bool],
    target: set[str],
    known: set[str],
) -> str:
    _refuse_inline([app], known)
    mine = {p.id for p in app.policies if owned(p)}
    if mine == target:
        return "already as wanted"
    refs = [ref for ref in app.references(known) if ref["id"] not in mine]
    top = max((ref["precedence"] for ref in refs), default=0)
    refs += [{"id": policy_id, "precedence": top + i} for i, policy_id in enumerate(sorted(target), 1)]
    cf.access_app_set_policies(app, refs, priority=ctx.priority)
    return "ok"


def _app_write(
    ctx: Context,
    app: records.AccessApplication,
    owned: Callable[[records.AccessPolicy], bool],
    target: set[str],
    reusable: set[str],
    seen: dict[str, int],
) -> Call:
    """Set which of the vendor's policies the application carries (`target`), keeping everyone else's as they are.

    Cloudflare replaces the whole list on each PUT with no version check, so the write is made under the
    application's lock (see integrations.locks). If no run changed the application under the lock since the
    generation `seen` before this step's read, that read is written back as it is; otherwise the application is
    read again first, so another vendor's change is never undone.
    """
    verb = "attach to" if target else "detach from"

    def write() -> str:
        try:
            with locks.hold(f"access-app:{app.id}") as held:
                if seen.get(app.id) == held.generation:
                    fresh, known = app, reusable | target
                else:
                    fresh = cf.access_app_get(app.id, priority=ctx.priority)
                    known = reusable | target
                    if any(p.id not in known for p in fresh.policies):
                        # Attached since this step read the policies (another run's): read them again, not guess.
                        known |= {p.id for p in cf.access_policies_all(priority=ctx.priority)}
                answer = _set_policies(ctx, fresh, owned, target, known)
                if answer == "ok":
                    held.changed()
                return answer
        except locks.LockTimeout:
            raise CloudflareTransient(f"access.apps.update: {app.name} is being changed by another run") from None

    return Call("access.apps.update", f"{verb} {app.name}", write, missing_ok=not target, describe=str)


def _wanted_on(grant: Grant, with_tokens: bool) -> set[str]:
    return {grant.cf_policy_id} | ({grant.cf_service_policy_id} if with_tokens else set())


def step_attach(ctx: Context) -> None:
    """Attach each grant's policies to its application, detach the vendor's others, and delete policies left unused."""
    vendor = ctx.vendor
    grants = _active_grants(vendor)
    if any(not g.cf_policy_id for g in grants):
        raise StepFailed("The vendor's policies do not exist yet.")
    with_tokens = bool(_active_tokens(vendor))
    granted = {g.application.cf_id: _wanted_on(g, with_tokens) for g in grants}
    ours = _owned(vendor)
    seen = _app_generations(vendor)
    apps, policies = _read_apps_and_policies(ctx)
    reusable = {p.id for p in policies}
    changes = [
        (app, granted.get(app.id, set()))
        for app in apps
        if {p.id for p in app.policies if ours(p)} != granted.get(app.id, set())
    ]
    calls = [_app_write(ctx, app, ours, target, reusable, seen) for app, target in changes]
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
                lambda pid=p.id: cf.access_policy_delete(pid, priority=ctx.priority),
                missing_ok=True,
            )
            for p in policies
            if ours(p) and p.id not in in_use
        ],
    )


def step_notify(ctx: Context) -> None:
    vendor = ctx.vendor
    grants = _active_grants(vendor)
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


def _same_session(a: str, b: str) -> bool:
    try:
        return parse_session(a) == parse_session(b)
    except ValidationError:
        return False


def _granted_findings(
    vendor: Vendor,
    apps: list[records.AccessApplication],
    policies: list[records.AccessPolicy],
    tokens: list[records.ServiceToken],
) -> list[str]:
    """What, read back from Cloudflare, differs from the vendor's active grants (empty when all is as granted)."""
    grants = _active_grants(vendor)
    ours = _active_tokens(vendor)
    owned = _owned(vendor)
    by_id = {p.id: p for p in policies}
    findings = []
    for grant in grants:
        name = grant.application.name
        policy = by_id.get(grant.cf_policy_id)
        if policy is None:
            findings.append(f"The vendor's policy for {name} is missing.")
        elif policy.include != tuple(vendor.include_rules()) or policy.decision != "allow":
            findings.append(f"The vendor's policy for {name} admits other people than its contacts and domains.")
        elif not _same_session(policy.session_duration, grant.session_duration):
            findings.append(
                f"The vendor's policy for {name} keeps sessions for {policy.session_duration}, "
                f"not {grant.session_duration}."
            )
        if ours:
            service = by_id.get(grant.cf_service_policy_id)
            if service is None:
                findings.append(f"The vendor's Service Auth policy for {name} is missing.")
            elif service.decision != "non_identity" or service.service_token_ids != {t.cf_id for t in ours}:
                findings.append(
                    f"The vendor's Service Auth policy for {name} does not admit exactly its service tokens."
                )
    wanted = {g.application.cf_id: g for g in grants}
    for app in apps:
        attached = {p.id for p in app.policies if owned(p)}
        grant = wanted.get(app.id)
        if grant is None:
            if attached:
                findings.append(f"{app.name} carries the vendor's policy without a grant.")
            continue
        if grant.cf_policy_id not in attached:
            findings.append(f"{app.name} does not carry the vendor's policy.")
        if extra := attached - _wanted_on(grant, bool(ours)):
            findings.append(f"{app.name} carries {len(extra)} more of the vendor's policies than its grant.")
        findings += [
            f"{app.name} does not admit service token {token.label}."
            for token in ours
            if not any(owned(p) and p.admits_service_token(token.cf_id) for p in app.policies)
        ]
    findings += [
        f"{grant.application.name} is gone from Cloudflare."
        for app_id, grant in sorted(wanted.items())
        if app_id not in {a.id for a in apps}
    ]
    token_ids = {t.id for t in tokens}
    findings += [f"Service token {token.label} is missing." for token in ours if token.cf_id not in token_ids]
    return findings


def step_verify_granted(ctx: Context) -> None:
    """Read Cloudflare back: each granted application admits the vendor's people (for the grant's session length)
    and each of its service tokens, and no other application carries its policies."""
    vendor = ctx.vendor
    apps, policies, tokens = run_concurrently(
        ctx,
        [
            Call("access.apps.list", "account", lambda: cf.access_apps_all(priority=ctx.priority)),
            Call("access.policies.list", "account", lambda: cf.access_policies_all(priority=ctx.priority)),
            Call("access.service_tokens.list", "account", lambda: cf.service_tokens_all(priority=ctx.priority)),
        ],
    )
    if findings := _granted_findings(vendor, apps, policies, tokens):
        raise VerificationFailed(findings)
    granted = _active_grants(vendor)
    ours = _active_tokens(vendor)
    admitted = f"; {len(ours)} service token(s) admitted on each" if ours else ""
    sessions = sorted({g.session_duration for g in granted})
    ctx.note(
        "verify",
        vendor.name,
        f"policy attached to {len(granted)} granted application(s), sessions {', '.join(sessions) or 'none'}{admitted}",
    )


def _people_calls(ctx: Context) -> list[Call]:
    """Reads of the Access users behind the vendor's contacts and, exactly by address, its email domains."""
    vendor = ctx.vendor
    calls = [
        Call("access.users.list", email, lambda e=email: cf.access_users(email=e, priority=ctx.priority))
        for email in vendor.contacts
    ]
    calls += [
        Call("access.users.list", f"@{d}", lambda d=d: cf.access_users_in_domain(d, priority=ctx.priority))
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
            lambda a=app_id: cf.access_app_revoke_tokens(a, priority=ctx.priority),
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
    if busy is not None:
        raise StepWait(max(0.5, (busy.lease_until - timezone.now()).total_seconds()))
    ctx.note("gatehouse", "other work on this vendor", "none in progress")


def _our_tokens(vendor: Vendor, tokens: list[records.ServiceToken]) -> list[records.ServiceToken]:
    recorded = set(vendor.service_tokens.exclude(cf_id="").values_list("cf_id", flat=True))
    return [t for t in tokens if t.id in recorded or t.name.startswith(vendor.token_prefix)]


def step_cut_off(ctx: Context) -> None:
    """Detach the vendor's policies from every application and delete its service tokens, at once."""
    vendor = ctx.vendor
    reads = [
        Call("access.apps.list", "account", lambda: cf.access_apps_all(priority=ctx.priority)),
        Call("access.policies.list", "account", lambda: cf.access_policies_all(priority=ctx.priority)),
        Call("access.service_tokens.list", "account", lambda: cf.service_tokens_all(priority=ctx.priority)),
        *_people_calls(ctx),
    ]
    ours = _owned(vendor)
    seen = _app_generations(vendor)
    apps, policies, tokens, *user_lists = run_concurrently(ctx, reads)
    reusable = {p.id for p in policies}
    our_policies = [p for p in policies if ours(p)]
    touched = [a for a in apps if any(ours(p) for p in a.policies)]
    writes = [_app_write(ctx, app, ours, set(), reusable, seen) for app in touched]
    writes += [
        Call(
            "access.service_tokens.delete",
            t.name or t.id,
            lambda tid=t.id: cf.service_token_delete(tid, priority=ctx.priority),
            missing_ok=True,
        )
        for t in _our_tokens(vendor, tokens)
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
            lambda pid=policy_id: cf.access_policy_delete(pid, priority=ctx.priority),
            missing_ok=True,
        )
        for policy_id in data.get("policy_ids", [])
    ]
    calls += [_revoke_call(ctx, email) for email in data.get("emails", [])]
    calls += [
        Call(
            "access.apps.revoke_tokens",
            app_id,
            lambda a=app_id: cf.access_app_revoke_tokens(a, priority=ctx.priority),
            missing_ok=True,
        )
        for app_id in data.get("app_ids", [])
    ]
    run_concurrently(ctx, calls)
    ctx.vendor.grants.update(cf_policy_id="", cf_service_policy_id="")


def _admitting(
    app: records.AccessApplication,
    owned: Callable[[records.AccessPolicy], bool],
    emails: set[str],
    domains: set[str],
    groups: dict[str, records.AccessGroup],
    token_ids: set[str],
) -> list[str]:
    """How this application still lets the vendor in: its policy, or another admitting its people or tokens."""
    findings = []
    for policy in app.policies:
        if owned(policy):
            findings.append(f"{app.name} still carries the vendor's policy.")
        elif policy.decision == "allow":
            for rule in policy.include:
                if reason := _rule_admits(rule, emails, domains, groups):
                    findings.append(f"{app.name}: policy {policy.name!r} admits by {reason}.")
                    break
        elif policy.decision == "non_identity" and any(policy.admits_service_token(t) for t in token_ids):
            findings.append(f"{app.name}: policy {policy.name!r} admits the vendor's service tokens.")
    return findings


@dataclass
class ReadBack:
    """Cloudflare as read back after access was taken away, with the live sessions of the vendor's people."""

    apps: list[records.AccessApplication]
    policies: list[records.AccessPolicy]
    groups: dict[str, records.AccessGroup]
    tokens: list[records.ServiceToken]
    emails: set[str]
    sessions: dict[str, tuple[str, list[records.AccessSession]]]


def _read_back(ctx: Context) -> ReadBack:
    """Every application, policy, group and token, the vendor's people, and each one's live sessions."""
    vendor = ctx.vendor
    emails = set(ctx.run.data.get("emails", [])) | set(vendor.contacts)
    reads = [
        Call("access.apps.list", "account", lambda: cf.access_apps_all(priority=ctx.priority)),
        Call("access.policies.list", "account", lambda: cf.access_policies_all(priority=ctx.priority)),
        Call("access.groups.list", "account", lambda: cf.access_groups_all(priority=ctx.priority)),
        Call("access.service_tokens.list", "account", lambda: cf.service_tokens_all(priority=ctx.priority)),
    ]
    reads += [
        Call("access.users.list", e, lambda e=e: cf.access_users(email=e, priority=ctx.priority))
        for e in sorted(emails)
    ]
    reads += [
        Call("access.users.list", f"@{d}", lambda d=d: cf.access_users_in_domain(d, priority=ctx.priority))
        for d in sorted(vendor.domains)
    ]
    known = dict(ctx.run.data.get("users", {}))
    reads += [_sessions_call(ctx, uid, email) for uid, email in known.items()]
    n = len(reads) - len(known)
    results = run_concurrently(ctx, reads)
    apps, policies, groups, tokens, *user_lists = results[:n]
    live = dict(zip(known, results[n:], strict=True))
    users = {u.id: u.email for group in user_lists for u in group}
    # Users Gatehouse did not know of when it cut access off (someone signed in since) are read now.
    unknown = [uid for uid in users if uid not in live]
    more = run_concurrently(ctx, [_sessions_call(ctx, uid, users[uid]) for uid in unknown])
    live.update(zip(unknown, more, strict=True))
    return ReadBack(
        apps=apps,
        policies=policies,
        groups={g.id: g for g in groups},
        tokens=tokens,
        emails=emails | set(users.values()),
        sessions={uid: (users.get(uid) or known.get(uid) or uid, found or []) for uid, found in live.items()},
    )


def _sessions_call(ctx: Context, user_id: str, email: str) -> Call:
    return Call(
        "access.users.active_sessions",
        email,
        lambda: cf.access_user_sessions(user_id, priority=ctx.priority),
        missing_ok=True,
    )


def step_verify_revoked(ctx: Context) -> None:
    """Read Cloudflare back: nothing of ours remains and nothing else admits the vendor's people or tokens."""
    vendor = ctx.vendor
    seen = _read_back(ctx)
    ours = _owned(vendor)
    findings = [f"Policy {p.name} still exists." for p in seen.policies if ours(p)]
    for app in seen.apps:
        findings += _admitting(app, ours, seen.emails, set(vendor.domains), seen.groups, set())
    # A deleted token admits nothing, whichever policy still names it; one left behind is the finding.
    findings += [f"Service token {t.name} still exists." for t in _our_tokens(vendor, seen.tokens)]
    findings += [f"{email} still has {len(live)} active session(s)." for email, live in seen.sessions.values() if live]
    if findings:
        raise VerificationFailed(findings)
    ctx.note("verify", vendor.name, "no policy, reference, service token or session admits the vendor")


def step_verify_grants_ended(ctx: Context) -> None:
    """Read Cloudflare back: on each ended grant's application nothing admits the vendor (its policy, anyone else's
    policy, a session); on the applications still granted, everything does, as granted."""
    vendor = ctx.vendor
    ended = set(ctx.run.data.get("ended_apps", []))
    seen = _read_back(ctx)
    ours = _owned(vendor)
    token_ids = {t.cf_id for t in _active_tokens(vendor)}
    findings = []
    for app in seen.apps:
        if app.id in ended:
            findings += _admitting(app, ours, seen.emails, set(vendor.domains), seen.groups, token_ids)
    names = {a.id: a.name for a in seen.apps}
    for email, live in seen.sessions.values():
        findings += [
            f"{email} still has a session on {names.get(app_id, app_id)}."
            for session in live
            for app_id in session.app_ids
            if app_id in ended
        ]
    findings += _granted_findings(vendor, seen.apps, seen.policies, seen.tokens)
    if findings:
        raise VerificationFailed(findings)
    still = len(_active_grants(vendor))
    ctx.note(
        "verify",
        vendor.name,
        f"nothing admits the vendor on {len(ended)} ended application(s); {still} grant(s) still admit it",
    )


# --- definitions --------------------------------------------------------------------------------------------

STEP_FUNCTIONS: dict[str, Callable[[Context], None]] = {
    "validate": step_validate,
    "policy": step_policy,
    "attach": step_attach,
    "tokens": step_tokens,
    "notify": step_notify,
    "verify_granted": step_verify_granted,
    "end_grant_sessions": step_end_grant_sessions,
    "quiesce": step_quiesce,
    "cut_off": step_cut_off,
    "end_access": step_end_access,
    "verify_revoked": step_verify_revoked,
    "verify_grants_ended": step_verify_grants_ended,
}

_REVOKE_STEPS = [
    ("quiesce", "Stop other work on this vendor"),
    ("cut_off", "Detach the vendor's policies from every application; delete its service tokens"),
    ("end_access", "Delete the policies; end the sessions of its people (devices too) and the applications' tokens"),
    ("verify_revoked", "Read Cloudflare back: no policy, token or session admits the vendor"),
]

_END_GRANT_STEPS = [
    ("attach", "Detach the policies from applications whose grant ended; delete policies no grant uses"),
    ("end_grant_sessions", "End the sessions of the vendor's people and the ended applications' tokens"),
    ("verify_grants_ended", "Read Cloudflare back: nothing admits the vendor where its grant ended; the rest do"),
]

STEPS: dict[str, list[tuple[str, str]]] = {
    Kind.ONBOARD: [
        ("validate", "Check the vendor, its grants and the applications at Cloudflare"),
        ("tokens", "Create service tokens"),
        ("policy", "Create or update the vendor's policies (people; service tokens)"),
        ("attach", "Attach the policies to the granted applications"),
        ("notify", "Email each contact their instructions"),
        ("verify_granted", "Read Cloudflare back: people and service tokens are admitted"),
    ],
    Kind.CHANGE: [
        ("validate", "Check the vendor, its grants and the applications at Cloudflare"),
        ("tokens", "Create new service tokens"),
        ("policy", "Update the vendor's policies (people; service tokens)"),
        ("attach", "Attach the policies to granted applications; detach them from the others"),
        ("verify_granted", "Read Cloudflare back: people and service tokens are admitted"),
    ],
    Kind.EXPIRE: _END_GRANT_STEPS,
    Kind.END_GRANT: _END_GRANT_STEPS,
    # An adopted policy keeps its id: the policy step gives it Gatehouse's name, and its service tokens move to
    # the vendor's Service Auth policy.
    Kind.ADOPT: [
        ("validate", "Check the vendor, its grants and the applications at Cloudflare"),
        ("tokens", "Read the adopted service tokens"),
        ("policy", "Give the adopted policy Gatehouse's name and rules (people; service tokens)"),
        ("attach", "Keep the policies on the granted applications"),
        ("verify_granted", "Read Cloudflare back: people and service tokens are admitted"),
    ],
    Kind.SUSPEND: _REVOKE_STEPS,
    Kind.REVOKE: _REVOKE_STEPS,
}

PRIORITY = {
    Kind.ONBOARD: Priority.INTERACTIVE,
    Kind.CHANGE: Priority.INTERACTIVE,
    Kind.REVOKE: Priority.INTERACTIVE,
    Kind.SUSPEND: Priority.INTERACTIVE,
    Kind.EXPIRE: Priority.BACKGROUND,
    Kind.END_GRANT: Priority.INTERACTIVE,
    Kind.ADOPT: Priority.INTERACTIVE,
}

# What the vendor becomes when a run of each kind succeeds.
FINAL_STATUS = {
    Kind.ONBOARD: Vendor.Status.ACTIVE,
    Kind.CHANGE: Vendor.Status.ACTIVE,
    Kind.EXPIRE: Vendor.Status.ACTIVE,
    Kind.END_GRANT: Vendor.Status.ACTIVE,
    Kind.ADOPT: Vendor.Status.ACTIVE,
    Kind.SUSPEND: Vendor.Status.SUSPENDED,
    Kind.REVOKE: Vendor.Status.REVOKED,
}


# --- the engine -------------------------------------------------------------------------------------------------


def lease_seconds() -> float:
    return float(getattr(settings, "GATEHOUSE_WORKFLOW_LEASE_SECONDS", settings.CELERY_TASK_TIME_LIMIT))


def _origin(run: WorkflowRun) -> Origin:
    return Origin(source_ip=run.source_ip, request_id=run.request_id)


def _audit(run: WorkflowRun, action: str, details: dict[str, Any]) -> None:
    audit_record(
        action=action,
        actor_email=run.actor_email,
        target_type="vendor",
        target_id=str(run.vendor.public_id),
        target_label=run.vendor.name,
        details={"run": str(run.public_id), "kind": run.kind, **details},
        origin=_origin(run),
    )


def create_steps(run: WorkflowRun) -> None:
    WorkflowStep.objects.bulk_create(
        WorkflowStep(run=run, position=i, key=key, label=label) for i, (key, label) in enumerate(STEPS[run.kind], 1)
    )


@dataclass(frozen=True)
class Outcome:
    """What the task should do next: nothing (`done`), the same run again after `wait` seconds, or (`go_on`) its
    next step at once: the step just done is committed, so the worker that did it may take the next one itself."""

    done: bool = True
    wait: float = 0.0
    go_on: bool = False


def advance(*, run_id: int) -> Outcome:
    """Run the next step of the run, if it is still active and no other worker holds it."""
    now = timezone.now()
    with transaction.atomic():
        run = WorkflowRun.objects.select_for_update().select_related("vendor").filter(pk=run_id).first()
        if run is None or not run.is_active:
            return Outcome()
        if run.lease_until and run.lease_until > now:
            return Outcome(done=False, wait=(run.lease_until - now).total_seconds() + 0.1)
        step = run.steps.filter(status__in=[WorkflowStep.Status.PENDING, WorkflowStep.Status.RUNNING]).first()
        if step is None:
            _finish(run)
            return Outcome()
        if run.status == WorkflowRun.Status.PENDING:
            run.started_at = now
            _audit(run, "vendor.workflow_started", {})
        run.status = WorkflowRun.Status.RUNNING
        run.lease_until = now + timedelta(seconds=lease_seconds())
        run.save(update_fields=["status", "started_at", "lease_until", "updated_at"])
        step.status = WorkflowStep.Status.RUNNING
        step.attempts += 1
        step.started_at = step.started_at or now
        step.save(update_fields=["status", "attempts", "started_at"])
    ctx = Context(run=run, vendor=run.vendor, priority=PRIORITY[run.kind])
    try:
        STEP_FUNCTIONS[step.key](ctx)
    except StepWait as wait:
        _release(run, step, ctx, error="")
        return Outcome(done=False, wait=wait.seconds)
    except CloudflareTransient as exc:
        _release(run, step, ctx, error=exc.message)
        raise
    except VerificationFailed as exc:
        _stop(run, step, ctx, status=WorkflowRun.Status.NEEDS_ATTENTION, reason=str(exc), findings=exc.findings)
        return Outcome()
    except (CloudflareError, StepFailed) as exc:
        _stop(run, step, ctx, status=WorkflowRun.Status.FAILED, reason=str(exc))
        return Outcome()
    if _complete(run, step, ctx):
        return Outcome(done=False, go_on=True)
    return Outcome()


def _release(run: WorkflowRun, step: WorkflowStep, ctx: Context, *, error: str) -> None:
    with transaction.atomic():
        WorkflowStep.objects.filter(pk=step.pk).update(answers=step.answers + ctx.answers, error=error[:1000])
        WorkflowRun.objects.filter(pk=run.pk).update(lease_until=None, data=run.data, updated_at=timezone.now())


def _complete(run: WorkflowRun, step: WorkflowStep, ctx: Context) -> bool:
    """Record the step as done, in its own transaction; whether the run still has work (it was not cancelled)."""
    with transaction.atomic():
        current = WorkflowRun.objects.select_for_update().get(pk=run.pk)
        step.status = WorkflowStep.Status.DONE
        step.finished_at = timezone.now()
        step.answers = step.answers + ctx.answers
        step.error = ""
        step.save(update_fields=["status", "finished_at", "answers", "error"])
        current.lease_until = None
        current.data = run.data
        current.save(update_fields=["lease_until", "data", "updated_at"])
        _audit(
            current,
            "vendor.workflow_step_done",
            {"step": step.label, "calls": len(ctx.answers), "attempts": step.attempts},
        )
    return current.is_active


def _finish(run: WorkflowRun) -> None:
    """Every step is done: the run succeeded and the vendor takes the status the run was for."""
    now = timezone.now()
    run.status = WorkflowRun.Status.SUCCEEDED
    run.finished_at = now
    run.lease_until = None
    run.save(update_fields=["status", "finished_at", "lease_until", "updated_at"])
    vendor = run.vendor
    vendor.status = FINAL_STATUS[run.kind]
    vendor.status_reason = ""
    vendor.save(update_fields=["status", "status_reason", "updated_at"])
    if run.kind in (Kind.REVOKE, Kind.SUSPEND):
        # Grants that had not started yet go too: beat must not start them for a vendor taken off.
        vendor.grants.filter(status__in=[Grant.Status.ACTIVE, Grant.Status.SCHEDULED]).update(
            status=Grant.Status.REVOKED, ended_at=now
        )
    _audit(run, "vendor.workflow_succeeded", {"vendor_status": vendor.status})


def _stop(
    run: WorkflowRun,
    step: WorkflowStep,
    ctx: Context,
    *,
    status: WorkflowRun.Status,
    reason: str,
    findings: list[str] | None = None,
) -> None:
    with transaction.atomic():
        current = WorkflowRun.objects.select_for_update().select_related("vendor").get(pk=run.pk)
        step.status = WorkflowStep.Status.FAILED
        step.finished_at = timezone.now()
        step.answers = step.answers + ctx.answers
        step.error = reason[:1000]
        step.save(update_fields=["status", "finished_at", "answers", "error"])
        current.lease_until = None
        current.data = run.data
        if not current.is_active:
            current.save(update_fields=["lease_until", "data", "updated_at"])
            return
        current.status = status
        current.reason = reason[:1000]
        current.finished_at = timezone.now()
        current.save(update_fields=["status", "reason", "lease_until", "data", "finished_at", "updated_at"])
        vendor = current.vendor
        vendor.status = Vendor.Status.NEEDS_ATTENTION
        vendor.status_reason = f"{current.get_kind_display()} stopped at “{step.label}”: {reason}"[:500]
        vendor.save(update_fields=["status", "status_reason", "updated_at"])
        _audit(
            current,
            "vendor.workflow_needs_attention"
            if status == WorkflowRun.Status.NEEDS_ATTENTION
            else "vendor.workflow_failed",
            {"step": step.label, "reason": reason, "findings": findings or []},
        )
        transaction.on_commit(lambda: alert_sponsor(current, reason=reason, findings=findings or []))


def give_up(*, run_id: int, reason: str) -> None:
    """Cloudflare kept answering with temporary errors past every retry: stop the run where it is."""
    with transaction.atomic():
        run = WorkflowRun.objects.select_for_update().select_related("vendor").filter(pk=run_id).first()
        if run is None or not run.is_active:
            return
        step = run.steps.filter(status__in=[WorkflowStep.Status.PENDING, WorkflowStep.Status.RUNNING]).first()
    if step is not None:
        _stop(
            run,
            step,
            Context(run=run, vendor=run.vendor, priority=PRIORITY[run.kind]),
            status=WorkflowRun.Status.FAILED,
            reason=reason,
        )


def alert_sponsor(run: WorkflowRun, *, reason: str, findings: list[str]) -> None:
    """An alert for whoever watches Gatehouse's channels, and a direct word to the vendor's sponsor."""
    from alerts.services import alert_raise

    vendor = run.vendor
    subject = f"{run.get_kind_display()} of {vendor.name} needs attention"
    lines = [
        f"The {run.get_kind_display().lower()} workflow for {vendor.name} stopped: {reason}",
        "",
        *[f"- {finding}" for finding in findings],
        "",
        "Open the vendor in Gatehouse to see every step and retry.",
    ]
    body = "\n".join(lines)
    alert_raise(
        kind=f"vendor.{run.kind}_stopped",
        subject=subject,
        body=body,
        target_type="vendor",
        target_id=str(vendor.public_id),
        target_label=vendor.name,
        dedupe_key=f"vendor-run:{run.public_id}",
    )
    send_mail(f"Gatehouse: {subject}", body, None, [vendor.sponsor.email])


def active_runs_to_resume(*, idle_for: timedelta) -> list[int]:
    """Active runs nobody is working on: no lease (or an expired one) and no progress for a while."""
    now = timezone.now()
    return list(
        WorkflowRun.objects.filter(status__in=WorkflowRun.ACTIVE, updated_at__lt=now - idle_for)
        .exclude(lease_until__gt=now)
        .values_list("pk", flat=True)
    )


__all__ = ["MANAGED_PREFIX", "STEPS", "Outcome", "advance", "create_steps", "give_up"]
