"""Drift: reading back what Gatehouse applied for each active vendor, to find what was changed at Cloudflare
outside Gatehouse (a rule added or removed, a policy detached or deleted, a token deleted).

Beat checks a slice of the active vendors each pass, oldest check first, so that every one is read about once per
CYCLE whatever their number. A pass reads the account's applications, policies and service tokens once (three
paged lists at background priority) and compares every vendor of its slice against them.
"""

import math
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from dashboard.models import User
from dashboard.requestinfo import RequestOrigin
from dashboard.services import audit_record
from integrations import cloudflare as cf
from integrations import records
from integrations.cloudflare import Priority
from vendors import services
from vendors.models import Grant, ServiceToken, Vendor, WorkflowRun, parse_session, session_text

# Beat runs the check every PASS; each vendor is read about once per CYCLE.
PASS = timedelta(minutes=5)
CYCLE = timedelta(hours=1)
_MAX_DIFFERENCES = 50
_MAX_TEXT = 300


@dataclass(frozen=True)
class Difference:
    subject: str
    expected: str
    found: str
    # The public id of a service token that is gone, so that re-applying can replace it.
    token: str = ""

    def as_dict(self) -> dict[str, str]:
        return {k: records.text(v, _MAX_TEXT) for k, v in asdict(self).items() if v or k != "token"}


@dataclass(frozen=True)
class Account:
    """What Cloudflare holds, read once for a pass."""

    apps: list[records.AccessApplication]
    policies: dict[str, records.AccessPolicy]
    token_ids: set[str]

    @classmethod
    def read(cls, priority: Priority) -> "Account":
        apps = cf.access_apps_all(priority=priority)
        policies = cf.access_policies_all(priority=priority)
        tokens = cf.service_tokens_all(priority=priority)
        return cls(apps=apps, policies={p.id: p for p in policies}, token_ids={t.id for t in tokens})


def _rule_text(rule: dict) -> str:
    kind, subject = records.rule_subject(rule)
    return f"{kind} {subject}" if subject else kind or "unknown rule"


def _rules(rules) -> str:
    return ", ".join(sorted(_rule_text(r) for r in rules)) or "none"


def _same_session(a: str, b: str) -> bool:
    try:
        return session_text(parse_session(a)) == session_text(parse_session(b))
    except ValidationError:
        return a == b


def _policy_differences(
    name: str, found: records.AccessPolicy | None, decision: str, include: list[dict], session: str
) -> list[Difference]:
    subject = f"Policy {name}"
    if found is None:
        return [Difference(subject, "exists", "deleted at Cloudflare")]
    out = []
    if found.name != name:
        out.append(Difference(f"{subject}: name", name, found.name))
    if found.decision != decision:
        out.append(Difference(f"{subject}: action", decision, found.decision))
    expected, actual = {_rule_text(r) for r in include}, {_rule_text(r) for r in found.include}
    if expected != actual:
        changes = [f"added {r}" for r in sorted(actual - expected)] + [
            f"removed {r}" for r in sorted(expected - actual)
        ]
        out.append(
            Difference(f"{subject}: include rules ({'; '.join(changes)})", _rules(include), _rules(found.include))
        )
    if found.exclude or found.require:
        out.append(
            Difference(f"{subject}: exclude and require rules", "none", _rules((*found.exclude, *found.require)))
        )
    if not _same_session(found.session_duration, session):
        out.append(Difference(f"{subject}: session length", session, found.session_duration or "none"))
    return out


def vendor_differences(vendor: Vendor, account: Account) -> list[Difference]:
    """How Cloudflare differs from what Gatehouse applied for this vendor; [] when it matches."""
    grants = list(vendor.grants.filter(status=Grant.Status.ACTIVE).select_related("application"))
    tokens = list(vendor.service_tokens.filter(status=ServiceToken.Status.ACTIVE).exclude(cf_id=""))
    out: list[Difference] = []
    people: dict[str, str] = {}
    machines: dict[str, str] = {}
    for grant in grants:
        if grant.cf_policy_id:
            people[grant.cf_policy_id] = grant.session_duration
        if grant.cf_service_policy_id and tokens:
            machines[grant.cf_service_policy_id] = grant.session_duration
    for policy_id, session in people.items():
        out += _policy_differences(
            vendor.policy_name_for(session), account.policies.get(policy_id), "allow", vendor.include_rules(), session
        )
    service_include = [{"service_token": {"token_id": t.cf_id}} for t in tokens]
    for policy_id, session in machines.items():
        out += _policy_differences(
            vendor.service_policy_name_for(session),
            account.policies.get(policy_id),
            "non_identity",
            service_include,
            session,
        )
    names = {pid: p.name for pid, p in account.policies.items()}
    ours = set(people) | set(machines)
    apps = {app.id: app for app in account.apps}
    granted: set[str] = set()
    for grant in grants:
        app = apps.get(grant.application.cf_id)
        granted.add(grant.application.cf_id)
        if app is None:
            out.append(Difference(f"Application {grant.application.name}", "exists", "deleted at Cloudflare"))
            continue
        carried = {p.id for p in app.policies}
        for policy_id, wanted in ((grant.cf_policy_id, True), (grant.cf_service_policy_id, bool(tokens))):
            if policy_id and wanted and policy_id not in carried:
                name = names.get(policy_id, policy_id)
                out.append(Difference(f"Application {app.name}", f"carries {name}", f"{name} detached"))
    for app in account.apps:
        if app.id in granted:
            continue
        stray = [p.name or p.id for p in app.policies if p.id in ours or vendor.owns_policy_name(p.name)]
        if stray:
            out.append(
                Difference(
                    f"Application {app.name}", "not granted: carries none of the vendor's policies", ", ".join(stray)
                )
            )
    out += [
        Difference(f"Service token {t.label}", "exists", "deleted at Cloudflare", token=str(t.public_id))
        for t in tokens
        if t.cf_id not in account.token_ids
    ]
    return out[:_MAX_DIFFERENCES]


def _alert_key(vendor: Vendor) -> str:
    return f"vendor-drift:{vendor.public_id}"


def _raise_alert(vendor: Vendor, differences: list[dict]) -> None:
    from alerts.services import alert_raise

    lines = [f"- {d['subject']}: expected {d['expected']}; found {d['found']}" for d in differences]
    alert_raise(
        kind="vendor.drift",
        subject=f"{vendor.name}'s access was changed at Cloudflare outside Gatehouse",
        body="\n".join(
            [*lines, "", "Open the vendor in Gatehouse to see the difference and re-apply what Gatehouse granted."]
        ),
        target_type="vendor",
        target_id=str(vendor.public_id),
        target_label=vendor.name,
        dedupe_key=_alert_key(vendor),
    )


def _resolve_alert(vendor: Vendor) -> None:
    from alerts.services import alert_resolve

    alert_resolve(dedupe_key=_alert_key(vendor), body=f"{vendor.name} matches Cloudflare again.")


def _checkable() -> Q:
    return Q(status=Vendor.Status.ACTIVE, archived_at=None) & ~Q(runs__status__in=WorkflowRun.ACTIVE)


def _record(
    vendor: Vendor,
    differences: list[Difference],
    read_from: datetime,
    *,
    actor: User | None,
    request_origin: RequestOrigin | None,
) -> bool:
    """Store what the read found, unless a workflow for the vendor started since (it may have changed Cloudflare
    on purpose); raise or resolve the alert. True if stored."""
    found = [d.as_dict() for d in differences]
    with transaction.atomic():
        vendor = Vendor.objects.select_for_update().get(pk=vendor.pk)
        busy = vendor.runs.filter(Q(status__in=WorkflowRun.ACTIVE) | Q(created_at__gte=read_from)).exists()
        if busy or vendor.status != Vendor.Status.ACTIVE or vendor.archived:
            return False
        now = timezone.now()
        before = vendor.drift
        vendor.drift, vendor.drift_checked_at = found, now
        if found and not before:
            vendor.drift_found_at = now
        if not found:
            vendor.drift_found_at = None
        vendor.save(update_fields=["drift", "drift_checked_at", "drift_found_at", "updated_at"])
        action = ""
        if found and found != before:
            action = "vendor.drift_found"
            transaction.on_commit(lambda: _raise_alert(vendor, found))
        elif before and not found:
            action = "vendor.drift_cleared"
            transaction.on_commit(lambda: _resolve_alert(vendor))
        elif actor is not None:
            action = "vendor.drift_checked"
        if action:
            audit_record(
                action=action,
                actor=actor,
                target_type="vendor",
                target_id=str(vendor.public_id),
                target_label=vendor.name,
                details={"differences": found},
                request_origin=request_origin,
            )
    return True


def drift_check() -> int:
    """One beat pass: read back the slice of active vendors checked longest ago; returns how many were checked."""
    checkable = Vendor.objects.filter(_checkable()).distinct()
    batch = max(1, math.ceil(checkable.count() * (PASS / CYCLE)))
    chosen = list(checkable.order_by(F("drift_checked_at").asc(nulls_first=True), "pk")[:batch])
    if not chosen:
        return 0
    read_from = timezone.now()
    account = Account.read(Priority.BACKGROUND)
    return sum(
        _record(vendor, vendor_differences(vendor, account), read_from, actor=None, request_origin=None)
        for vendor in chosen
    )


def drift_check_vendor(*, actor: User, vendor: Vendor, request_origin: RequestOrigin) -> Vendor:
    """Read one vendor back now, at someone's request."""
    if not actor.has_role(User.Role.OPERATOR):
        raise PermissionDenied("Only operators check vendors against Cloudflare.")
    if vendor.archived or vendor.status != Vendor.Status.ACTIVE:
        raise ValidationError(
            f"Only an active vendor is checked; {vendor.name} is {vendor.get_status_display().lower()}."
        )
    if vendor.runs.filter(status__in=WorkflowRun.ACTIVE).exists():
        raise ValidationError(f"A workflow is running for {vendor.name}; check once it has finished.")
    read_from = timezone.now()
    account = Account.read(Priority.INTERACTIVE)
    _record(vendor, vendor_differences(vendor, account), read_from, actor=actor, request_origin=request_origin)
    vendor.refresh_from_db()
    return vendor


def drift_reapply(*, actor: User, vendor: Vendor, request_origin: RequestOrigin) -> WorkflowRun:
    """Put Cloudflare back as Gatehouse applied it: the change workflow rewrites the policies and attachments, and
    a token deleted at Cloudflare is replaced by a new one (its secret shown once)."""
    if not actor.has_role(User.Role.OPERATOR):
        raise PermissionDenied("Only operators re-apply vendors.")
    with transaction.atomic():
        vendor = Vendor.objects.select_for_update().get(pk=vendor.pk)
        if vendor.archived or vendor.status not in (Vendor.Status.ACTIVE, Vendor.Status.NEEDS_ATTENTION):
            raise ValidationError(f"{vendor.name} is {vendor.get_status_display().lower()}; it cannot be re-applied.")
        if not vendor.drift:
            raise ValidationError(
                f"The last read-back found {vendor.name} as Gatehouse applied it; nothing to re-apply."
            )
        gone = {d["token"] for d in vendor.drift if d.get("token")}
        replaced = []
        for token in vendor.service_tokens.filter(public_id__in=gone, status=ServiceToken.Status.ACTIVE):
            token.status, token.secret_sealed = ServiceToken.Status.DELETED, ""
            token.save(update_fields=["status", "secret_sealed"])
            ServiceToken.objects.create(vendor=vendor, label=token.label, duration=token.duration)
            replaced.append(token.label)
        audit_record(
            action="vendor.drift_reapplied",
            actor=actor,
            target_type="vendor",
            target_id=str(vendor.public_id),
            target_label=vendor.name,
            details={"differences": vendor.drift, "replaced_tokens": replaced},
            request_origin=request_origin,
        )
        return services.run_start(
            vendor=vendor, kind=WorkflowRun.Kind.CHANGE, actor=actor, request_origin=request_origin
        )
