"""Writes for vendors: creating them, their grants and tokens, and starting, retrying and finishing workflows."""

from datetime import date, datetime, timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from dashboard import queue
from dashboard.models import User
from dashboard.operations import SubjectBusy
from dashboard.requestinfo import RequestOrigin
from dashboard.sealing import Purpose, unseal
from dashboard.services import audit_record
from integrations import cloudflare as cf
from vendors import workflows
from vendors.models import (
    AccessApplication,
    AccessPolicy,
    Grant,
    ServiceToken,
    Vendor,
    VendorSettings,
    WorkflowRun,
)

EXPIRY_NOTICE = timedelta(days=3)
# Runs started together that one worker drives at once (see tasks.workflows_advance_together).
TOGETHER = 4


def _audit(
    *,
    action: str,
    actor: User | None,
    vendor: Vendor,
    request_origin: RequestOrigin | None,
    details: dict | None = None,
):
    audit_record(
        action=action,
        actor=actor,
        target_type="vendor",
        target_id=str(vendor.public_id),
        target_label=vendor.name,
        details=details or {},
        request_origin=request_origin,
    )


def run_start(
    *,
    vendor: Vendor,
    kind: WorkflowRun.Kind,
    actor: User | None,
    request_origin: RequestOrigin | None,
    data: dict | None = None,
    enqueue: bool = True,
) -> WorkflowRun:
    """Start a workflow; SubjectBusy if one is already active for the vendor (revoke uses vendor_revoke).

    With `enqueue` False the caller enqueues the run itself (several runs driven together).
    """
    request_origin = request_origin or RequestOrigin()
    run = WorkflowRun(
        vendor=vendor,
        kind=kind,
        actor_email=actor.email if actor else "",
        source_ip=request_origin.source_ip,
        request_id=request_origin.request_id,
        data=data or {},
    )
    return workflows.start(run, enqueue=enqueue)


def vendor_create(
    *,
    actor: User,
    name: str,
    sponsor: User,
    contacts: list[str],
    domains: list[str],
    review_due: date,
    applications: list[AccessApplication],
    ends_at: datetime,
    session_duration: str,
    service_tokens: int,
    token_duration: str,
    request_origin: RequestOrigin | None,
    starts_at: datetime | None = None,
) -> Vendor:
    """A new vendor with its grants and service tokens; onboarding starts once this commits.

    Grants that start later are scheduled: onboarding waits for beat to start them (grants_start).
    """
    if not actor.has_role(User.Role.OPERATOR):
        raise PermissionDenied("Only operators add vendors.")
    if not sponsor.has_role(User.Role.OPERATOR):
        raise ValidationError({"sponsor": "The sponsor must be an operator or an admin."})
    if ends_at <= timezone.now():
        raise ValidationError({"ends_at": "The end of the grant is in the past."})
    if not applications:
        raise ValidationError({"applications": "Grant at least one application."})
    _check_grantable(applications)
    scheduled = _scheduled(starts_at)
    with transaction.atomic():
        vendor = Vendor(name=name.strip(), sponsor=sponsor, contacts=contacts, domains=domains, review_due=review_due)
        vendor.full_clean()
        vendor.save()
        for app in applications:
            grant = Grant(vendor=vendor, application=app, ends_at=ends_at, session_duration=session_duration)
            if scheduled and starts_at is not None:
                grant.starts_at, grant.status = starts_at, Grant.Status.SCHEDULED
            grant.full_clean(exclude=["vendor", "application"])
            grant.save()
        _tokens_add(vendor=vendor, count=service_tokens, duration=token_duration)
        _audit(
            action="vendor.created",
            actor=actor,
            vendor=vendor,
            request_origin=request_origin,
            details={
                "contacts": vendor.contacts,
                "domains": vendor.domains,
                "applications": [a.name for a in applications],
                "until": ends_at.isoformat(),
                "session": session_duration,
                "service_tokens": service_tokens,
                "from": starts_at.isoformat() if scheduled and starts_at else "",
            },
        )
        if not scheduled:
            run_start(vendor=vendor, kind=WorkflowRun.Kind.ONBOARD, actor=actor, request_origin=request_origin)
    return vendor


def _scheduled(starts_at: datetime | None) -> bool:
    """Whether grants starting then wait for beat; a start in the past or within a minute is now."""
    return starts_at is not None and starts_at > timezone.now() + timedelta(minutes=1)


def _check_grantable(applications: list[AccessApplication]) -> None:
    """Refuse, before anything reaches Cloudflare, applications a vendor's policy cannot be attached to."""
    if reasons := [app.not_grantable_reason() for app in applications if not app.grantable]:
        raise ValidationError({"applications": reasons})


def _tokens_add(*, vendor: Vendor, count: int, duration: str) -> None:
    start = vendor.service_tokens.count()
    for i in range(start, start + count):
        ServiceToken.objects.create(vendor=vendor, label=f"{vendor.name} token {i + 1}"[:80], duration=duration)


def vendor_update(
    *,
    actor: User,
    vendor: Vendor,
    contacts: list[str],
    domains: list[str],
    review_due: date,
    applications: list[AccessApplication],
    ends_at: datetime,
    session_duration: str,
    service_tokens: int,
    token_duration: str,
    request_origin: RequestOrigin | None,
    starts_at: datetime | None = None,
) -> WorkflowRun | None:
    """Change who the vendor is and what it may reach; the change is applied at Cloudflare by a workflow.

    Applications listed are granted until `ends_at` (an active grant is changed to the new end and session), or,
    when `starts_at` is later, scheduled for beat to start. A suspended vendor is reactivated this way; a revoked
    one stays revoked. Returns the run applying the change, or None when the vendor has only scheduled grants.
    """
    if not actor.has_role(User.Role.OPERATOR):
        raise PermissionDenied("Only operators change vendors.")
    if vendor.status in (Vendor.Status.REVOKED, Vendor.Status.REVOKING):
        raise ValidationError(f"{vendor.name} is {vendor.get_status_display().lower()}; add it again instead.")
    if applications and ends_at <= timezone.now():
        raise ValidationError({"ends_on": "The end of the grant is in the past."})
    _check_grantable(applications)
    with transaction.atomic():
        vendor = Vendor.objects.select_for_update().get(pk=vendor.pk)
        before = {"contacts": vendor.contacts, "domains": vendor.domains, "review_due": str(vendor.review_due)}
        vendor.contacts, vendor.domains, vendor.review_due = contacts, domains, review_due
        vendor.full_clean()
        vendor.save()
        scheduled = _scheduled(starts_at)
        for app in applications:
            current = vendor.grants.filter(
                application=app, status__in=[Grant.Status.ACTIVE, Grant.Status.SCHEDULED]
            ).first()
            if scheduled and current is not None and current.status == Grant.Status.ACTIVE:
                raise ValidationError(
                    {"applications": f"{app.name} is granted now; change that grant's end instead of scheduling one."}
                )
            grant = current or Grant(vendor=vendor, application=app)
            grant.ends_at, grant.session_duration, grant.expiry_notice_sent_at = ends_at, session_duration, None
            if scheduled and starts_at is not None:
                grant.starts_at, grant.status = starts_at, Grant.Status.SCHEDULED
            grant.full_clean(exclude=["vendor", "application"])
            grant.save()
        _tokens_add(vendor=vendor, count=service_tokens, duration=token_duration)
        if not vendor.grants.filter(status__in=[Grant.Status.ACTIVE, Grant.Status.SCHEDULED]).exists():
            raise ValidationError({"applications": "The vendor has no active grant; grant at least one application."})
        _audit(
            action="vendor.changed",
            actor=actor,
            vendor=vendor,
            request_origin=request_origin,
            details={
                "before": before,
                "contacts": vendor.contacts,
                "domains": vendor.domains,
                "review_due": str(vendor.review_due),
                "applications": [a.name for a in applications],
                "until": ends_at.isoformat() if applications else "",
                "from": starts_at.isoformat() if scheduled and starts_at else "",
                "new_service_tokens": service_tokens,
            },
        )
        if not vendor.grants.filter(status=Grant.Status.ACTIVE).exists():
            return None
        return run_start(vendor=vendor, kind=WorkflowRun.Kind.CHANGE, actor=actor, request_origin=request_origin)


def vendor_revoke(*, actor: User | None, vendor: Vendor, request_origin: RequestOrigin | None) -> WorkflowRun:
    """Revoke wins: any other active run of the vendor is cancelled, and the revocation starts."""
    if actor is not None and not actor.has_role(User.Role.OPERATOR):
        raise PermissionDenied("Only operators revoke vendors.")
    if vendor.archived:
        raise ValidationError(f"{vendor.name} is archived; nothing more is done to it.")
    return _take_over(actor=actor, vendor=vendor, request_origin=request_origin, kind=WorkflowRun.Kind.REVOKE)


def vendors_revoke(*, actor: User, vendors: list[Vendor], request_origin: RequestOrigin | None) -> list[WorkflowRun]:
    """Revoke several vendors in one action (an incident): each gets its own verified run, started at once."""
    if not actor.has_role(User.Role.OPERATOR):
        raise PermissionDenied("Only operators revoke vendors.")
    if not vendors:
        raise ValidationError("Select at least one vendor to revoke.")
    if done := [v.name for v in vendors if v.status == Vendor.Status.REVOKED]:
        raise ValidationError(f"Already revoked: {', '.join(done)}.")
    from vendors.tasks import workflows_advance_together

    revoking = set(
        WorkflowRun.objects.filter(
            vendor__in=vendors, kind=WorkflowRun.Kind.REVOKE, status__in=WorkflowRun.ACTIVE
        ).values_list("pk", flat=True)
    )
    with transaction.atomic():
        runs = [
            _take_over(
                actor=actor, vendor=v, request_origin=request_origin, kind=WorkflowRun.Kind.REVOKE, enqueue=False
            )
            for v in vendors
        ]
        # Revocations already under way have their own task; the new ones go in groups, each driven at once in
        # one worker's threads, the groups spread over the worker pool.
        started = [run.pk for run in runs if run.pk not in revoking]
        for i in range(0, len(started), TOGETHER):
            queue.send_on_commit(workflows_advance_together, started[i : i + TOGETHER])
        audit_record(
            action="vendor.bulk_revoke_requested",
            actor=actor,
            target_type="vendor",
            target_label=f"{len(vendors)} vendors",
            details={"vendors": [{"id": str(v.public_id), "name": v.name} for v in vendors]},
            request_origin=request_origin,
        )
    return runs


def _take_over(
    *,
    actor: User | None,
    vendor: Vendor,
    request_origin: RequestOrigin | None,
    kind: WorkflowRun.Kind,
    enqueue: bool = True,
) -> WorkflowRun:
    with transaction.atomic():
        vendor = Vendor.objects.select_for_update().get(pk=vendor.pk)
        active = WorkflowRun.objects.select_for_update().filter(vendor=vendor, status__in=WorkflowRun.ACTIVE).first()
        if active is not None and active.kind == kind:
            return active
        if active is not None:
            active.status = WorkflowRun.Status.CANCELLED
            active.reason = f"{WorkflowRun.Kind(kind).label} took over."
            active.finished_at = timezone.now()
            active.save(update_fields=["status", "reason", "finished_at", "updated_at"])
        vendor.status = Vendor.Status.REVOKING
        vendor.status_reason = ""
        vendor.save(update_fields=["status", "status_reason", "updated_at"])
        _audit(
            action="vendor.revoke_requested" if kind == WorkflowRun.Kind.REVOKE else "vendor.suspended",
            actor=actor,
            vendor=vendor,
            request_origin=request_origin,
            details={"cancelled_run": str(active.public_id) if active else ""},
        )
        return run_start(vendor=vendor, kind=kind, actor=actor, request_origin=request_origin, enqueue=enqueue)


def grant_extend(*, actor: User, grant: Grant, days: int, request_origin: RequestOrigin) -> WorkflowRun:
    """Push the grant's end out by `days` and apply the change at Cloudflare."""
    if not actor.has_role(User.Role.OPERATOR):
        raise PermissionDenied("Only operators extend grants.")
    if not 1 <= days <= 365:
        raise ValidationError({"days": "Extend by 1 to 365 days."})
    vendor = grant.vendor
    if vendor.status in (Vendor.Status.REVOKED, Vendor.Status.REVOKING, Vendor.Status.SUSPENDED):
        raise ValidationError(f"{vendor.name} is {vendor.get_status_display().lower()}; its grants cannot be extended.")
    with transaction.atomic():
        grant = Grant.objects.select_for_update().get(pk=grant.pk)
        start = max(grant.ends_at, timezone.now())
        previous = grant.ends_at
        grant.ends_at = start + timedelta(days=days)
        grant.status = Grant.Status.ACTIVE
        grant.expiry_notice_sent_at = None
        grant.full_clean(exclude=["vendor", "application"])
        grant.save()
        _audit(
            action="vendor.grant_extended",
            actor=actor,
            vendor=vendor,
            request_origin=request_origin,
            details={
                "application": grant.application.name,
                "from": previous.isoformat(),
                "to": grant.ends_at.isoformat(),
            },
        )
        return run_start(vendor=vendor, kind=WorkflowRun.Kind.CHANGE, actor=actor, request_origin=request_origin)


def grant_update(
    *, actor: User, grant: Grant, session_duration: str, ends_at: datetime, request_origin: RequestOrigin | None
) -> WorkflowRun | None:
    """Give one grant its own session length and end; applied at Cloudflare unless the grant has not started yet."""
    if not actor.has_role(User.Role.OPERATOR):
        raise PermissionDenied("Only operators change grants.")
    vendor = grant.vendor
    if vendor.status in (Vendor.Status.REVOKED, Vendor.Status.REVOKING, Vendor.Status.SUSPENDED):
        raise ValidationError(f"{vendor.name} is {vendor.get_status_display().lower()}; its grants cannot change.")
    if ends_at <= timezone.now():
        raise ValidationError({"ends_at": "The end of the grant is in the past; end the grant instead."})
    with transaction.atomic():
        grant = Grant.objects.select_for_update().select_related("application").get(pk=grant.pk)
        if grant.status not in (Grant.Status.ACTIVE, Grant.Status.SCHEDULED):
            raise ValidationError(f"The grant of {grant.application.name} has {grant.get_status_display().lower()}.")
        before = {"session": grant.session_duration, "until": grant.ends_at.isoformat()}
        grant.session_duration, grant.ends_at, grant.expiry_notice_sent_at = session_duration, ends_at, None
        grant.full_clean(exclude=["vendor", "application"])
        grant.save()
        _audit(
            action="vendor.grant_changed",
            actor=actor,
            vendor=vendor,
            request_origin=request_origin,
            details={
                "application": grant.application.name,
                "before": before,
                "session": grant.session_duration,
                "until": grant.ends_at.isoformat(),
            },
        )
        if grant.status == Grant.Status.SCHEDULED:
            return None
        return run_start(vendor=vendor, kind=WorkflowRun.Kind.CHANGE, actor=actor, request_origin=request_origin)


def grant_end(*, actor: User | None, grant: Grant, request_origin: RequestOrigin | None) -> WorkflowRun | None:
    """End one grant now: its application stops admitting the vendor, read back like a revocation; the vendor's
    other grants go on. A grant that has not started is simply cancelled."""
    if actor is not None and not actor.has_role(User.Role.OPERATOR):
        raise PermissionDenied("Only operators end grants.")
    try:
        with transaction.atomic():
            grant = Grant.objects.select_for_update().select_related("vendor", "application").get(pk=grant.pk)
            vendor = grant.vendor
            if grant.status not in (Grant.Status.ACTIVE, Grant.Status.SCHEDULED):
                raise ValidationError(
                    f"The grant of {grant.application.name} has {grant.get_status_display().lower()} already."
                )
            was_active = grant.status == Grant.Status.ACTIVE
            now = timezone.now()
            grant.status, grant.ended_at = Grant.Status.ENDED, now
            grant.save(update_fields=["status", "ended_at"])
            _audit(
                action="vendor.grant_ended",
                actor=actor,
                vendor=vendor,
                request_origin=request_origin,
                details={"application": grant.application.name, "grant": str(grant.public_id)},
            )
            if not was_active or vendor.status in (Vendor.Status.REVOKED, Vendor.Status.REVOKING):
                return None
            return run_start(
                vendor=vendor,
                kind=WorkflowRun.Kind.END_GRANT,
                actor=actor,
                request_origin=request_origin,
                data={"ended_apps": [grant.application.cf_id]},
            )
    except SubjectBusy:
        raise SubjectBusy(
            f"Another workflow is running for {grant.vendor.name}; end the grant once that finishes."
        ) from None


def grants_start(*, now: datetime | None = None) -> list[int]:
    """Scheduled grants whose start has come: make them active and apply them at Cloudflare, one run per vendor.

    A vendor never onboarded is onboarded now (its contacts get their instructions); one busy with another run
    is left for the next pass, its grants still scheduled.
    """
    now = now or timezone.now()
    started = []
    vendor_ids = set(
        Grant.objects.filter(status=Grant.Status.SCHEDULED, starts_at__lte=now)
        .exclude(vendor__status__in=[Vendor.Status.REVOKED, Vendor.Status.REVOKING, Vendor.Status.SUSPENDED])
        .values_list("vendor_id", flat=True)
    )
    for vendor in Vendor.objects.filter(pk__in=vendor_ids):
        if WorkflowRun.objects.filter(vendor=vendor, status__in=WorkflowRun.ACTIVE).exists():
            continue
        onboarded = vendor.runs.filter(kind=WorkflowRun.Kind.ONBOARD, status=WorkflowRun.Status.SUCCEEDED).exists()
        try:
            with transaction.atomic():
                due = list(
                    vendor.grants.filter(status=Grant.Status.SCHEDULED, starts_at__lte=now).select_related(
                        "application"
                    )
                )
                for grant in due:
                    # An active grant of the same application (granted again meanwhile) gives way to this one.
                    vendor.grants.filter(application=grant.application, status=Grant.Status.ACTIVE).update(
                        status=Grant.Status.ENDED, ended_at=now
                    )
                    Grant.objects.filter(pk=grant.pk).update(status=Grant.Status.ACTIVE)
                _audit(
                    action="vendor.grants_started",
                    actor=None,
                    vendor=vendor,
                    request_origin=None,
                    details={"applications": [g.application.name for g in due]},
                )
                run = run_start(
                    vendor=vendor,
                    kind=WorkflowRun.Kind.CHANGE if onboarded else WorkflowRun.Kind.ONBOARD,
                    actor=None,
                    request_origin=None,
                )
        except SubjectBusy:
            continue
        started.append(run.pk)
    return started


def run_retry(*, actor: User, run: WorkflowRun, request_origin: RequestOrigin) -> WorkflowRun:
    """Resume a stopped run from the step that failed."""
    if not actor.has_role(User.Role.OPERATOR):
        raise PermissionDenied("Only operators retry workflows.")
    if run.vendor.archived:
        raise ValidationError(f"{run.vendor.name} is archived; nothing more is done to it.")
    if run.status not in (WorkflowRun.Status.FAILED, WorkflowRun.Status.NEEDS_ATTENTION):
        raise ValidationError("Only a stopped workflow can be retried.")
    return workflows.retry(run=run, actor=actor, request_origin=request_origin)


def token_secret_reveal(*, actor: User, token: ServiceToken, request_origin: RequestOrigin) -> str:
    """The token's client secret, exactly once: the sealed copy is emptied in the same transaction."""
    if not actor.has_role(User.Role.OPERATOR):
        raise PermissionDenied("Only operators see service-token secrets.")
    with transaction.atomic():
        token = ServiceToken.objects.select_for_update().select_related("vendor").get(pk=token.pk)
        if not token.secret_sealed:
            raise ValidationError("This secret has already been shown; rotate the token to get a new one.")
        secret = unseal(token.secret_sealed, purpose=Purpose.SERVICE_TOKEN)
        token.secret_sealed = ""
        token.save(update_fields=["secret_sealed"])
        _audit(
            action="vendor.token_secret_shown",
            actor=actor,
            vendor=token.vendor,
            request_origin=request_origin,
            details={"token": token.label, "client_id": token.client_id},
        )
    return secret


def access_apps_refresh_request() -> None:
    """Ask a worker to bring the list of Access applications up to date, once the request's writes are in."""
    from vendors import tasks

    queue.send_on_commit(
        tasks.access_apps_refresh, unsent_message=queue.refresh_unsent("vendors-refresh-access-applications")
    )


def access_apps_refresh() -> int:
    """Bring Gatehouse's list of Access applications up to date; returns how many Cloudflare reports.

    Each application's legacy (app-scoped) policies are counted against the account's reusable ones, so that the
    list shows, before anyone tries, which applications a vendor cannot be granted yet. The reusable policies are
    kept too, for the page that offers those Gatehouse does not own for adoption.
    """
    policies = cf.access_policies_all()
    reusable = {p.id for p in policies}
    apps = cf.access_apps_all()
    now = timezone.now()
    seen = set()
    with transaction.atomic():
        for app in apps:
            seen.add(app.id)
            AccessApplication.objects.update_or_create(
                cf_id=app.id,
                defaults={
                    "name": app.name,
                    "kind": app.type,
                    "domain": app.domain,
                    "destinations": list(app.destinations),
                    "inline_policies": len(app.inline_policies(reusable)),
                    "policy_ids": [p.id for p in app.policies],
                    "present": True,
                    "synced_at": now,
                },
            )
        AccessApplication.objects.exclude(cf_id__in=seen).update(present=False, synced_at=now)
        for policy in policies:
            AccessPolicy.objects.update_or_create(
                cf_id=policy.id,
                defaults={
                    "name": policy.name,
                    "decision": policy.decision,
                    "include": list(policy.include),
                    "exclude": list(policy.exclude),
                    "require": list(policy.require),
                    "session_duration": policy.session_duration,
                    "present": True,
                    "synced_at": now,
                },
            )
        AccessPolicy.objects.exclude(cf_id__in=reusable).update(present=False, synced_at=now)
    return len(apps)


def grants_expire(*, now: datetime | None = None) -> list[int]:
    """Grants past their end: mark them expired and start, per vendor, the run that removes them at Cloudflare.

    A vendor busy with another run is left for the next pass; its grants stay active until then.
    """
    now = now or timezone.now()
    started = []
    vendor_ids = set(
        Grant.objects.filter(status=Grant.Status.ACTIVE, ends_at__lte=now)
        .exclude(vendor__status__in=[Vendor.Status.REVOKED, Vendor.Status.REVOKING])
        .values_list("vendor_id", flat=True)
    )
    for vendor in Vendor.objects.filter(pk__in=vendor_ids):
        if WorkflowRun.objects.filter(vendor=vendor, status__in=WorkflowRun.ACTIVE).exists():
            continue
        try:
            with transaction.atomic():
                expired = list(
                    vendor.grants.filter(status=Grant.Status.ACTIVE, ends_at__lte=now).select_related("application")
                )
                vendor.grants.filter(pk__in=[g.pk for g in expired]).update(status=Grant.Status.EXPIRED, ended_at=now)
                _audit(
                    action="vendor.grants_expired",
                    actor=None,
                    vendor=vendor,
                    request_origin=None,
                    details={"applications": [g.application.name for g in expired]},
                )
                run = run_start(
                    vendor=vendor,
                    kind=WorkflowRun.Kind.EXPIRE,
                    actor=None,
                    request_origin=None,
                    data={"ended_apps": sorted({g.application.cf_id for g in expired})},
                )
        except SubjectBusy:
            continue
        started.append(run.pk)
    return started


def grants_notify_expiring(*, now: datetime | None = None) -> int:
    """Tell each sponsor, once per grant, that a grant ends within EXPIRY_NOTICE."""
    now = now or timezone.now()
    soon = (
        Grant.objects.filter(
            status=Grant.Status.ACTIVE, ends_at__gt=now, ends_at__lte=now + EXPIRY_NOTICE, expiry_notice_sent_at=None
        )
        .select_related("vendor__sponsor", "application")
        .order_by("vendor_id", "ends_at")
    )
    sent = 0
    for grant in soon:
        # Claim the notice first so that two beat passes never mail the same grant twice.
        if not Grant.objects.filter(pk=grant.pk, expiry_notice_sent_at=None).update(expiry_notice_sent_at=now):
            continue
        vendor = grant.vendor
        send_mail(
            f"Gatehouse: {vendor.name}'s access to {grant.application.name} ends soon",
            f"{vendor.name}'s access to {grant.application.name} ends on {grant.ends_at:%Y-%m-%d %H:%M} UTC.\n"
            "Extend the grant in Gatehouse if the vendor still needs it; otherwise nothing needs doing.",
            None,
            [vendor.sponsor.email],
        )
        sent += 1
    return sent


def vendors_recertify(*, today: date | None = None) -> dict[str, int]:
    """Flag vendors past their review date to their sponsor; suspend them too when the admin setting says so."""
    today = today or timezone.localdate()
    auto_suspend = VendorSettings.load().auto_suspend_overdue
    flagged = suspended = 0
    for vendor in Vendor.objects.past_review(today).select_related("sponsor"):
        if vendor.review_flagged_for != vendor.review_due and (
            Vendor.objects.filter(pk=vendor.pk)
            .exclude(review_flagged_for=vendor.review_due)
            .update(review_flagged_for=vendor.review_due)
        ):
            send_mail(
                f"Gatehouse: review {vendor.name}'s access",
                f"{vendor.name}'s access was due for review on {vendor.review_due:%Y-%m-%d}.\n"
                + (
                    "Gatehouse is suspending it until someone reviews it."
                    if auto_suspend
                    else "Review it in Gatehouse: extend the review date, or revoke the vendor."
                ),
                None,
                [vendor.sponsor.email],
            )
            _audit(
                action="vendor.review_overdue",
                actor=None,
                vendor=vendor,
                request_origin=None,
                details={"due": str(vendor.review_due)},
            )
            flagged += 1
        if auto_suspend:
            _take_over(actor=None, vendor=vendor, request_origin=None, kind=WorkflowRun.Kind.SUSPEND)
            suspended += 1
    return {"flagged": flagged, "suspended": suspended}


def vendor_settings_update(*, actor: User, auto_suspend_overdue: bool, request_origin: RequestOrigin) -> VendorSettings:
    if not actor.has_role(User.Role.ADMIN):
        raise PermissionDenied("Only admins change vendor settings.")
    with transaction.atomic():
        current = VendorSettings.load()
        if current.auto_suspend_overdue != auto_suspend_overdue:
            current.auto_suspend_overdue = auto_suspend_overdue
            current.save()
            audit_record(
                action="vendor.settings_changed",
                actor=actor,
                target_type="settings",
                target_label="Vendor settings",
                details={"auto_suspend_overdue": auto_suspend_overdue},
                request_origin=request_origin,
            )
    return current


def tokens_forget_unshown_secrets(*, older_than: timedelta = timedelta(days=1)) -> int:
    """A secret nobody revealed within a day is dropped: Gatehouse keeps no secret longer than it must."""
    cutoff = timezone.now() - older_than
    sealed_before = Q(secret_sealed_at__lt=cutoff) | Q(secret_sealed_at=None, created_at__lt=cutoff)
    return ServiceToken.objects.exclude(secret_sealed="").filter(sealed_before).update(secret_sealed="")
