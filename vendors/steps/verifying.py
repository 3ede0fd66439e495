"""Steps that read Cloudflare back and say, finding by finding, where it differs from what the run was for."""

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.core.exceptions import ValidationError

from integrations import cloudflare as cf
from integrations import records
from vendors.calls import Call, run_concurrently
from vendors.models import Vendor, parse_session
from vendors.steps.context import Context, VerificationFailed
from vendors.steps.vendor_state import active_grants, active_tokens, our_tokens, owned_by, wanted_on


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
    grants = active_grants(vendor)
    ours = active_tokens(vendor)
    owned = owned_by(vendor)
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
        wanted_grant = wanted.get(app.id)
        if wanted_grant is None:
            if attached:
                findings.append(f"{app.name} carries the vendor's policy without a grant.")
            continue
        if wanted_grant.cf_policy_id not in attached:
            findings.append(f"{app.name} does not carry the vendor's policy.")
        if extra := attached - wanted_on(wanted_grant, bool(ours)):
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
    granted = active_grants(vendor)
    ours = active_tokens(vendor)
    admitted = f"; {len(ours)} service token(s) admitted on each" if ours else ""
    sessions = sorted({g.session_duration for g in granted})
    ctx.note(
        "verify",
        vendor.name,
        f"policy attached to {len(granted)} granted application(s), sessions {', '.join(sessions) or 'none'}{admitted}",
    )


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
        Call("access.users.list", e, partial(cf.access_users, email=e, priority=ctx.priority))
        for e in sorted(emails)
    ]
    reads += [
        Call("access.users.list", f"@{d}", partial(cf.access_users_in_domain, d, priority=ctx.priority))
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
    ours = owned_by(vendor)
    findings = [f"Policy {p.name} still exists." for p in seen.policies if ours(p)]
    for app in seen.apps:
        findings += _admitting(app, ours, seen.emails, set(vendor.domains), seen.groups, set())
    # A deleted token admits nothing, whichever policy still names it; one left behind is the finding.
    findings += [f"Service token {t.name} still exists." for t in our_tokens(vendor, seen.tokens)]
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
    ours = owned_by(vendor)
    token_ids = {t.cf_id for t in active_tokens(vendor)}
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
    still = len(active_grants(vendor))
    ctx.note(
        "verify",
        vendor.name,
        f"nothing admits the vendor on {len(ended)} ended application(s); {still} grant(s) still admit it",
    )
