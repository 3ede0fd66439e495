"""Adopting access that already exists at Cloudflare: a reusable policy Gatehouse does not own becomes a vendor.

Reading candidates changes nothing at Cloudflare. Only once an admin confirms does Gatehouse record the vendor,
its grants and its tokens from what Cloudflare holds, and start the workflow that gives the policy Gatehouse's
name (its marker); from then on the vendor is revoked, expires and is verified like any other.
"""

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, datetime

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from dashboard.models import User
from dashboard.requestinfo import RequestOrigin
from dashboard.services import audit_record
from integrations import cloudflare as cf
from integrations import records
from integrations.cloudflare import CloudflareNotFound, Priority
from vendors import services
from vendors.models import (
    MANAGED_PREFIX,
    AccessApplication,
    AccessPolicy,
    Grant,
    ServiceToken,
    Vendor,
    WorkflowRun,
    parse_session,
    session_text,
)

PEOPLE_RULES = frozenset({"email", "email_domain"})
VENDOR_RULES = PEOPLE_RULES | {"service_token"}
# Cloudflare's session length for a policy that sets none.
DEFAULT_SESSION = "24h"


class NotAdoptable(ValidationError):
    """The policy is Gatehouse's already, gone, or not vendor access."""


@dataclass(frozen=True)
class Candidate:
    """A policy Gatehouse could adopt, the stored applications that carry it, and what it admits."""

    policy: records.AccessPolicy
    applications: list[AccessApplication]
    emails: list[str]
    domains: list[str]
    token_ids: list[str]
    # Applications carrying it that Gatehouse's stored list does not know yet (read live, at confirmation).
    unknown_apps: list[str] = field(default_factory=list)
    problem: str = ""
    # Filled in for the confirmation only: the tokens as Cloudflare holds them, and ids that name no token.
    tokens: list[records.ServiceToken] = field(default_factory=list)
    missing_token_ids: list[str] = field(default_factory=list)

    @property
    def admits_people(self) -> bool:
        return bool(self.emails or self.domains)

    @property
    def session(self) -> str:
        return session_text(parse_session(self.policy.session_duration or DEFAULT_SESSION))

    def fingerprint(self) -> str:
        """What the admin saw: if the policy or where it is attached changes before they confirm, they see it again."""
        p = self.policy
        seen = [p.name, p.decision, p.include, p.exclude, p.require, p.session_duration, self.app_ids]
        return hashlib.sha256(json.dumps(seen, sort_keys=True, default=list).encode()).hexdigest()[:32]

    @property
    def app_ids(self) -> list[str]:
        return sorted(app.cf_id for app in self.applications)


def _owned_ids() -> set[str]:
    pairs = Grant.objects.values_list("cf_policy_id", "cf_service_policy_id")
    return {policy_id for pair in pairs for policy_id in pair} - {""}


def _looks_like_vendor(policy: records.AccessPolicy) -> bool:
    kinds = {records.rule_subject(rule)[0] for rule in policy.include}
    return policy.decision in ("allow", "non_identity") and bool(kinds) and kinds <= VENDOR_RULES


def _candidate(
    policy: records.AccessPolicy, apps: list[AccessApplication], unknown_apps: list[str] | None = None
) -> Candidate:
    subjects = [records.rule_subject(rule) for rule in policy.include]
    emails = sorted({s for kind, s in subjects if kind == "email" and s})
    domains = sorted({s for kind, s in subjects if kind == "email_domain" and s})
    token_ids = sorted({s for kind, s in subjects if kind == "service_token" and s})
    candidate = Candidate(
        policy=policy,
        applications=apps,
        emails=emails,
        domains=domains,
        token_ids=token_ids,
        unknown_apps=unknown_apps or [],
    )
    return Candidate(**{**candidate.__dict__, "problem": _problem(candidate)})


def _problem(candidate: Candidate) -> str:
    """Why the policy cannot be adopted as it is ("" if it can), naming what to do."""
    policy = candidate.policy
    if policy.exclude or policy.require:
        return "It has exclude or require rules, which a vendor's policy in Gatehouse does not keep."
    if not candidate.admits_people:
        return (
            "It admits service tokens only: adopt the policy that admits the vendor's people, and choose this one "
            "as its Service Auth policy."
        )
    try:
        parse_session(policy.session_duration or DEFAULT_SESSION)
    except ValidationError:
        return f"Its session length {policy.session_duration!r} is outside the 15m to 730h Gatehouse offers."
    if candidate.unknown_apps:
        return (
            f"It is also on {', '.join(candidate.unknown_apps)}, which Gatehouse has not read yet: refresh the "
            "application list, then adopt it."
        )
    if not candidate.applications:
        return "No application carries it (refresh the application list if that is not so)."
    if reasons := [app.not_grantable_reason() for app in candidate.applications if not app.grantable]:
        return " ".join(reasons)
    return ""


def _applications_by_policy() -> dict[str, list[AccessApplication]]:
    by_policy: dict[str, list[AccessApplication]] = {}
    for app in AccessApplication.objects.filter(present=True).order_by("name"):
        for policy_id in app.policy_ids or []:
            by_policy.setdefault(str(policy_id), []).append(app)
    return by_policy


def _unowned(policies: list[records.AccessPolicy]) -> list[records.AccessPolicy]:
    owned = _owned_ids()
    return [
        p for p in policies if not p.name.startswith(MANAGED_PREFIX) and p.id not in owned and _looks_like_vendor(p)
    ]


def _from_copy(row: AccessPolicy) -> records.AccessPolicy:
    return records.AccessPolicy(
        id=row.cf_id,
        name=row.name,
        decision=row.decision,
        include=tuple(row.include),
        exclude=tuple(row.exclude),
        require=tuple(row.require),
        session_duration=row.session_duration,
    )


def adopt_candidates() -> list[Candidate]:
    """Reusable policies Gatehouse does not own whose rules name only people and service tokens, by name, as last
    read with the application list (refreshing that list reads them again)."""
    by_policy = _applications_by_policy()
    policies = _unowned([_from_copy(row) for row in AccessPolicy.objects.filter(present=True)])
    return sorted((_candidate(p, by_policy.get(p.id, [])) for p in policies), key=lambda c: c.policy.name.lower())


def stored_candidate(policy_id: str) -> Candidate:
    """The candidate as last read; NotAdoptable if Gatehouse knows no such unowned policy."""
    found = [c for c in adopt_candidates() if c.policy.id == policy_id]
    if not found:
        raise NotAdoptable("Gatehouse knows no such policy to adopt; refresh the application list.")
    return found[0]


def adopt_candidate(policy_id: str) -> Candidate:
    """One candidate as Cloudflare holds it now: the policy, the applications carrying it and its service tokens;
    NotAdoptable if it is not one.

    The applications are read now too: a grant missing for one would have the adoption detach the policy there.
    """
    try:
        policy = cf.access_policy_get(policy_id, priority=Priority.INTERACTIVE)
    except CloudflareNotFound:
        raise NotAdoptable("This policy is no longer at Cloudflare.") from None
    if not _unowned([policy]):
        raise NotAdoptable(f"Policy {policy.name!r} is Gatehouse's already, or does not look like vendor access.")
    carrying = {
        app.id: app.name
        for app in cf.access_apps_all(priority=Priority.INTERACTIVE)
        if policy.id in {p.id for p in app.policies}
    }
    known = list(AccessApplication.objects.filter(cf_id__in=carrying, present=True).order_by("name"))
    unknown = sorted(name for app_id, name in carrying.items() if app_id not in {a.cf_id for a in known})
    candidate = _candidate(policy, known, unknown)
    if not candidate.token_ids:
        return candidate
    found = {t.id: t for t in cf.service_tokens_all(priority=Priority.INTERACTIVE)}
    return Candidate(
        **{
            **candidate.__dict__,
            "tokens": [found[i] for i in candidate.token_ids if i in found],
            "missing_token_ids": [i for i in candidate.token_ids if i not in found],
        }
    )


def service_policy_choices_now(candidate: Candidate) -> list[Candidate]:
    """The Service Auth policies that may come with this one, each read from Cloudflare now."""
    stored = service_policy_choices(candidate, adopt_candidates())
    live = []
    for choice in stored:
        try:
            live.append(adopt_candidate(choice.policy.id))
        except NotAdoptable:
            continue
    return service_policy_choices(candidate, live)


def service_policy_choices(candidate: Candidate, all_candidates: list[Candidate]) -> list[Candidate]:
    """Service Auth policies that could come with this people policy: unowned, service tokens only, and carried
    by no application the people policy is not on."""
    apps = set(candidate.app_ids)
    return [
        c
        for c in all_candidates
        if c.policy.decision == "non_identity"
        and c.token_ids
        and not c.admits_people
        and not (c.policy.exclude or c.policy.require)
        and not c.unknown_apps
        and c.app_ids
        and set(c.app_ids) <= apps
    ]


def vendor_adopt(
    *,
    actor: User,
    policy_id: str,
    fingerprint: str,
    service_policy_id: str = "",
    service_fingerprint: str = "",
    name: str,
    sponsor: User,
    review_due: date,
    ends_at: datetime,
    request_origin: RequestOrigin | None,
) -> Vendor:
    """Record the vendor from the policy as Cloudflare holds it now, then start the workflow that marks it ours.

    Refused if the policy (or the Service Auth policy chosen with it) changed since the admin read it.
    """
    if not actor.has_role(User.Role.ADMIN):
        raise PermissionDenied("Only admins adopt vendors.")
    if not sponsor.has_role(User.Role.OPERATOR):
        raise ValidationError({"sponsor": "The sponsor must be an operator or an admin."})
    if ends_at <= timezone.now():
        raise ValidationError({"ends_on": "The end of the grants is in the past."})
    people = adopt_candidate(policy_id)
    changed = "It changed at Cloudflare since you opened this page; review it again below."
    if people.fingerprint() != fingerprint:
        raise ValidationError(changed)
    if people.problem:
        raise ValidationError(people.problem)
    service = None
    if service_policy_id:
        service = adopt_candidate(service_policy_id)
        if service.fingerprint() != service_fingerprint:
            raise ValidationError(changed)
        if service_policy_id not in {c.policy.id for c in service_policy_choices(people, [service])}:
            raise ValidationError({"service_policy": "That policy cannot come with this one."})
    session = people.session
    tokens = people.tokens + (service.tokens if service else [])
    with transaction.atomic():
        vendor = Vendor(
            name=name.strip(),
            sponsor=sponsor,
            contacts=people.emails,
            domains=people.domains,
            review_due=review_due,
            adopted_from=people.policy.name,
        )
        vendor.full_clean()
        vendor.save()
        for app in people.applications:
            grant = Grant(
                vendor=vendor,
                application=app,
                ends_at=ends_at,
                session_duration=session,
                cf_policy_id=people.policy.id,
                cf_service_policy_id=service.policy.id if service else "",
            )
            grant.full_clean(exclude=["vendor", "application"])
            grant.save()
        for token in {t.id: t for t in tokens}.values():
            ServiceToken.objects.create(
                vendor=vendor,
                label=(token.name or token.client_id)[:80],
                duration=token.duration[:16] or "8760h",
                status=ServiceToken.Status.ACTIVE,
                cf_id=token.id,
                client_id=token.client_id,
                expires_at=token.expires_at,
                secret_known=False,
            )
        audit_record(
            action="vendor.adopted",
            actor=actor,
            target_type="vendor",
            target_id=str(vendor.public_id),
            target_label=vendor.name,
            details={
                "policy": people.policy.name,
                "policy_id": people.policy.id,
                "service_policy": service.policy.name if service else "",
                "contacts": vendor.contacts,
                "domains": vendor.domains,
                "applications": [a.name for a in people.applications],
                "service_tokens": [t.name for t in tokens],
                "until": ends_at.isoformat(),
                "session": session,
            },
            request_origin=request_origin,
        )
        services.run_start(vendor=vendor, kind=WorkflowRun.Kind.ADOPT, actor=actor, request_origin=request_origin)
    return vendor
